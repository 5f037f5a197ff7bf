"""The one place that talks to Stripe.

Every call goes through ``StripeGateway``: one ``stripe.StripeClient`` per gateway (no global
``stripe.api_key``), async over httpx, and an idempotency key on every create — callers must
pass one (a keyword-only argument without a default), derived from *our* identifiers so a
retried job or a double click can never create a second object.

Without ``stripe_api_key`` the gateway is *disabled*: the demo's no-charge mode, where the
billing services grant plans without payment and mark them so (see docs/billing.md).
``stripe_api_base`` points every call elsewhere (tests: the loopback stand-in, which answers
the endpoints localstripe lacks and forwards the rest to localstripe).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import stripe

from canal.platform.settings import Settings, get_settings

Params = dict[str, Any]


class BillingDisabled(RuntimeError):
    """A Stripe call was attempted in no-charge mode (no API key configured)."""


@dataclass(frozen=True)
class GatewayConfig:
    api_key: str | None
    api_base: str | None = None
    webhook_secret: str = ""
    platform_fee_percent: int = 10

    @classmethod
    def from_settings(cls, settings: Settings) -> GatewayConfig:
        return cls(
            api_key=settings.stripe_api_key,
            api_base=settings.stripe_api_base,
            webhook_secret=settings.stripe_webhook_secret,
            platform_fee_percent=settings.stripe_platform_fee_percent,
        )


def _plain(obj: Any) -> dict[str, Any]:
    """A Stripe object as a plain, recursive dict (services never see StripeObject)."""
    if obj is None:
        return {}
    return cast("dict[str, Any]", obj.to_dict(recursive=True))


def _is_missing(exc: stripe.StripeError) -> bool:
    return exc.http_status == 404


class StripeGateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self._client: stripe.StripeClient | None = None
        if config.api_key:
            base = config.api_base
            addresses: Any = (
                {"api": base, "connect": base, "files": base, "meter_events": base}
                if base
                else None
            )
            self._client = stripe.StripeClient(
                config.api_key,
                base_addresses=addresses,
                http_client=stripe.HTTPXClient(timeout=20),
                # The library retries connection errors and 409/5xx with the SAME idempotency
                # key we passed, so a retry replays instead of creating twice.
                max_network_retries=2,
            )

    @property
    def enabled(self) -> bool:
        return self._client is not None

    @property
    def v1(self) -> Any:
        if self._client is None:
            raise BillingDisabled("Stripe is not configured (no-charge mode)")
        return self._client.v1

    @staticmethod
    def _options(idempotency_key: str, **extra: Any) -> Any:
        if not idempotency_key:
            raise ValueError("every Stripe create needs an idempotency key")
        return {"idempotency_key": idempotency_key[:255], **extra}

    # --- webhooks ---------------------------------------------------------------------------

    def construct_event(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """Verify ``Stripe-Signature`` (scheme v1, HMAC-SHA256 over ``t.payload``, default
        300 s tolerance) over the raw body and parse it; raises
        ``stripe.SignatureVerificationError`` or ``ValueError``."""
        if not self.config.webhook_secret:
            raise stripe.SignatureVerificationError("no webhook secret configured", signature)
        event = stripe.Webhook.construct_event(payload, signature, self.config.webhook_secret)
        return _plain(event)

    # --- catalogue --------------------------------------------------------------------------

    async def ensure_product(self, product_id: str, name: str, metadata: Mapping[str, str]) -> str:
        try:
            await self.v1.products.retrieve_async(product_id)
            return product_id
        except stripe.InvalidRequestError as exc:
            if not _is_missing(exc):
                raise
        created = await self.v1.products.create_async(
            {"id": product_id, "name": name, "metadata": dict(metadata)},
            self._options(f"canal:product:{product_id}"),
        )
        return str(created.id)

    async def ensure_price(
        self,
        price_id: str,
        *,
        product_id: str,
        unit_amount: int,
        currency: str,
        interval: str,
        nickname: str,
        metadata: Mapping[str, str],
    ) -> str:
        """A recurring price with our own deterministic id.

        Created through the Plans endpoint because only it takes a caller-chosen id (Prices get
        random ids), which is what makes the sync idempotent without a lookup table; Stripe
        treats a plan as a price everywhere (Checkout's ``line_items[].price`` takes it).
        """
        try:
            await self.v1.plans.retrieve_async(price_id)
            return price_id
        except stripe.InvalidRequestError as exc:
            if not _is_missing(exc):
                raise
        created = await self.v1.plans.create_async(
            {
                "id": price_id,
                "product": product_id,
                "amount": unit_amount,
                "currency": currency,
                "interval": interval,
                "nickname": nickname,
                "metadata": dict(metadata),
            },
            self._options(f"canal:price:{price_id}"),
        )
        return str(created.id)

    # --- customers, checkout, portal ----------------------------------------------------------

    async def create_customer(
        self, *, name: str, metadata: Mapping[str, str], idempotency_key: str
    ) -> str:
        customer = await self.v1.customers.create_async(
            {"name": name, "metadata": dict(metadata)}, self._options(idempotency_key)
        )
        return str(customer.id)

    async def create_checkout_session(self, params: Params, *, idempotency_key: str) -> Params:
        session = await self.v1.checkout.sessions.create_async(
            params, self._options(idempotency_key)
        )
        return _plain(session)

    async def create_portal_session(
        self, *, customer: str, return_url: str, idempotency_key: str
    ) -> Params:
        session = await self.v1.billing_portal.sessions.create_async(
            {"customer": customer, "return_url": return_url}, self._options(idempotency_key)
        )
        return _plain(session)

    # --- subscriptions and invoices ---------------------------------------------------------

    async def retrieve_subscription(self, subscription_id: str) -> Params | None:
        try:
            return _plain(await self.v1.subscriptions.retrieve_async(subscription_id))
        except stripe.InvalidRequestError as exc:
            if _is_missing(exc):
                return None
            raise

    async def cancel_subscription_at_period_end(
        self, subscription_id: str, *, idempotency_key: str
    ) -> Params:
        """Stop renewing: the subscription stays active until its period ends, then Stripe
        cancels it (``customer.subscription.deleted``)."""
        sub = await self.v1.subscriptions.update_async(
            subscription_id, {"cancel_at_period_end": True}, self._options(idempotency_key)
        )
        return _plain(sub)

    async def invoice_charge(
        self,
        *,
        customer: str,
        amount: int,
        currency: str,
        description: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> Params:
        """An invoice item for ``amount`` and an invoice that bills it (and any other pending
        items) — what is left after a period of usage priced by the caller."""
        item = await self.v1.invoice_items.create_async(
            {
                "customer": customer,
                "amount": amount,
                "currency": currency,
                "description": description,
                "metadata": dict(metadata),
            },
            self._options(f"{idempotency_key}:item"),
        )
        invoice = await self.v1.invoices.create_async(
            {
                "customer": customer,
                "pending_invoice_items_behavior": "include",
                "metadata": dict(metadata),
            },
            self._options(f"{idempotency_key}:invoice"),
        )
        return {"item": _plain(item), "invoice": _plain(invoice)}

    async def list_invoices(self, customer: str, *, limit: int = 24) -> list[Params]:
        page = await self.v1.invoices.list_async({"customer": customer, "limit": limit})
        return [_plain(i) for i in page.data]

    # --- one-off payments and Connect ---------------------------------------------------------

    async def create_payment_intent(
        self,
        *,
        amount: int,
        currency: str,
        payment_method_types: Sequence[str],
        metadata: Mapping[str, str],
        idempotency_key: str,
        destination: str | None = None,
        application_fee_amount: int | None = None,
        customer: str | None = None,
    ) -> Params:
        params: Params = {
            "amount": amount,
            "currency": currency,
            "payment_method_types": list(payment_method_types),
            "metadata": dict(metadata),
        }
        if customer:
            params["customer"] = customer
        if destination:
            # A destination charge: the platform charges, Stripe transfers the rest to the
            # provider's connected account and keeps our fee on the platform.
            params["transfer_data"] = {"destination": destination}
            if application_fee_amount is not None:
                params["application_fee_amount"] = application_fee_amount
        intent = await self.v1.payment_intents.create_async(params, self._options(idempotency_key))
        return _plain(intent)

    async def retrieve_payment_intent(self, payment_intent_id: str) -> Params | None:
        try:
            return _plain(await self.v1.payment_intents.retrieve_async(payment_intent_id))
        except stripe.InvalidRequestError as exc:
            if _is_missing(exc):
                return None
            raise

    async def create_refund(
        self,
        *,
        payment_intent: str,
        amount: int,
        metadata: Mapping[str, str],
        idempotency_key: str,
        reverse_transfer: bool = False,
        refund_application_fee: bool = False,
    ) -> Params:
        """Refund part or all of a PaymentIntent. For a destination charge, ``reverse_transfer``
        takes the refunded share back from the connected account and ``refund_application_fee``
        gives back the platform's fee in proportion (Stripe computes both)."""
        params: Params = {
            "payment_intent": payment_intent,
            "amount": amount,
            "metadata": dict(metadata),
        }
        if reverse_transfer:
            params["reverse_transfer"] = True
        if refund_application_fee:
            params["refund_application_fee"] = True
        return _plain(await self.v1.refunds.create_async(params, self._options(idempotency_key)))

    async def create_account(
        self, *, country: str, email: str | None, metadata: Mapping[str, str], idempotency_key: str
    ) -> Params:
        params: Params = {
            "type": "express",
            "country": country,
            "capabilities": {"transfers": {"requested": True}},
            "metadata": dict(metadata),
        }
        if email:
            params["email"] = email
        return _plain(await self.v1.accounts.create_async(params, self._options(idempotency_key)))

    async def create_account_link(
        self, *, account: str, refresh_url: str, return_url: str, idempotency_key: str
    ) -> Params:
        link = await self.v1.account_links.create_async(
            {
                "account": account,
                "refresh_url": refresh_url,
                "return_url": return_url,
                "type": "account_onboarding",
            },
            self._options(idempotency_key),
        )
        return _plain(link)

    # --- usage metering ---------------------------------------------------------------------

    async def create_meter_event(
        self, *, event_name: str, customer: str, value: int, identifier: str, timestamp: int
    ) -> Params:
        """A Billing Meter event; Stripe drops a repeated ``identifier`` (its dedup key), and
        the idempotency key makes a retried request replay."""
        event = await self.v1.billing.meter_events.create_async(
            {
                "event_name": event_name,
                "identifier": identifier,
                "timestamp": timestamp,
                "payload": {"stripe_customer_id": customer, "value": str(value)},
            },
            self._options(f"canal:meter:{identifier}"),
        )
        return _plain(event)


_gateway: StripeGateway | None = None


def gateway() -> StripeGateway:
    """The process-wide gateway, built from the settings on first use."""
    global _gateway
    if _gateway is None:
        _gateway = StripeGateway(GatewayConfig.from_settings(get_settings()))
    return _gateway


def use_gateway(new: StripeGateway | None) -> None:
    """Replace the process-wide gateway (the runtime with its settings; tests)."""
    global _gateway
    _gateway = new

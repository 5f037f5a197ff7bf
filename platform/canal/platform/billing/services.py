"""Billing logic: paid module plans through Stripe Checkout, the customer portal, invoices,
entitlements that follow Stripe's subscription state, one-off payments, Connect payouts and
usage metering. Every Stripe call goes through ``gateway()``; every function takes plain
values or a ``TenantContext``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from canal.platform import clock, db
from canal.platform.audit.services import record
from canal.platform.billing import catalogue
from canal.platform.billing.gateway import gateway
from canal.platform.billing.tables import (
    BillingCustomer,
    BillingSubscription,
    ConnectedAccount,
    Payment,
    UsageRecord,
)
from canal.platform.http.context import TenantContext
from canal.platform.http.errors import CanalError, FieldError, invalid, not_found
from canal.platform.modules import Plan, get_module

log = logging.getLogger("canal.billing")

# past_due: the renewal invoice failed and Stripe is retrying it. The module stays usable for
# GRACE after the unpaid period began; Stripe's retries end in canceled/unpaid, which ends it.
GRACE = dt.timedelta(days=7)
ENTITLED_STATES = {"active", "trialing"}
GRACE_STATES = {"past_due"}
# incomplete: the first payment has not gone through yet — nothing granted until it does.
CANCELLED_STATES = {"canceled", "unpaid", "incomplete_expired", "paused"}
PREPAID_MONTHS = (1, 3, 12)  # Alipay / WeChat Pay: pay a term up front (no recurring mandate)
WALLET_METHODS = ("alipay", "wechat_pay")
logger = logging.getLogger(__name__)


def _utc(epoch: int | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(epoch, dt.UTC) if epoch else None


def no_charge() -> bool:
    """The demo's mode without a Stripe key: plans are granted without payment, marked so."""
    return not gateway().enabled


def _plan_or_422(ctx: TenantContext, module_key: str, plan_key: str) -> Plan:
    spec = get_module(module_key)
    if spec is None:
        raise not_found()
    plan = catalogue.paid_plan(module_key, plan_key)
    if plan is None:
        raise invalid(
            [FieldError("plan", "plan_unknown", "该模块没有这个付费套餐。", "No such paid plan.")]
        )
    # Coming-soon modules may be subscribed like they may be switched on: the tenant gets
    # their features as they ship (docs/tenants.md).
    if ctx.tenant.kind not in spec.tenant_kinds:
        raise CanalError(
            "module_not_for_kind",
            f"「{spec.name_zh}」模块暂不向本组织开放订阅。",
            f"The {spec.name_en} module cannot be subscribed to by this organisation.",
            status=422,
        )
    return plan


# --- catalogue ------------------------------------------------------------------------------


async def sync_catalogue() -> list[str]:
    """Create every paid plan's product and price in Stripe if missing; returns price ids.

    Idempotent: ids are deterministic (``catalogue.price_id``), existing ones are only read.
    """
    ids: list[str] = []
    for module_key in catalogue.PAID_PLANS:
        ids += [await _ensure_price(module_key, p) for p in catalogue.paid_plans(module_key)]
    return ids


async def _ensure_price(module_key: str, plan: Plan) -> str:
    spec = get_module(module_key)
    name = f"{spec.name_zh} {spec.name_en}" if spec else module_key
    product = await gateway().ensure_product(
        catalogue.product_id(module_key), name, {"module_key": module_key}
    )
    return await gateway().ensure_price(
        catalogue.price_id(module_key, plan),
        product_id=product,
        unit_amount=plan.monthly_price_fen,
        currency=catalogue.CURRENCY,
        interval=catalogue.INTERVAL,
        nickname=f"{module_key}:{plan.key}",
        metadata={"module_key": module_key, "plan": plan.key},
    )


# --- customers ------------------------------------------------------------------------------


async def _customer_id(tenant_id: uuid.UUID) -> str | None:
    async with db.tenant_scope(tenant_id):
        row = (
            await BillingCustomer.select(BillingCustomer.stripe_customer_id)
            .where(BillingCustomer.tenant_id == tenant_id)
            .first()
        )
    return row["stripe_customer_id"] if row else None


async def ensure_customer(ctx: TenantContext) -> str:
    existing = await _customer_id(ctx.tenant_id)
    if existing:
        return existing
    # The key is the tenant: two racing requests get the same Stripe customer back.
    customer = await gateway().create_customer(
        name=ctx.tenant.name,
        metadata={"tenant_id": str(ctx.tenant_id), "tenant_slug": ctx.tenant.slug},
        idempotency_key=f"canal:customer:{ctx.tenant_id}",
    )
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await BillingCustomer.insert(
            BillingCustomer(tenant_id=ctx.tenant_id, stripe_customer_id=customer)
        ).on_conflict(action="DO NOTHING")
    return await _customer_id(ctx.tenant_id) or customer


async def _tenant_for_customer(customer_id: str) -> uuid.UUID | None:
    # System read (webhook jobs have no tenant yet): the customer id names the tenant.
    async with db.platform_scope():
        row = (
            await BillingCustomer.select(BillingCustomer.tenant_id)
            .where(BillingCustomer.stripe_customer_id == customer_id)
            .first()
        )
    return row["tenant_id"] if row else None


# --- subscribing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckoutStart:
    url: str | None  # Stripe Checkout; None when granted at once (no-charge mode)
    no_charge: bool = False


async def start_checkout(
    ctx: TenantContext,
    module_key: str,
    plan_key: str,
    *,
    base_url: str,
    method: str = "card",
    months: int = 1,
    ip: str = "",
) -> CheckoutStart:
    """Start subscribing this tenant to a paid plan.

    ``method="card"``: a Checkout Session in subscription mode (cards only — Stripe supports
    neither Alipay nor WeChat Pay for recurring Checkout). ``method="wallet"``: a Checkout
    Session in payment mode for ``months`` paid up front with card, Alipay or WeChat Pay.
    """
    plan = _plan_or_422(ctx, module_key, plan_key)
    if method not in {"card", "wallet"}:
        raise invalid([FieldError("method", "method_unknown", "支付方式无效。", "Unknown method.")])
    if method == "wallet" and months not in PREPAID_MONTHS:
        raise invalid(
            [FieldError("months", "months_invalid", "预付月数无效。", "Unsupported term.")]
        )
    if no_charge():
        await _grant_no_charge(ctx, module_key, plan, ip=ip)
        return CheckoutStart(url=None, no_charge=True)
    price = await _ensure_price(module_key, plan)
    customer = await ensure_customer(ctx)
    billing_url = f"{base_url}/t/{ctx.tenant.slug}/billing"
    meta = {
        "tenant_id": str(ctx.tenant_id),
        "module_key": module_key,
        "plan": plan.key,
        "requested_by": str(ctx.user_id),
    }
    params: dict[str, Any] = {
        "customer": customer,
        "client_reference_id": str(ctx.tenant_id),
        "success_url": billing_url + "?checkout=success&session={CHECKOUT_SESSION_ID}",
        "cancel_url": billing_url + "?checkout=cancelled",
        "locale": "zh",
        "metadata": meta,
    }
    if method == "card":
        params |= {
            "mode": "subscription",
            "payment_method_types": ["card"],
            "line_items": [{"price": price, "quantity": 1}],
            "subscription_data": {"metadata": meta},
        }
    else:
        params |= {
            "mode": "payment",
            "payment_method_types": ["card", *WALLET_METHODS],
            "payment_method_options": {"wechat_pay": {"client": "web"}},
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": catalogue.CURRENCY,
                        "unit_amount": plan.monthly_price_fen * months,
                        "product": catalogue.product_id(module_key),
                    },
                }
            ],
            "metadata": meta | {"kind": "prepaid", "months": str(months)},
            "payment_intent_data": {"metadata": meta | {"kind": "prepaid"}},
        }
    session = await gateway().create_checkout_session(
        params,
        # One click = one session; the library's own retries reuse this key.
        idempotency_key=f"canal:checkout:{ctx.tenant_id}:{module_key}:{uuid.uuid4()}",
    )
    return CheckoutStart(url=str(session.get("url") or ""))


async def _grant_no_charge(ctx: TenantContext, module_key: str, plan: Plan, *, ip: str) -> None:
    from canal.tenants.services import apply_billed_entitlement

    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = await _subscription_row(ctx.tenant_id, module_key)
        values: dict[Any, Any] = {
            BillingSubscription.plan: plan.key,
            BillingSubscription.source: "no_charge",
            BillingSubscription.stripe_subscription_id: None,
            BillingSubscription.status: "active",
            BillingSubscription.current_period_start: clock.now(),
            BillingSubscription.current_period_end: None,
            BillingSubscription.updated_at: clock.now(),
        }
        if row is None:
            await BillingSubscription.insert(
                BillingSubscription(tenant_id=ctx.tenant_id, module_key=module_key, status="active")
            )
            row = await _subscription_row(ctx.tenant_id, module_key)
            assert row is not None
        elif row["source"] == "stripe" and row["status"] not in CANCELLED_STATES:
            raise CanalError(
                "already_subscribed",
                "本组织已订阅该模块,请通过账户门户变更套餐。",
                "This organisation already subscribes to this module; change it in the portal.",
                status=409,
            )
        await BillingSubscription.update(values).where(BillingSubscription.id == row["id"])
        changed = await apply_billed_entitlement(
            ctx.tenant_id,
            module_key,
            plan=plan.key,
            active=True,
            active_until=None,
            note="no_charge",
        )
        if changed:
            await record(
                "billing.subscribed",
                actor_id=ctx.user_id,
                tenant_id=ctx.tenant_id,
                target=module_key,
                ip=ip,
                data={"plan": plan.key, "no_charge": True},
            )


async def cancel_no_charge(ctx: TenantContext, module_key: str, *, ip: str = "") -> bool:
    """End a no-charge grant (Stripe subscriptions are cancelled in the customer portal)."""
    from canal.tenants.services import apply_billed_entitlement

    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = await _subscription_row(ctx.tenant_id, module_key)
        if row is None or row["source"] != "no_charge" or row["status"] != "active":
            raise not_found()
        await BillingSubscription.update(
            {BillingSubscription.status: "canceled", BillingSubscription.updated_at: _now()}
        ).where(BillingSubscription.id == row["id"])
        await apply_billed_entitlement(
            ctx.tenant_id,
            module_key,
            plan=row["plan"],
            active=False,
            active_until=None,
            note="no_charge",
        )
        await record(
            "billing.cancelled",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=module_key,
            ip=ip,
            data={"plan": row["plan"], "no_charge": True},
        )
    return True


async def portal_url(ctx: TenantContext, *, base_url: str) -> str:
    """A Stripe customer-portal session for this tenant (change plan, card, cancel, invoices)."""
    if no_charge():
        raise _not_in_no_charge()
    customer = await _customer_id(ctx.tenant_id)
    if customer is None:
        raise CanalError(
            "no_billing_account",
            "本组织还没有付费订阅,暂无账单账户。",
            "This organisation has no paid subscription yet, so there is no billing account.",
            status=409,
        )
    session = await gateway().create_portal_session(
        customer=customer,
        return_url=f"{base_url}/t/{ctx.tenant.slug}/billing",
        idempotency_key=f"canal:portal:{ctx.tenant_id}:{uuid.uuid4()}",
    )
    return str(session["url"])


def _not_in_no_charge() -> CanalError:
    return CanalError(
        "billing_no_charge",
        "演示环境不收费,没有账户门户。",
        "The demo runs without charging; there is no customer portal.",
        status=409,
    )


def _now() -> dt.datetime:
    return clock.now()


# --- the billing page ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionView:
    module_key: str
    module_zh: str
    module_en: str
    plan: str
    source: str
    status: str
    current_period_end: dt.datetime | None
    monthly_price_fen: int


@dataclass(frozen=True)
class InvoiceView:
    id: str
    number: str | None
    status: str | None
    total_fen: int
    currency: str
    created: dt.datetime | None
    hosted_invoice_url: str | None


@dataclass(frozen=True)
class OfferView:
    module_key: str
    module_zh: str
    module_en: str
    plan: Plan


@dataclass
class BillingOverview:
    no_charge: bool
    has_customer: bool
    subscriptions: list[SubscriptionView] = field(default_factory=list)
    invoices: list[InvoiceView] = field(default_factory=list)
    offers: list[OfferView] = field(default_factory=list)


async def billing_overview(ctx: TenantContext) -> BillingOverview:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        rows = await BillingSubscription.select().where(
            BillingSubscription.tenant_id == ctx.tenant_id
        )
    customer = await _customer_id(ctx.tenant_id)
    subs = []
    for r in rows:
        spec = get_module(r["module_key"])
        plan = catalogue.paid_plan(r["module_key"], r["plan"])
        subs.append(
            SubscriptionView(
                module_key=r["module_key"],
                module_zh=spec.name_zh if spec else r["module_key"],
                module_en=spec.name_en if spec else r["module_key"],
                plan=r["plan"],
                source=r["source"],
                status=r["status"],
                current_period_end=r["current_period_end"],
                monthly_price_fen=plan.monthly_price_fen if plan else 0,
            )
        )
    invoices: list[InvoiceView] = []
    if customer and not no_charge():
        for inv in await gateway().list_invoices(customer):
            invoices.append(
                InvoiceView(
                    id=str(inv.get("id")),
                    number=inv.get("number"),
                    status=inv.get("status"),
                    total_fen=int(inv.get("total") or 0),
                    currency=str(inv.get("currency") or catalogue.CURRENCY),
                    created=_utc(inv.get("created")),
                    hosted_invoice_url=inv.get("hosted_invoice_url"),
                )
            )
    offers = []
    for key in catalogue.PAID_PLANS:
        spec = get_module(key)
        if spec is None or ctx.tenant.kind not in spec.tenant_kinds:
            continue
        for plan in catalogue.paid_plans(key):
            offers.append(OfferView(key, spec.name_zh, spec.name_en, plan))
    return BillingOverview(
        no_charge=no_charge(),
        has_customer=customer is not None,
        subscriptions=subs,
        invoices=invoices,
        offers=offers,
    )


# --- entitlements follow Stripe ------------------------------------------------------------------


def _period(sub: dict[str, Any]) -> tuple[int | None, int | None]:
    """Current period (epoch seconds): on the subscription in older API versions, on its
    items since 2025-03-31 — read either."""
    start, end = sub.get("current_period_start"), sub.get("current_period_end")
    items = ((sub.get("items") or {}).get("data")) or []
    if (start is None or end is None) and items:
        start = start or items[0].get("current_period_start")
        end = end or items[0].get("current_period_end")
    return start, end


def entitlement(status: str, start: int | None, end: int | None) -> tuple[bool, dt.datetime | None]:
    """Stripe status → (module usable, until when)."""
    if status in ENTITLED_STATES:
        return True, _utc(end)
    if status in GRACE_STATES:
        began = _utc(start) or _now()
        return True, began + GRACE
    return False, None


async def _subscription_row(tenant_id: uuid.UUID, module_key: str) -> dict[str, Any] | None:
    rows = await BillingSubscription.raw(
        "SELECT * FROM billing_subscriptions WHERE tenant_id = {} AND module_key = {} FOR UPDATE",
        tenant_id,
        module_key,
    )
    return rows[0] if rows else None


async def apply_subscription(
    sub: dict[str, Any], *, seen_at: int, authoritative: bool = False
) -> str:
    """Make our rows match one Stripe subscription's state; returns what happened.

    ``seen_at`` is when that state was true: now for a re-fetched object, the event's
    ``created`` for a snapshot. Safe to call any number of times in any order: an older
    snapshot never overwrites a newer state, an older subscription never replaces a newer one
    for the same module, and a canceled subscription never comes back (Stripe cannot revive
    one). The entitlement row is rewritten from the result every time, so drift heals.
    ``authoritative`` (reconciliation: Stripe's state, just fetched) skips the last two
    guards, so a row edited by hand is repaired too.
    """
    from canal.tenants.services import apply_billed_entitlement

    meta = sub.get("metadata") or {}
    module_key, plan_key = str(meta.get("module_key", "")), str(meta.get("plan", ""))
    try:
        tenant_id = uuid.UUID(str(meta.get("tenant_id", "")))
    except ValueError:
        return "unmatched"
    item_hook = _subscription_hooks.get(str(meta.get("kind", "")))
    if item_hook is not None:
        owner = sub.get("customer")
        if isinstance(owner, dict):
            owner = owner.get("id")
        if not owner or await _tenant_for_customer(str(owner)) != tenant_id:
            return "unmatched"
        async with db.tenant_scope(tenant_id):
            return await item_hook(tenant_id, sub, seen_at)
    if catalogue.paid_plan(module_key, plan_key) is None:
        return "unmatched"
    customer = sub.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    # Metadata alone could name any tenant; the customer must be that tenant's.
    if not customer or await _tenant_for_customer(str(customer)) != tenant_id:
        return "unmatched"
    status = str(sub.get("status", ""))
    created = int(sub.get("created") or 0)
    start, end = _period(sub)
    async with db.tenant_scope(tenant_id):
        row = await _subscription_row(tenant_id, module_key)
        before_active = row is not None and _row_active(row)
        if row is not None and row["source"] == "stripe":
            if row["stripe_subscription_id"] != sub["id"]:
                if row["stripe_created"] > created:
                    return "superseded"  # an older subscription of the same module
            elif authoritative:
                pass
            elif row["status"] in CANCELLED_STATES and status not in CANCELLED_STATES:
                return "terminal"
            elif row["state_seen_at"] > seen_at:
                return "stale"
        values: dict[Any, Any] = {
            BillingSubscription.plan: plan_key,
            BillingSubscription.source: "stripe",
            BillingSubscription.stripe_subscription_id: sub["id"],
            BillingSubscription.status: status,
            BillingSubscription.current_period_start: _utc(start),
            BillingSubscription.current_period_end: _utc(end),
            BillingSubscription.stripe_created: created,
            BillingSubscription.state_seen_at: seen_at,
            BillingSubscription.updated_at: _now(),
        }
        if row is None:
            await BillingSubscription.insert(
                BillingSubscription(tenant_id=tenant_id, module_key=module_key, status=status)
            )
            row = await _subscription_row(tenant_id, module_key)
            assert row is not None
        await BillingSubscription.update(values).where(BillingSubscription.id == row["id"])
        active, until = entitlement(status, start, end)
        await apply_billed_entitlement(
            tenant_id,
            module_key,
            plan=plan_key,
            active=active,
            active_until=until,
            note=f"stripe:{sub['id']}",
        )
        action = None
        if active and not before_active:
            action = "billing.subscribed"
        elif not active and before_active:
            action = "billing.cancelled"
        elif status in GRACE_STATES and (row["status"] not in GRACE_STATES):
            action = "billing.past_due"
        if action:
            await record(
                action,
                tenant_id=tenant_id,
                target=module_key,
                data={"plan": plan_key, "subscription": sub["id"], "status": status},
            )
    return status


# --- a domain's own recurring items (a dataset subscription) ---------------------------------

SubscriptionHook = Callable[[uuid.UUID, dict[str, Any], int], Awaitable[str]]
SubscriptionRefs = Callable[[], Awaitable[list[str]]]
_subscription_hooks: dict[str, SubscriptionHook] = {}
_subscription_refs: dict[str, SubscriptionRefs] = {}


def item_subscription_refs() -> list[SubscriptionRefs]:
    """Each kind's lister of the Stripe subscriptions it still follows (reconciliation)."""
    return list(_subscription_refs.values())


def on_subscription_changed(
    kind: str, hook: SubscriptionHook, refs: SubscriptionRefs | None = None
) -> None:
    """Call ``hook(tenant_id, subscription, seen_at)`` for every state of a subscription whose
    ``metadata.kind`` is ``kind`` (started by ``start_item_subscription``), inside the webhook
    job's transaction, after the customer was checked to be the tenant's. The hook owns what
    the state means (a data grant's expiry) and must be safe in any order and repeated.
    ``refs()`` lists the subscription ids still followed: ``reconcile_subscriptions``
    re-fetches and re-applies them, so a missed webhook is repaired."""
    _subscription_hooks[kind] = hook
    if refs is not None:
        _subscription_refs[kind] = refs


def item_price_id(product_id: str, amount_fen: int) -> str:
    return f"{product_id}_cny_{amount_fen}_{catalogue.INTERVAL}"


async def start_item_subscription(
    ctx: TenantContext,
    *,
    kind: str,
    reference: str,
    product_id: str,
    product_name: str,
    amount_fen: int,
    success_url: str,
    cancel_url: str,
) -> str:
    """Checkout (subscription mode, card: Stripe has no recurring Alipay / WeChat Pay) for
    something a domain sells per period — not a module plan. The product and its monthly
    price get deterministic ids (``product_id``, ``item_price_id``), so a new price is a new
    plan and existing subscribers keep theirs. ``metadata = {kind, tenant_id, reference}`` on
    the subscription routes its webhooks to the ``on_subscription_changed(kind)`` hook.
    One reference and amount = one session (Stripe idempotency). Returns the Checkout URL."""
    if no_charge():
        raise _not_in_no_charge()
    if amount_fen <= 0 or kind not in _subscription_hooks or not reference:
        raise invalid([FieldError("amount_fen", "amount_invalid", "金额须大于零。", "Amount > 0.")])
    gw = gateway()
    product = await gw.ensure_product(product_id, product_name[:200], {"kind": kind})
    price = await gw.ensure_price(
        item_price_id(product_id, amount_fen),
        product_id=product,
        unit_amount=amount_fen,
        currency=catalogue.CURRENCY,
        interval=catalogue.INTERVAL,
        nickname=f"{kind}:{reference}"[:64],
        metadata={"kind": kind},
    )
    customer = await ensure_customer(ctx)
    meta = {
        "kind": kind,
        "tenant_id": str(ctx.tenant_id),
        "reference": reference,
        "requested_by": str(ctx.user_id),
    }
    session = await gw.create_checkout_session(
        {
            "customer": customer,
            "client_reference_id": str(ctx.tenant_id),
            "success_url": success_url,
            "cancel_url": cancel_url,
            "locale": "zh",
            "metadata": meta,
            "mode": "subscription",
            "payment_method_types": ["card"],
            "line_items": [{"price": price, "quantity": 1}],
            "subscription_data": {"metadata": meta},
        },
        idempotency_key=f"canal:item-sub:{ctx.tenant_id}:{reference}:{amount_fen}",
    )
    return str(session.get("url") or "")


async def cancel_item_subscription(ctx: TenantContext, subscription_id: str) -> dict[str, Any]:
    """Stop renewing one of this tenant's item subscriptions at the end of the paid period.
    Another tenant's (or an unknown) subscription answers 404. Returns Stripe's new state,
    which the caller may apply at once (the webhook brings the same state again)."""
    if no_charge():
        raise _not_in_no_charge()
    sub = await gateway().retrieve_subscription(subscription_id)
    owner = (sub or {}).get("customer")
    if isinstance(owner, dict):
        owner = owner.get("id")
    if sub is None or not owner or owner != await _customer_id(ctx.tenant_id):
        raise not_found()
    if sub.get("status") in CANCELLED_STATES or sub.get("cancel_at_period_end"):
        return sub
    return await gateway().cancel_subscription_at_period_end(
        subscription_id, idempotency_key=f"canal:cancel-item:{subscription_id}"
    )


def _row_active(row: dict[str, Any]) -> bool:
    if row["source"] != "stripe":
        return row["status"] == "active"
    return row["status"] in ENTITLED_STATES or row["status"] in GRACE_STATES


async def apply_prepaid(session: dict[str, Any], *, seen_at: int) -> str:
    """A paid Checkout Session of ``kind=prepaid``: the module is usable for ``months`` from
    the later of now and the current prepaid end (repeating it is a no-op: the session id is
    stored as the row's reference)."""
    from canal.tenants.services import apply_billed_entitlement

    meta = session.get("metadata") or {}
    if meta.get("kind") != "prepaid" or session.get("payment_status") != "paid":
        return "ignored"
    try:
        tenant_id = uuid.UUID(str(meta.get("tenant_id", "")))
        months = int(meta.get("months", "1"))
    except ValueError:
        return "unmatched"
    module_key, plan_key = str(meta.get("module_key", "")), str(meta.get("plan", ""))
    customer = session.get("customer")
    if catalogue.paid_plan(module_key, plan_key) is None or (
        await _tenant_for_customer(str(customer)) != tenant_id
    ):
        return "unmatched"
    reference = f"prepaid:{session['id']}"
    async with db.tenant_scope(tenant_id):
        row = await _subscription_row(tenant_id, module_key)
        if row is not None and row["stripe_subscription_id"] == reference:
            return "duplicate"
        if row is not None and row["source"] == "stripe" and _row_active(row):
            return "superseded"  # a live recurring subscription already covers it
        base = _now()
        if row is not None and row["source"] == "prepaid" and row["current_period_end"]:
            base = max(base, row["current_period_end"])
        until = base + dt.timedelta(days=30 * months)
        values: dict[Any, Any] = {
            BillingSubscription.plan: plan_key,
            BillingSubscription.source: "prepaid",
            BillingSubscription.stripe_subscription_id: reference,
            BillingSubscription.status: "active",
            BillingSubscription.current_period_start: base,
            BillingSubscription.current_period_end: until,
            BillingSubscription.state_seen_at: seen_at,
            BillingSubscription.updated_at: _now(),
        }
        if row is None:
            await BillingSubscription.insert(
                BillingSubscription(tenant_id=tenant_id, module_key=module_key, status="active")
            )
            row = await _subscription_row(tenant_id, module_key)
            assert row is not None
        await BillingSubscription.update(values).where(BillingSubscription.id == row["id"])
        await apply_billed_entitlement(
            tenant_id, module_key, plan=plan_key, active=True, active_until=until, note=reference
        )
        await record(
            "billing.subscribed",
            tenant_id=tenant_id,
            target=module_key,
            data={"plan": plan_key, "prepaid_months": months, "until": until.isoformat()},
        )
    return "prepaid"


async def stripe_subscription_refs() -> list[tuple[uuid.UUID, str]]:
    """(tenant, Stripe subscription id) of every Stripe-backed row — for reconciliation."""
    async with db.platform_scope():
        rows = await BillingSubscription.select(
            BillingSubscription.tenant_id, BillingSubscription.stripe_subscription_id
        ).where(
            (BillingSubscription.source == "stripe")
            & BillingSubscription.stripe_subscription_id.is_not_null()
        )
    return [(r["tenant_id"], r["stripe_subscription_id"]) for r in rows]


# --- one-off payments ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentView:
    id: uuid.UUID
    payment_intent_id: str | None
    client_secret: str | None
    amount_fen: int
    application_fee_fen: int | None
    status: str
    no_charge: bool


def platform_fee(amount_fen: int) -> int:
    """The platform's cut of a marketplace sale, rounded up to a whole fen."""
    return math.ceil(amount_fen * gateway().config.platform_fee_percent / 100)


async def create_payment(
    ctx: TenantContext,
    amount_fen: int,
    description: str,
    idempotency_key: str,
    destination_account: str | None = None,
    application_fee_fen: int | None = None,
    *,
    payment_method_types: Sequence[str] = ("card", "alipay", "wechat_pay"),
) -> PaymentView:
    """A PaymentIntent in CNY for an order or a dataset purchase; the buyer is ``ctx``.

    ``idempotency_key`` is the caller's (an order id): the same key in the same tenant returns
    the first payment and never charges twice. With ``destination_account`` (a provider's
    Connect account) it is a destination charge keeping ``application_fee_fen`` — by default
    ``stripe_platform_fee_percent`` of the amount — for the platform.
    """
    errors = []
    if amount_fen <= 0:
        errors.append(FieldError("amount_fen", "amount_invalid", "金额须大于零。", "Amount > 0."))
    if not idempotency_key or len(idempotency_key) > 64:
        errors.append(
            FieldError("idempotency_key", "key_invalid", "幂等键无效。", "Bad idempotency key.")
        )
    if destination_account and application_fee_fen is None:
        application_fee_fen = platform_fee(amount_fen)
    if application_fee_fen is not None and not 0 <= application_fee_fen <= amount_fen:
        errors.append(FieldError("application_fee_fen", "fee_invalid", "平台费无效。", "Bad fee."))
    if errors:
        raise invalid(errors)
    existing = await _payment_by_key(ctx, idempotency_key)
    if existing is not None:
        return existing
    intent: dict[str, Any] = {}
    if not no_charge():
        intent = await gateway().create_payment_intent(
            amount=amount_fen,
            currency=catalogue.CURRENCY,
            payment_method_types=payment_method_types,
            # The description travels in metadata: localstripe refuses `description`, and
            # Stripe shows metadata beside the payment all the same.
            metadata={
                "tenant_id": str(ctx.tenant_id),
                "order": idempotency_key,
                "description": description[:200],
            },
            idempotency_key=f"canal:payment:{ctx.tenant_id}:{idempotency_key}",
            destination=destination_account,
            application_fee_amount=application_fee_fen if destination_account else None,
        )
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        # A concurrent call with the same key may have won; then its row is returned below.
        inserted = (
            await Payment.insert(
                Payment(
                    tenant_id=ctx.tenant_id,
                    idempotency_key=idempotency_key,
                    stripe_payment_intent_id=intent.get("id"),
                    amount_fen=amount_fen,
                    description=description[:200],
                    destination_account=destination_account,
                    application_fee_fen=application_fee_fen if destination_account else None,
                    status=str(intent.get("status") or "succeeded"),
                    no_charge=not intent,
                )
            )
            .on_conflict(action="DO NOTHING")
            .returning(Payment.id)
        )
        if inserted:
            await record(
                "billing.payment_created",
                actor_id=ctx.user_id,
                tenant_id=ctx.tenant_id,
                target=idempotency_key,
                data={"amount_fen": amount_fen, "no_charge": not intent},
            )
    found = await _payment_by_key(ctx, idempotency_key)
    assert found is not None
    if intent and found.payment_intent_id == intent.get("id"):
        return PaymentView(**{**found.__dict__, "client_secret": intent.get("client_secret")})
    return found


PaymentHook = Callable[[uuid.UUID, str], Awaitable[None]]
_payment_hooks: dict[str, PaymentHook] = {}


def on_payment_succeeded(key_prefix: str, hook: PaymentHook) -> None:
    """Call ``hook(tenant_id, idempotency_key)`` when a payment whose key starts with
    ``key_prefix`` succeeds — inside the transaction that records it (a marketplace order is
    marked paid and its provider told at once, not on the next read)."""
    _payment_hooks[key_prefix] = hook


async def _payment_succeeded(tenant_id: uuid.UUID, key: str) -> None:
    for prefix, hook in _payment_hooks.items():
        if key.startswith(prefix):
            await hook(tenant_id, key)


async def start_payment_checkout(
    ctx: TenantContext,
    amount_fen: int,
    description: str,
    idempotency_key: str,
    *,
    success_url: str,
    cancel_url: str,
    destination_account: str | None = None,
    application_fee_fen: int | None = None,
) -> str:
    """A Stripe-hosted Checkout page for a one-off payment (card, Alipay, WeChat Pay), CNY;
    with ``destination_account`` a destination charge keeping ``application_fee_fen``.

    The payment row (key ``idempotency_key``, unique per tenant) is written now with status
    ``open``; ``checkout.session.completed`` marks it succeeded. One order has one session
    (the Stripe idempotency key is the payment key and amount), so two tabs cannot pay twice.
    Returns the Checkout URL."""
    if no_charge():
        raise _not_in_no_charge()
    if amount_fen <= 0 or not idempotency_key or len(idempotency_key) > 64:
        raise invalid([FieldError("amount_fen", "amount_invalid", "金额须大于零。", "Amount > 0.")])
    if application_fee_fen is not None and not 0 <= application_fee_fen <= amount_fen:
        raise invalid(
            [FieldError("application_fee_fen", "fee_invalid", "平台费无效。", "Bad fee.")]
        )
    existing = await _payment_by_key(ctx, idempotency_key)
    if existing is not None and existing.status == "succeeded":
        raise CanalError(
            "payment_already_paid", "该款项已付清。", "This has already been paid.", status=409
        )
    if existing is not None and existing.payment_intent_id:
        # A PaymentIntent for the same key was started elsewhere (the API, Stripe.js): a
        # Checkout Session would make a second, independent charge possible.
        raise CanalError(
            "payment_in_progress",
            "该款项已通过其他方式发起支付,请在原处完成。",
            "A payment for this was already started elsewhere; complete it there.",
            status=409,
        )
    meta = {"kind": "payment", "tenant_id": str(ctx.tenant_id), "order": idempotency_key}
    intent_data: dict[str, Any] = {"metadata": meta | {"description": description[:200]}}
    if destination_account:
        intent_data["transfer_data"] = {"destination": destination_account}
        if application_fee_fen is not None:
            intent_data["application_fee_amount"] = application_fee_fen
    params: dict[str, Any] = {
        "mode": "payment",
        "client_reference_id": str(ctx.tenant_id),
        "payment_method_types": ["card", *WALLET_METHODS],
        "payment_method_options": {"wechat_pay": {"client": "web"}},
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": catalogue.CURRENCY,
                    "unit_amount": amount_fen,
                    "product_data": {"name": description[:200]},
                },
            }
        ],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "locale": "zh",
        "metadata": meta,
        "payment_intent_data": intent_data,
    }
    session = await gateway().create_checkout_session(
        params,
        idempotency_key=f"canal:checkout-payment:{ctx.tenant_id}:{idempotency_key}:{amount_fen}",
    )
    if existing is None:
        async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
            inserted = (
                await Payment.insert(
                    Payment(
                        tenant_id=ctx.tenant_id,
                        idempotency_key=idempotency_key,
                        amount_fen=amount_fen,
                        description=description[:200],
                        destination_account=destination_account,
                        application_fee_fen=application_fee_fen if destination_account else None,
                        status="open",
                    )
                )
                .on_conflict(action="DO NOTHING")
                .returning(Payment.id)
            )
            if inserted:
                await record(
                    "billing.payment_created",
                    actor_id=ctx.user_id,
                    tenant_id=ctx.tenant_id,
                    target=idempotency_key,
                    data={"amount_fen": amount_fen, "checkout": session.get("id")},
                )
    return str(session.get("url") or "")


async def apply_payment_checkout(session: dict[str, Any]) -> str:
    """``checkout.session.completed`` of a one-off payment: the payment row succeeds (once;
    the amount must match) and the payment's owner is told through its hook."""
    meta = session.get("metadata") or {}
    if session.get("payment_status") != "paid":
        return "unpaid"
    try:
        tenant_id = uuid.UUID(str(meta.get("tenant_id", "")))
    except ValueError:
        return "unmatched"
    key = str(meta.get("order", ""))
    intent = session.get("payment_intent")
    intent_id = intent.get("id") if isinstance(intent, dict) else intent
    async with db.tenant_scope(tenant_id):
        row = (
            await Payment.select(Payment.id, Payment.amount_fen, Payment.status)
            .where((Payment.tenant_id == tenant_id) & (Payment.idempotency_key == key))
            .first()
        )
        if row is None:
            return "unmatched"
        if row["status"] == "succeeded":
            return "duplicate"
        total = session.get("amount_total")
        if total is not None and int(total) != row["amount_fen"]:
            logger.error(
                "checkout %s paid %s, payment %s expects %s",
                session.get("id"),
                total,
                key,
                row["amount_fen"],
            )
            return "amount_mismatch"
        await Payment.update(
            {Payment.status: "succeeded", Payment.stripe_payment_intent_id: intent_id}
        ).where(Payment.id == row["id"])
        await record(
            "billing.payment_succeeded",
            tenant_id=tenant_id,
            target=key,
            data={"amount_fen": row["amount_fen"], "checkout": session.get("id")},
        )
        await _payment_succeeded(tenant_id, key)
    return "succeeded"


async def _payment_by_key(ctx: TenantContext, key: str) -> PaymentView | None:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = (
            await Payment.select()
            .where((Payment.tenant_id == ctx.tenant_id) & (Payment.idempotency_key == key))
            .first()
        )
    if row is None:
        return None
    return PaymentView(
        id=row["id"],
        payment_intent_id=row["stripe_payment_intent_id"],
        client_secret=None,
        amount_fen=row["amount_fen"],
        application_fee_fen=row["application_fee_fen"],
        status=row["status"],
        no_charge=row["no_charge"],
    )


async def apply_payment_intent(intent: dict[str, Any]) -> str:
    """Record a PaymentIntent's new status (from a webhook, after a re-fetch)."""
    meta = intent.get("metadata") or {}
    if meta.get("kind") == "prepaid":
        return "ignored"  # a prepaid term's payment: handled through its Checkout Session
    try:
        tenant_id = uuid.UUID(str(meta.get("tenant_id", "")))
    except ValueError:
        return "unmatched"
    status = str(intent.get("status", ""))
    async with db.tenant_scope(tenant_id):
        changed = (
            await Payment.update({Payment.status: status})
            .where(
                (Payment.tenant_id == tenant_id)
                & (Payment.stripe_payment_intent_id == intent["id"])
                & (Payment.status != status)
                & (Payment.status != "succeeded")  # final: a late event cannot undo it
            )
            .returning(Payment.idempotency_key, Payment.amount_fen)
        )
        if changed and status == "succeeded":
            await record(
                "billing.payment_succeeded",
                tenant_id=tenant_id,
                target=changed[0]["idempotency_key"],
                data={"amount_fen": changed[0]["amount_fen"], "payment_intent": intent["id"]},
            )
            await _payment_succeeded(tenant_id, changed[0]["idempotency_key"])
    return status if changed else "unchanged"


@dataclass(frozen=True)
class RefundView:
    refund_id: str | None  # None: nothing went through Stripe (no-charge payment)
    amount_fen: int
    reverse_transfer: bool


async def refund_payment(
    tenant_id: uuid.UUID,
    payment_key: str,
    amount_fen: int,
    refund_key: str,
    *,
    actor_id: uuid.UUID | None = None,
) -> RefundView:
    """Give ``amount_fen`` of the tenant's payment ``payment_key`` back to the payer.

    ``refund_key`` is the caller's idempotency key (a repeated call replays the first refund,
    never refunds twice). A destination charge is refunded with ``reverse_transfer`` and
    ``refund_application_fee``: the connected account and the platform give back their shares
    in proportion. A no-charge payment has nothing in Stripe: only the audit event is written.
    The caller has authorised the refund (the operator's dispute ruling)."""
    if amount_fen <= 0 or not refund_key or len(refund_key) > 120:
        raise invalid(
            [FieldError("amount_fen", "amount_invalid", "退款金额无效。", "Bad refund amount.")]
        )
    async with db.tenant_scope(tenant_id):
        row = (
            await Payment.select()
            .where((Payment.tenant_id == tenant_id) & (Payment.idempotency_key == payment_key))
            .first()
        )
    if row is None or row["status"] != "succeeded":
        raise CanalError(
            "payment_not_refundable",
            "该付款尚未完成,不能退款。",
            "This payment has not been completed and cannot be refunded.",
            status=409,
        )
    if amount_fen > row["amount_fen"]:
        raise invalid(
            [
                FieldError(
                    "amount_fen",
                    "refund_exceeds_payment",
                    "退款超过付款金额。",
                    "The refund exceeds the payment.",
                )
            ]
        )
    destination = bool(row["destination_account"])
    refund: dict[str, Any] = {}
    if not row["no_charge"] and row["stripe_payment_intent_id"]:
        refund = await gateway().create_refund(
            payment_intent=row["stripe_payment_intent_id"],
            amount=amount_fen,
            metadata={"tenant_id": str(tenant_id), "order": payment_key, "refund": refund_key},
            idempotency_key=f"canal:refund:{tenant_id}:{refund_key}",
            reverse_transfer=destination,
            refund_application_fee=destination,
        )
    async with db.tenant_scope(tenant_id):
        await record(
            "billing.payment_refunded",
            actor_id=actor_id,
            tenant_id=tenant_id,
            target=payment_key,
            data={
                "amount_fen": amount_fen,
                "refund": refund.get("id"),
                "no_charge": not refund,
                "reverse_transfer": destination,
            },
        )
    return RefundView(refund.get("id"), amount_fen, destination)


# --- Connect (marketplace payouts) -----------------------------------------------------------


async def create_connected_account(
    ctx: TenantContext, *, country: str = "HK", email: str | None = None
) -> str:
    """The provider tenant's Stripe Connect (Express) account; one per tenant.

    Stripe does not onboard mainland-China entities: providers are onboarded in a supported
    country (``country``, default HK) — see docs/billing.md.
    """
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = (
            await ConnectedAccount.select(ConnectedAccount.stripe_account_id)
            .where(ConnectedAccount.tenant_id == ctx.tenant_id)
            .first()
        )
    if row:
        return str(row["stripe_account_id"])
    if no_charge():
        raise _not_in_no_charge()
    account = await gateway().create_account(
        country=country,
        email=email,
        metadata={"tenant_id": str(ctx.tenant_id)},
        idempotency_key=f"canal:account:{ctx.tenant_id}",
    )
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        inserted = (
            await ConnectedAccount.insert(
                ConnectedAccount(tenant_id=ctx.tenant_id, stripe_account_id=account["id"])
            )
            .on_conflict(action="DO NOTHING")
            .returning(ConnectedAccount.id)
        )
        if inserted:
            await record(
                "billing.account_created",
                actor_id=ctx.user_id,
                tenant_id=ctx.tenant_id,
                target=str(account["id"]),
            )
    return str(account["id"])


async def onboarding_link(ctx: TenantContext, *, base_url: str) -> str:
    account = await create_connected_account(ctx)
    back = f"{base_url}/t/{ctx.tenant.slug}/billing"
    link = await gateway().create_account_link(
        account=account,
        refresh_url=back + "?onboarding=refresh",
        return_url=back + "?onboarding=done",
        idempotency_key=f"canal:account_link:{account}:{uuid.uuid4()}",
    )
    return str(link["url"])


async def apply_account(account: dict[str, Any]) -> str:
    meta = account.get("metadata") or {}
    try:
        tenant_id = uuid.UUID(str(meta.get("tenant_id", "")))
    except ValueError:
        return "unmatched"
    async with db.tenant_scope(tenant_id):
        await ConnectedAccount.update(
            {
                ConnectedAccount.charges_enabled: bool(account.get("charges_enabled")),
                ConnectedAccount.payouts_enabled: bool(account.get("payouts_enabled")),
                ConnectedAccount.details_submitted: bool(account.get("details_submitted")),
            }
        ).where(
            (ConnectedAccount.tenant_id == tenant_id)
            & (ConnectedAccount.stripe_account_id == account["id"])
        )
    return "updated"


# --- usage metering -------------------------------------------------------------------------------


async def record_usage(ctx: TenantContext, meter: str, quantity: int, identifier: str) -> bool:
    """Report usage of a meter (model calls, compute seconds) for this tenant.

    ``identifier`` names the usage once (a job id, a request id): recording it again is a no-op
    that returns False. Stored first, sent to Stripe after commit; a row Stripe has not
    accepted yet is re-sent by ``send_pending_usage`` (the same Stripe identifier, so Stripe
    counts it once).
    """
    if meter not in catalogue.METERS and meter not in catalogue.PRICED_METERS:
        raise invalid([FieldError("meter", "meter_unknown", "计量项未知。", "Unknown meter.")])
    if quantity <= 0 or not identifier or len(identifier) > 64:
        raise invalid(
            [FieldError("quantity", "usage_invalid", "用量或标识无效。", "Bad quantity/id.")]
        )
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        inserted = await UsageRecord.raw(
            "INSERT INTO billing_usage (id, tenant_id, meter, quantity, identifier, created_at) "
            "VALUES ({}, {}, {}, {}, {}, {}) "
            "ON CONFLICT (tenant_id, identifier) DO NOTHING RETURNING id",
            uuid.uuid4(),
            ctx.tenant_id,
            meter,
            quantity,
            identifier,
            clock.now(),
        )
    if not inserted:
        return False
    await _send_usage(ctx.tenant_id, inserted[0]["id"])
    return True


def stripe_identifier(tenant_id: uuid.UUID, identifier: str) -> str:
    # Stripe dedups identifiers across the whole account: prefix the tenant so two tenants'
    # "job-1" stay two events.
    return f"{tenant_id}:{identifier}"


async def _send_usage(tenant_id: uuid.UUID, usage_id: uuid.UUID) -> None:
    if no_charge():
        return
    async with db.tenant_scope(tenant_id):
        meter = (
            await UsageRecord.select(UsageRecord.meter).where(UsageRecord.id == usage_id).first()
        )
    if meter is not None and meter["meter"] in catalogue.PRICED_METERS:
        return  # billed per period as an invoice item, not through a Stripe meter
    customer = await _customer_id(tenant_id)
    if customer is None:
        log.warning("usage for tenant %s without a billing customer; kept unsent", tenant_id)
        return
    async with db.tenant_scope(tenant_id):
        row = await UsageRecord.select().where(UsageRecord.id == usage_id).first()
    if row is None or row["sent_at"] is not None:
        return
    await gateway().create_meter_event(
        event_name=row["meter"],
        customer=customer,
        value=row["quantity"],
        identifier=stripe_identifier(tenant_id, row["identifier"]),
        timestamp=int(row["created_at"].timestamp()),
    )
    async with db.tenant_scope(tenant_id):
        await UsageRecord.update({UsageRecord.sent_at: _now()}).where(UsageRecord.id == usage_id)


async def send_pending_usage(limit: int = 500) -> int:
    """Re-send usage Stripe has not accepted yet (after an outage). Returns how many."""
    async with db.platform_scope():
        rows = await (
            UsageRecord.select(UsageRecord.id, UsageRecord.tenant_id)
            .where(
                UsageRecord.sent_at.is_null()
                & UsageRecord.meter.not_in(list(catalogue.PRICED_METERS))
            )
            .limit(limit)
        )
    for r in rows:
        await _send_usage(r["tenant_id"], r["id"])
    return len(rows)


def usage_period_start(moment: dt.datetime) -> dt.datetime:
    """The start of the calendar month (Beijing time) holding ``moment``: usage periods."""
    local = clock.local(moment)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def invoice_priced_usage(now: dt.datetime | None = None) -> int:
    """Bill every finished month of priced usage (``catalogue.PRICED_METERS``): per tenant
    and meter, one Stripe invoice item for the month's total in fen, and an invoice that
    collects it. The rows are marked with the item id in the same transaction as the call's
    outcome; the idempotency key is the tenant, meter and month, so a retry after a crash
    replays the same item rather than billing twice. Returns how many items were made."""
    if no_charge():
        return 0
    before = usage_period_start(now or _now())
    async with db.platform_scope():
        rows = await UsageRecord.raw(
            "SELECT tenant_id, meter, date_trunc('month', created_at AT TIME ZONE {})"
            " AS month, sum(quantity) AS total FROM billing_usage WHERE invoice_item_id IS NULL"
            " AND meter = ANY({}) AND created_at < {} GROUP BY 1, 2, 3 ORDER BY 3",
            clock.zone_name(),
            list(catalogue.PRICED_METERS),
            before,
        )
    made = 0
    for r in rows:
        customer = await _customer_id(r["tenant_id"])
        if customer is None or int(r["total"]) <= 0:
            continue
        month = r["month"].strftime("%Y-%m")
        zh, en = catalogue.PRICED_METERS[r["meter"]]
        billed = await gateway().invoice_charge(
            customer=customer,
            amount=int(r["total"]),
            currency=catalogue.CURRENCY,
            description=f"{zh} {month} / {en}",
            metadata={"tenant_id": str(r["tenant_id"]), "meter": r["meter"], "month": month},
            idempotency_key=f"canal:usage:{r['tenant_id']}:{r['meter']}:{month}",
        )
        start = r["month"].replace(tzinfo=clock.display_tz())
        end = (start + dt.timedelta(days=32)).replace(day=1)
        async with db.tenant_scope(r["tenant_id"]):
            await UsageRecord.update({UsageRecord.invoice_item_id: billed["item"]["id"]}).where(
                (UsageRecord.tenant_id == r["tenant_id"])
                & (UsageRecord.meter == r["meter"])
                & UsageRecord.invoice_item_id.is_null()
                & (UsageRecord.created_at >= start)
                & (UsageRecord.created_at < end)
            )
            await record(
                "billing.usage_invoiced",
                tenant_id=r["tenant_id"],
                target=str(billed["invoice"].get("id", "")),
                data={"meter": r["meter"], "month": month, "amount_fen": int(r["total"])},
            )
        made += 1
    return made


def now_epoch() -> int:
    """Stripe's idea of now (its event times are compared with it): the real time."""
    return int(clock.wall_timestamp())

"""A loopback stand-in for the Stripe endpoints localstripe lacks — tests only.

localstripe 1.15.10 answers 404 for Checkout Sessions, the billing portal, Connect accounts
and account links, and billing meter events; it refuses PaymentIntents with
``transfer_data``/``application_fee_amount`` (destination charges) and ignores the
``Idempotency-Key`` header. This small aiohttp app sits in front of it as the gateway's only
base URL: it answers exactly those endpoints in Stripe's response shape, replays the first
response for a repeated ``Idempotency-Key`` (as Stripe does), forwards everything else to
localstripe unchanged, and RECORDS every request the real ``stripe`` library sent (method,
path, headers, form fields) so tests can assert on them.

One base URL (rather than two clients in the gateway) keeps production and tests on the same
configuration shape: ``stripe_api_base`` unset in production, the stand-in's URL in tests.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import ClientSession, web

from canal.platform import clock


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    answered_by: str  # "standin" | "localstripe" | "replay"


def unflatten(form: dict[str, str]) -> dict[str, Any]:
    """Stripe's bracketed form keys (``a[b][0][c]``) back into nested dicts/lists."""
    root: dict[str, Any] = {}
    for key, value in form.items():
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _lists(root)


def _lists(node: Any) -> Any:
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_lists(node[k]) for k in sorted(node, key=int)]
        return {k: _lists(v) for k, v in node.items()}
    return node


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass
class StripeStandIn:
    localstripe_url: str
    requests: list[Recorded] = field(default_factory=list)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    _replay: dict[str, tuple[int, bytes, str]] = field(default_factory=dict)
    _meter_identifiers: dict[str, dict[str, Any]] = field(default_factory=dict)
    _invoiced_items: set[str] = field(default_factory=set)
    base_url: str = ""
    _runner: web.AppRunner | None = None
    _session: ClientSession | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.base_url = f"http://{host}:{sockets[0].getsockname()[1]}"
        self._session = ClientSession()
        return self.base_url

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- queries for tests ------------------------------------------------------------------

    def sent(self, method: str, path_prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # --- the edge -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        form = dict(parse_qsl(body.decode(), keep_blank_values=True)) if body else {}
        if request.method == "GET" and request.query_string:
            form |= dict(parse_qsl(request.query_string, keep_blank_values=True))
        headers = {k.lower(): v for k, v in request.headers.items()}
        key = headers.get("idempotency-key")
        replay_key = f"{headers.get('authorization', '')}|{key}" if key else None
        if request.method == "POST" and replay_key and replay_key in self._replay:
            self.requests.append(Recorded(request.method, request.path, headers, form, "replay"))
            status, payload, ctype = self._replay[replay_key]
            return web.Response(
                status=status,
                body=payload,
                content_type=ctype,
                headers={"Idempotent-Replayed": "true"},
            )
        local = self._local(request.method, request.path, unflatten(form))
        if local is not None:
            self.requests.append(Recorded(request.method, request.path, headers, form, "standin"))
            status, obj = local
            payload, ctype = json.dumps(obj).encode(), "application/json"
            response = web.Response(status=status, body=payload, content_type=ctype)
        else:
            self.requests.append(
                Recorded(request.method, request.path, headers, form, "localstripe")
            )
            status, payload, ctype = await self._forward(request, body)
            if request.path == "/v1/invoices":
                status, payload = await self._invoices(request, form, status, payload)
            response = web.Response(status=status, body=payload, content_type=ctype)
        if request.method == "POST" and replay_key and status < 500:
            self._replay[replay_key] = (status, payload, ctype)
        return response

    async def _invoices(
        self, request: web.Request, form: dict[str, str], status: int, payload: bytes
    ) -> tuple[int, bytes]:
        """localstripe invoices only a customer's subscription ("No upcoming invoices" without
        one); Stripe also invoices pending invoice items on their own. Create such an invoice
        here from the customer's pending items in localstripe, and list it with theirs."""
        customer = form.get("customer", "")
        if request.method == "POST" and status == 404 and "subscription" not in form:
            ls_status, raw, _ = await self._get(request, f"/v1/invoiceitems?customer={customer}")
            items = [
                i
                for i in (json.loads(raw).get("data") or [] if ls_status == 200 else [])
                if not i.get("invoice") and i["id"] not in self._invoiced_items
            ]
            if not items:
                return status, payload
            self._invoiced_items.update(i["id"] for i in items)
            total = sum(int(i["amount"]) for i in items)
            iid = _id("in")
            self.objects[iid] = {
                "id": iid,
                "object": "invoice",
                "customer": customer,
                "created": int(clock.wall_timestamp()),
                "currency": "cny",
                "status": "open",
                "total": total,
                "amount_due": total,
                "amount_paid": 0,
                "subscription": None,
                "metadata": unflatten(form).get("metadata", {}),
                "lines": {"object": "list", "data": items},
            }
            return 200, json.dumps(self.objects[iid]).encode()
        if request.method == "GET" and status == 200 and customer:
            listed = json.loads(payload)
            listed["data"] = [
                o
                for o in self.objects.values()
                if o.get("object") == "invoice" and o.get("customer") == customer
            ] + list(listed.get("data") or [])
            return status, json.dumps(listed).encode()
        return status, payload

    async def _get(self, request: web.Request, path_qs: str) -> tuple[int, bytes, str]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        async with self._session.get(self.localstripe_url + path_qs, headers=headers) as up:
            return up.status, await up.read(), "application/json"

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, bytes, str]:
        assert self._session is not None
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in {"authorization", "content-type", "stripe-version", "stripe-account"}
        }
        url = self.localstripe_url + request.path_qs
        async with self._session.request(
            request.method, url, data=body or None, headers=headers
        ) as upstream:
            payload = await upstream.read()
            ctype = (upstream.content_type or "application/json").split(";")[0]
            return upstream.status, payload, ctype

    def _local(self, method: str, path: str, data: dict[str, Any]) -> tuple[int, Any] | None:
        now = int(clock.wall_timestamp())
        if method == "POST" and path == "/v1/checkout/sessions":
            sid = _id("cs_test")
            obj = {
                "id": sid,
                "object": "checkout.session",
                "created": now,
                "expires_at": now + 86400,
                "livemode": False,
                "mode": data.get("mode"),
                "status": "open",
                "payment_status": "unpaid",
                "customer": data.get("customer"),
                "client_reference_id": data.get("client_reference_id"),
                "currency": "cny",
                "amount_total": sum(
                    int((item.get("price_data") or {}).get("unit_amount") or 0)
                    * int(item.get("quantity") or 1)
                    for item in data.get("line_items") or []
                )
                or None,
                "payment_intent_data": data.get("payment_intent_data"),
                "payment_intent": None,
                "metadata": data.get("metadata", {}),
                "payment_method_types": data.get("payment_method_types", []),
                "success_url": data.get("success_url"),
                "cancel_url": data.get("cancel_url"),
                "subscription": None,
                "url": f"{self.base_url}/checkout/{sid}",
            }
            self.objects[sid] = obj
            return 200, obj
        if method == "GET" and path.startswith("/v1/checkout/sessions/"):
            found = self.objects.get(path.rsplit("/", 1)[1])
            return (200, found) if found else _missing("checkout.session")
        if method == "POST" and path == "/v1/billing_portal/sessions":
            pid = _id("bps")
            return 200, {
                "id": pid,
                "object": "billing_portal.session",
                "created": now,
                "customer": data.get("customer"),
                "livemode": False,
                "return_url": data.get("return_url"),
                "url": f"{self.base_url}/portal/{pid}",
            }
        if method == "POST" and path == "/v1/accounts":
            aid = _id("acct")
            obj = {
                "id": aid,
                "object": "account",
                "type": data.get("type"),
                "country": data.get("country"),
                "email": data.get("email"),
                "charges_enabled": False,
                "payouts_enabled": False,
                "details_submitted": False,
                "capabilities": {"transfers": "inactive"},
                "metadata": data.get("metadata", {}),
                "created": now,
            }
            self.objects[aid] = obj
            return 200, obj
        if method == "GET" and path.startswith("/v1/accounts/"):
            found = self.objects.get(path.rsplit("/", 1)[1])
            return (200, found) if found else _missing("account")
        if method == "POST" and path == "/v1/account_links":
            return 200, {
                "object": "account_link",
                "created": now,
                "expires_at": now + 300,
                "url": f"{self.base_url}/connect/onboarding/{data.get('account')}",
            }
        if method == "POST" and path == "/v1/billing/meter_events":
            identifier = str(data.get("identifier") or _id("mev"))
            obj = self._meter_identifiers.get(identifier) or {
                "object": "billing.meter_event",
                "created": now,
                "event_name": data.get("event_name"),
                "identifier": identifier,
                "livemode": False,
                "payload": data.get("payload", {}),
                "timestamp": int(data.get("timestamp") or now),
            }
            self._meter_identifiers[identifier] = obj  # Stripe counts an identifier once
            return 200, obj
        if (
            method == "POST"
            and path == "/v1/payment_intents"
            and ("transfer_data" in data or "application_fee_amount" in data)
        ):
            pid = _id("pi")
            obj = {
                "id": pid,
                "object": "payment_intent",
                "amount": int(data["amount"]),
                "currency": data.get("currency"),
                "status": "requires_payment_method",
                "client_secret": f"{pid}_secret_{secrets.token_hex(8)}",
                "payment_method_types": data.get("payment_method_types", []),
                "application_fee_amount": int(data["application_fee_amount"])
                if "application_fee_amount" in data
                else None,
                "transfer_data": data.get("transfer_data"),
                "metadata": data.get("metadata", {}),
                "created": now,
                "livemode": False,
            }
            self.objects[pid] = obj
            return 200, obj
        if (
            method == "POST"
            and path.startswith("/v1/payment_intents/")
            and path.endswith("/confirm")
            and path.split("/")[3] in self.objects
        ):
            # Tests only: the buyer completes a destination charge (card accepted).
            intent = self.objects[path.split("/")[3]]
            intent["status"] = "succeeded"
            intent["latest_charge"] = intent.get("latest_charge") or _id("ch")
            intent["amount_received"] = intent["amount"]
            intent.setdefault("amount_refunded", 0)
            return 200, intent
        if (
            method == "POST"
            and path == "/v1/refunds"
            and data.get("payment_intent") in self.objects
        ):
            return self._refund(data, now)
        if method == "GET" and path.startswith("/v1/payment_intents/"):
            found = self.objects.get(path.rsplit("/", 1)[1])
            return (200, found) if found else None
        return None

    def _refund(self, data: dict[str, Any], now: int) -> tuple[int, Any]:
        """A refund of a destination charge, as Stripe does it: at most what is left, only of a
        succeeded payment; ``reverse_transfer`` takes the refunded share back from the connected
        account and ``refund_application_fee`` returns the platform's fee in proportion."""
        intent = self.objects[str(data["payment_intent"])]
        if intent.get("status") != "succeeded":
            return 400, {"error": {"type": "invalid_request_error", "message": "not succeeded"}}
        amount = int(data.get("amount") or intent["amount"] - intent.get("amount_refunded", 0))
        if amount <= 0 or intent.get("amount_refunded", 0) + amount > intent["amount"]:
            return 400, {
                "error": {
                    "type": "invalid_request_error",
                    "code": "charge_already_refunded",
                    "message": "Refund amount is greater than the unrefunded amount",
                }
            }
        charge, fee = int(intent["amount"]), int(intent.get("application_fee_amount") or 0)
        # Proportional, rounded half up (Stripe rounds each proportional share to the unit).
        fee_refund = (
            (2 * fee * amount + charge) // (2 * charge)
            if _true(data.get("refund_application_fee"))
            else 0
        )
        reversal = amount if _true(data.get("reverse_transfer")) else 0
        rid = _id("re")
        obj = {
            "id": rid,
            "object": "refund",
            "amount": amount,
            "currency": intent.get("currency"),
            "payment_intent": intent["id"],
            "charge": intent.get("latest_charge"),
            "status": "succeeded",
            "metadata": data.get("metadata", {}),
            "created": now,
            "transfer_reversal": _id("trr") if reversal else None,
        }
        intent["amount_refunded"] = intent.get("amount_refunded", 0) + amount
        intent.setdefault("refunds", []).append(
            {"id": rid, "amount": amount, "transfer_reversed": reversal, "fee_refunded": fee_refund}
        )
        self.objects[rid] = obj
        return 200, obj

    def meter_event_count(self) -> int:
        return len(self._meter_identifiers)


def _true(value: Any) -> bool:
    return str(value).lower() == "true"


def _missing(kind: str) -> tuple[int, Any]:
    return 404, {
        "error": {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "message": f"No such {kind}",
        }
    }

"""Billing test helpers: Stripe webhooks signed and delivered as Stripe does, and a signed-in
tenant owner with a Stripe subscription."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

from canal.platform import clock
from tests.factories import Person, make_tenant, make_user, sign_in, unique
from tests.stripe_fixtures import WEBHOOK_SECRET


def sign(payload: bytes, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    """A ``Stripe-Signature`` header exactly as Stripe computes it (scheme v1)."""
    timestamp = int(clock.wall_timestamp()) if at is None else at
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def event(etype: str, obj: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(clock.wall_timestamp()) if created is None else created,
        "livemode": False,
        "type": etype,
        "data": {"object": obj},
    }


async def deliver(client, evt: dict[str, Any], **sign_kw: Any):
    body = json.dumps(evt).encode()
    return await client.post(
        "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": sign(body, **sign_kw), "Content-Type": "application/json"},
    )


class Billed:
    """A signed-in owner of an enterprise tenant, with its context for service calls."""

    def __init__(self, owner: Person, tenant: Any, ctx: Any) -> None:
        self.owner, self.tenant, self.ctx = owner, tenant, ctx


async def billed_tenant(client=None, kind: str = "enterprise") -> Billed:
    from canal.platform.http.context import TenantContext, TenantRef

    owner = await make_user("计费所有者")
    tenant = await make_tenant(owner, kind=kind, name=f"聊城{unique('')}计费公司")
    ref = TenantRef(tenant.id, tenant.slug, tenant.name, tenant.kind, "active")
    ctx = TenantContext(tenant=ref, user_id=owner.user_id, roles=("owner",))
    if client is not None:
        await sign_in(client, owner)
    return Billed(owner, tenant, ctx)


async def stripe_subscription(gw, b: Billed, module_key: str = "smartpark", plan: str = "pro"):
    """What Checkout would have created: a customer with a card, subscribed to the plan."""
    from canal.platform.billing import catalogue, services

    price = await services._ensure_price(module_key, catalogue.paid_plan(module_key, plan))
    customer = await services.ensure_customer(b.ctx)
    v1 = gw.v1
    pm = await v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    await v1.payment_methods.attach_async(pm.id, {"customer": customer})
    await v1.customers.update_async(
        customer, {"invoice_settings": {"default_payment_method": pm.id}}
    )
    meta = {"tenant_id": str(b.tenant.id), "module_key": module_key, "plan": plan}
    sub = await v1.subscriptions.create_async(
        {"customer": customer, "items": [{"plan": price}], "metadata": meta},
        {"idempotency_key": f"test:sub:{uuid.uuid4()}"},
    )
    return sub.to_dict(recursive=True)

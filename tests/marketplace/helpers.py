"""Building a small market through the real services: operator staff, an approved provider
with a live listing, and a buyer — each with its own uniquely named data."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from tests.factories import Person, make_operator_staff, make_tenant, make_user, unique

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@dataclass
class Side:
    person: Person
    tenant: Any
    ctx: Any

    @property
    def slug(self) -> str:
        return str(self.tenant.slug)

    @property
    def api(self) -> str:
        return f"/api/v1/t/{self.tenant.slug}/m/services"

    @property
    def pages(self) -> str:
        return f"/t/{self.tenant.slug}/m/services"


def context(tenant: Any, user_id: uuid.UUID) -> Any:
    from canal.platform.http.context import TenantContext, TenantRef

    return TenantContext(
        TenantRef(tenant.id, tenant.slug, tenant.name, tenant.kind, "active"), user_id, ("owner",)
    )


async def make_side(name: str) -> Side:
    from canal.tenants.services import set_module

    person = await make_user(f"{name}负责人")
    tenant = await make_tenant(person, name=name)
    ctx = context(tenant, person.user_id)
    await set_module(ctx, "services", enabled=True)
    return Side(person, tenant, ctx)


async def approved_provider(name: str, operator_id: uuid.UUID) -> Side:
    from canal.marketplace import market
    from canal.platform.storage.services import object_store

    side = await make_side(name)
    stored = await object_store().upload_bytes(side.ctx, "document", PDF, filename="执照.pdf")
    provider = await market.apply_as_provider(
        side.ctx, business_scope="代理记账、纳税申报、财务咨询", qualification_file_ids=[stored.id]
    )
    await market.decide_provider(operator_id, provider.id, "approve")
    return side


async def live_listing(
    side: Side, operator_id: uuid.UUID, *, title: str | None = None, **fields: Any
) -> Any:
    from canal.marketplace import market

    data = {
        "category": "tax",
        "subcategory": "bookkeeping",
        "title": title or f"小规模纳税人代理记账 {unique('')}",
        "description": "每月记账报税,季度财务报表,年度汇算清缴。",
        "area": "dongchangfu",
        "delivery_days": 30,
        "price_model": "fixed",
        "price": "1280.00",
        **fields,
    }
    listing = await market.create_listing(side.ctx, data)
    return await market.review_listing(operator_id, listing.id, "approve")


async def operator() -> Person:
    return (await make_operator_staff())["admin"]


async def confirm_payment(order_id: uuid.UUID, buyer: Side) -> None:
    """What Stripe's webhook does for a payment the browser confirmed. Without a Stripe key
    (no-charge mode) the payment succeeded at once and this changes nothing; with the test
    gateway of tests/billing active for the session, it is the confirmation."""
    from canal.platform import db
    from canal.platform.billing.services import apply_payment_intent
    from canal.platform.billing.tables import Payment

    async with db.tenant_scope(buyer.tenant.id):
        row = (
            await Payment.select()
            .where(Payment.idempotency_key == f"market-order-{order_id}")
            .first()
        )
    assert row is not None
    if row["stripe_payment_intent_id"]:
        await apply_payment_intent(
            {
                "id": row["stripe_payment_intent_id"],
                "status": "succeeded",
                "metadata": {"tenant_id": str(buyer.tenant.id)},
            }
        )

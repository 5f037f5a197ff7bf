"""Service supermarket samples for the cross-tenant matrix.

Tenant A is both an approved provider (its own listing, pending and private to it) and a buyer
of another provider's service (a quote, an order with a message carrying a file). The markers
go into A's private texts only: the quote's need and the order's message.
"""

from __future__ import annotations

from typing import Any

from tests.factories import make_operator_staff, make_tenant, make_user, unique
from tests.marketplace.helpers import PDF, context


async def add_samples(world: Any, ctx_a: Any) -> None:
    from canal.marketplace import market
    from canal.platform.storage.services import object_store
    from canal.tenants.services import set_module

    staff = (await make_operator_staff())["admin"]
    await set_module(ctx_a, "services", enabled=True)
    stored = await object_store().upload_bytes(ctx_a, "document", PDF, filename="licence.pdf")
    provider_a = await market.apply_as_provider(
        ctx_a, business_scope="财务咨询", qualification_file_ids=[stored.id]
    )
    await market.decide_provider(staff.user_id, provider_a.id, "approve")
    from tests.storage.test_uploads import png_bytes

    picture = await object_store().upload_bytes(ctx_a, "photo", png_bytes(), filename="封面.png")
    own = await market.create_listing(
        ctx_a,
        {
            "category": "legal",
            "title": "合同审查",
            "description": "审查采购合同",
            "area": "online",
            "delivery_days": 5,
            "price_model": "quote",
        },
        image_ids=[picture.id],
    )

    # Another provider, whose service A buys.
    seller = await make_user("matrix-seller")
    seller_tenant = await make_tenant(seller, name=f"{unique('卖方')}有限公司")
    ctx_c = context(seller_tenant, seller.user_id)
    await set_module(ctx_c, "services", enabled=True)
    licence = await object_store().upload_bytes(ctx_c, "document", PDF, filename="c.pdf")
    provider_c = await market.apply_as_provider(
        ctx_c, business_scope="代理记账", qualification_file_ids=[licence.id]
    )
    await market.decide_provider(staff.user_id, provider_c.id, "approve")
    listing = await market.create_listing(
        ctx_c,
        {
            "category": "tax",
            "title": "代理记账",
            "description": "每月记账",
            "area": "online",
            "delivery_days": 30,
            "price_model": "fixed",
            "price": "500",
        },
    )
    await market.review_listing(staff.user_id, listing.id, "approve")
    marker = world.markers[0]
    quote = await market.request_quote(listing.id, ctx_a, f"{marker} 需求")
    order = await market.buy_listing(listing.id, ctx_a)
    attachment = await object_store().upload_bytes(ctx_a, "document", PDF, filename="需求.pdf")
    message = await market.post_message(order.id, ctx_a, f"{marker} 留言", file_id=attachment.id)
    world.samples.update(
        {
            "listing_id": str(own.id),
            "image_id": str(picture.id),
            "quote_id": str(quote.id),
            "order_id": str(order.id),
            "message_id": str(message.id),
            "provider_id": str(provider_a.id),
        }
    )

"""Sending the organisation's files to another organisation (issue #22, point 4).

An order's message thread is read by the other side, who downloads its attachments. Writing
in it takes the side's permission (services:buy for the buyer, services:sell for the
provider), and attaching one of the organisation's existing files also takes files:read:
before, any member could attach any of the organisation's documents (the route only asked
for tenant:read) and the provider downloaded them.
"""

from __future__ import annotations

from canal.marketplace import market
from canal.platform import db
from canal.platform.access.services import access
from canal.platform.storage.services import object_store
from canal.tenants.services import grant_role, revoke_role
from canal.tenants.tables import Membership
from tests.factories import make_user, sign_in, unique
from tests.marketplace.helpers import (
    PDF,
    approved_provider,
    confirm_payment,
    live_listing,
    make_side,
    operator,
)
from tests.marketplace.test_services_api import app_client


async def _member(side, name: str, *roles: str, plain_member: bool = True):
    """A member of ``side`` with ``roles``; without the plain member role (and so without
    files:read) when ``plain_member`` is False — as an owner sets up a purchasing clerk."""
    person = await make_user(name)
    async with db.tenant_scope(side.tenant.id, side.person.user_id):
        await Membership.insert(Membership(tenant_id=side.tenant.id, user_id=person.user_id))
        await access().assign_role(person.user_id, "member", side.tenant.id)
    for role in roles:
        assert await grant_role(side.ctx, person.user_id, role)
    if not plain_member:
        assert await revoke_role(side.ctx, person.user_id, "member")
    return person


async def test_the_lowest_role_cannot_send_the_organisations_files(app):
    staff = await operator()
    provider = await approved_provider(f"附件财税{unique('')}", staff.user_id)
    listing = await live_listing(provider, staff.user_id)
    buyer = await make_side(f"附件买方{unique('')}")
    order = await market.buy_listing(listing.id, buyer.ctx)
    await market.pay_order(order.id, buyer.ctx)
    await confirm_payment(order.id, buyer)
    # The owner's confidential document, in the organisation's files.
    secret = await object_store().upload_bytes(
        buyer.ctx, "document", PDF, filename="董事会决议.pdf"
    )
    plain = await _member(buyer, "普通成员")  # the lowest role: tenant, members, files: read
    clerk = await _member(buyer, "采购员", "service_buyer", plain_member=False)
    trusted = await _member(buyer, "采购主管", "service_buyer")  # buys, and reads files
    thread = f"{buyer.api}/orders/{order.id}/messages"
    page = f"{buyer.pages}/orders/{order.id}/messages"

    async with app_client(app) as p, app_client(app) as c, app_client(app) as t:
        await sign_in(p, plain)
        await sign_in(c, clerk)
        await sign_in(t, trusted)
        # The plain member may read the thread but not write in it, with or without a file.
        assert (await p.get(thread)).status_code == 200
        for body in ({"body": "请查收", "file_id": str(secret.id)}, {"body": "你好"}):
            r = await p.post(thread, json=body)
            assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
        r = await p.post(page, data={"body": "请查收"}, files={"file": ("x.pdf", PDF)})
        assert r.status_code == 403
        # The clerk writes, but attaching the owner's document takes files:read …
        r = await c.post(thread, json={"body": "请查收", "file_id": str(secret.id)})
        assert r.status_code == 403 and r.json()["code"] == "files_read_required", r.text
        assert r.json()["detail_zh"] != r.json()["detail_en"]
        # … while a file of her own, uploaded with the message, is hers to send.
        r = await c.post(page, data={"body": "我们的需求"}, files={"file": ("需求.pdf", PDF)})
        assert r.status_code in {303, 200}, r.text
        assert (await c.post(thread, json={"body": "收到"})).status_code == 201
        # Who may buy and read the organisation's files may also attach them.
        r = await t.post(thread, json={"body": "决议见附件", "file_id": str(secret.id)})
        assert r.status_code == 201, r.text

    seen_by_provider = await market.list_messages(order.id, provider.ctx)
    attached = sorted(m.file_name for m in seen_by_provider if m.file_id)
    assert attached == sorted(["需求.pdf", "董事会决议.pdf"])
    from canal.marketplace.tables import OrderMessage

    async with db.tenant_scope(buyer.tenant.id):
        rows = await OrderMessage.select(OrderMessage.author_id).where(
            OrderMessage.file_id == secret.id
        )
    assert rows == [{"author_id": trusted.user_id}]  # never the plain member or the clerk


async def test_the_provider_side_needs_sell_to_write_and_files_read_to_attach(app):
    staff = await operator()
    provider = await approved_provider(f"附件服务商{unique('')}", staff.user_id)
    listing = await live_listing(provider, staff.user_id)
    buyer = await make_side(f"附件买家{unique('')}")
    order = await market.buy_listing(listing.id, buyer.ctx)
    await market.pay_order(order.id, buyer.ctx)
    await confirm_payment(order.id, buyer)
    price_list = await object_store().upload_bytes(
        provider.ctx, "document", PDF, filename="内部报价单.pdf"
    )
    agent = await _member(provider, "客服", "service_agent", plain_member=False)
    plain = await _member(provider, "普通成员")
    thread = f"{provider.api}/orders/{order.id}/messages"
    async with app_client(app) as a, app_client(app) as p:
        await sign_in(a, agent)
        await sign_in(p, plain)
        r = await p.post(thread, json={"body": "报价单", "file_id": str(price_list.id)})
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        r = await a.post(thread, json={"body": "报价单", "file_id": str(price_list.id)})
        assert r.status_code == 403 and r.json()["code"] == "files_read_required"
        assert (await a.post(thread, json={"body": "已受理"})).status_code == 201
    assert [m.file_id for m in await market.list_messages(order.id, buyer.ctx)] == [None]

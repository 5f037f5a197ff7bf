"""Provider teams (issue #6: "several members of the provider tenant handle orders with roles"):
an order handler (服务商客服) answers quotes and moves orders but cannot touch the payout
account or statements; a provider manager (服务商主管) can; a plain member can do neither."""

from __future__ import annotations

import pytest

from canal.marketplace import market, orders
from canal.platform import db
from canal.platform.access.services import access
from canal.platform.http.errors import CanalError
from canal.tenants.services import grant_role
from canal.tenants.tables import Membership
from tests.factories import make_user, sign_in, unique
from tests.marketplace.helpers import (
    approved_provider,
    confirm_payment,
    live_listing,
    make_side,
    operator,
)
from tests.marketplace.test_services_api import app_client


async def _member(provider, name: str, role: str):
    person = await make_user(name)
    async with db.tenant_scope(provider.tenant.id, provider.person.user_id):
        await Membership.insert(Membership(tenant_id=provider.tenant.id, user_id=person.user_id))
        await access().assign_role(person.user_id, "member", provider.tenant.id)
    if role != "member":
        assert await grant_role(provider.ctx, person.user_id, role)
    return person


async def test_order_handlers_managers_and_plain_members(app, client):
    staff = await operator()
    provider = await approved_provider(f"团队财税{unique('')}", staff.user_id)
    listing = await live_listing(provider, staff.user_id)
    quoted = await live_listing(provider, staff.user_id, price_model="quote", price="")
    buyer = await make_side(f"团队买方{unique('')}")
    agent = await _member(provider, "客服小王", "service_agent")
    manager = await _member(provider, "主管老李", "service_manager")
    plain = await _member(provider, "普通成员", "member")

    order = await market.buy_listing(listing.id, buyer.ctx)
    await market.pay_order(order.id, buyer.ctx)
    await confirm_payment(order.id, buyer)
    quote = await market.request_quote(quoted.id, buyer.ctx, "每月代账,需要上门服务。")
    path = f"{provider.api}/orders/{order.id}/transition"

    async with app_client(app) as a, app_client(app) as m, app_client(app) as p:
        await sign_in(a, agent)
        await sign_in(m, manager)
        await sign_in(p, plain)

        # A plain member sees the order but may not move it, answer a quote or see the money.
        assert (await p.get(f"{provider.api}/orders/{order.id}")).status_code == 200
        r = await p.post(path, json={"action": "accept"})
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        r = await p.post(
            f"{provider.api}/quotes/{quote.id}/answer",
            json={"price": "900", "scope": "代账", "valid_until": "2099-01-01"},
        )
        assert r.status_code == 403
        assert (await p.get(f"{provider.api}/payouts")).status_code == 403
        assert (await market.get_order(order.id, provider.ctx)).state == "placed"

        # The order handler answers the quote and takes the order to delivery …
        r = await a.post(
            f"{provider.api}/quotes/{quote.id}/answer",
            json={"price": "900", "scope": "代账", "valid_until": "2099-01-01"},
        )
        assert r.status_code == 200, r.text
        for action in ("accept", "start", "deliver"):
            r = await a.post(path, json={"action": action})
            assert r.status_code == 200, (action, r.text)
        assert r.json()["state"] == "delivered"
        r = await a.post(f"{provider.api}/orders/{order.id}/messages", json={"body": "已交付"})
        assert r.status_code == 201, r.text
        # … but neither sees the statement nor sets up the payout account.
        assert (await a.get(f"{provider.api}/payouts")).status_code == 403
        assert (await a.post(f"{provider.api}/payouts/connect")).status_code == 403
        assert (await a.get(f"{provider.pages}/payouts")).status_code == 403
        centre = await a.get(f"{provider.pages}/provider")
        assert centre.status_code == 200 and f"{provider.pages}/payouts" not in centre.text

        # The manager (like the owner) does.
        assert (await m.get(f"{provider.api}/payouts")).status_code == 200
        centre = await m.get(f"{provider.pages}/provider")
        assert f"{provider.pages}/payouts" in centre.text


async def test_suspending_a_provider_takes_its_listings_off_and_back(app, client):
    """Suspension (with a reason) removes the provider's live listings from the catalogue and
    from sale; open orders go on; approving it again brings the listings back."""
    staff = await operator()
    provider = await approved_provider(f"暂停财税{unique('')}", staff.user_id)
    word = unique("稽核")
    listing = await live_listing(provider, staff.user_id, title=f"税务稽核应对{word}")
    buyer = await make_side(f"暂停买方{unique('')}")
    order = await market.buy_listing(listing.id, buyer.ctx)
    await market.pay_order(order.id, buyer.ctx)
    await confirm_payment(order.id, buyer)
    started = await market.buy_listing(listing.id, buyer.ctx)
    await market.pay_order(started.id, buyer.ctx)
    await confirm_payment(started.id, buyer)
    for action in ("accept", "start"):
        await market.transition_order(started.id, provider.ctx, action)
    mine = {"q": f"稽核 {word}", "provider": provider.tenant.name}
    provider_row = await market.my_provider(provider.ctx)
    assert provider_row is not None
    decide = f"/api/v1/operator/m/services/providers/{provider_row.id}/decide"

    async with app_client(app) as shopper, app_client(app) as op:
        await sign_in(shopper, buyer.person)
        await sign_in(op, staff)
        assert [
            h["id"] for h in (await shopper.get(f"{buyer.api}/", params=mine)).json()["hits"]
        ] == [str(listing.id)]
        refused = await op.post(decide, json={"decision": "suspend"})
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "reason"
        r = await op.post(decide, json={"decision": "suspend", "reason": "多起投诉核查中"})
        assert r.status_code == 200 and r.json()["status"] == "suspended"

        assert (await shopper.get(f"{buyer.api}/", params=mine)).json()["total"] == 0
        assert (await shopper.get(f"{buyer.api}/listings/{listing.id}")).status_code == 404
        buy = await shopper.post(f"{buyer.api}/listings/{listing.id}/buy")
        assert buy.status_code == 404
        # No new work while suspended: accepting the paid order is refused …
        with pytest.raises(CanalError) as no_new:
            await market.transition_order(order.id, provider.ctx, "accept")
        assert no_new.value.code == "provider_not_approved"
        assert (await market.get_order(order.id, buyer.ctx)).state == "placed"
        # … but work already taken on is finished, and the new order may be declined.
        delivered = await market.transition_order(started.id, provider.ctx, "deliver")
        assert delivered.state == "delivered"
        declined = await market.transition_order(order.id, provider.ctx, "decline")
        assert declined.state == orders.transition("placed", "decline", "provider").value

        own = await market.my_provider(provider.ctx)
        assert own is not None and (own.status, own.reason) == ("suspended", "多起投诉核查中")

        r = await op.post(decide, json={"decision": "approve"})
        assert r.json()["status"] == "approved"
        hits = (await shopper.get(f"{buyer.api}/", params=mine)).json()["hits"]
        assert [h["id"] for h in hits] == [str(listing.id)]
        assert (await shopper.post(f"{buyer.api}/listings/{listing.id}/buy")).status_code == 201

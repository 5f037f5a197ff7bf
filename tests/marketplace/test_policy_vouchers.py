"""Vouchers granted by the policy module (decision 0026): an authority approving an application
to a voucher policy (创新券) grants the enterprise an innovation voucher in the supermarket, in
the approval's transaction and once per application; the enterprise spends it at checkout and
the operator's report shows where it came from. No supermarket for the enterprise: no voucher,
the approval stands."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import uuid

from canal.marketplace import catalogue
from canal.marketplace.tables import Voucher
from canal.platform import clock, db
from tests.factories import sign_in, unique
from tests.marketplace.helpers import (
    approved_provider,
    confirm_payment,
    live_listing,
    make_side,
    operator,
)
from tests.marketplace.test_services_api import app_client
from tests.policy.helpers import CRITERIA, org, policy_json


async def _vouchers_for(ref: str) -> list[dict]:
    async with db.platform_scope():
        return await Voucher.select().where(
            (Voucher.source == "policy") & (Voucher.source_ref == ref)
        )


async def _apply(client, enterprise_slug: str, policy_id: str) -> str:
    r = await client.post(
        f"/api/v1/t/{enterprise_slug}/m/policy/apply/{policy_id}",
        json={"contact": "王经理 13900000000"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _publish(client, gov_slug: str, **over) -> str:
    r = await client.post(
        f"/api/v1/t/{gov_slug}/m/policy/policies",
        json=policy_json(CRITERIA, materials=[], **over) | {"publish": True},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_an_approved_voucher_application_grants_a_voucher_spent_at_checkout(app, client):
    from canal.park.policy import services as policy
    from canal.tenants.services import set_module

    staff = await operator()
    provider = await approved_provider(f"券源财税{unique('')}", staff.user_id)
    listing = await live_listing(provider, staff.user_id, price="5000")
    buyer = await make_side(f"创新券企业{unique('')}")
    await set_module(buyer.ctx, "policy", enabled=True)
    gov_owner, gov, gov_ctx = await org("government", unique("东昌府区科技局"))

    async with app_client(app) as g, app_client(app) as e:
        await sign_in(g, gov_owner)
        await sign_in(e, buyer.person)
        policy_id = await _publish(g, gov.slug, support_type="voucher", amount_text="最高5万元")
        app_id = await _apply(e, buyer.slug, policy_id)
        ref = f"policy-application:{app_id}"
        decide = f"/api/v1/t/{gov.slug}/m/policy/queue/{app_id}/decide"

        # A voucher of nothing is refused; the application stays where it was, no voucher.
        r = await g.post(decide, json={"action": "accept", "amount_yuan": 0})
        assert r.status_code == 422, r.text
        [error] = r.json()["errors"]
        assert (error["field"], error["code"]) == ("amount_yuan", "voucher_amount_zero")
        assert error["message"] == "创新券的核定金额须大于零。"  # zh-CN first
        assert (await e.get(f"{buyer.api}/vouchers")).json() == []
        assert (await g.get(f"{decide.removesuffix('/decide')}")).json()["status"] == "submitted"

        r = await g.post(decide, json={"action": "accept", "amount_yuan": "3000"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "accepted"

        # The enterprise sees it in the supermarket, over the API and on its page.
        [voucher] = (await e.get(f"{buyer.api}/vouchers")).json()
        assert voucher["source"] == "policy" and voucher["source_ref"] == ref
        assert voucher["kind"] == "innovation" and voucher["amount_fen"] == 300_000
        assert voucher["percent_bp"] == 0 and voucher["order_id"] is None
        assert sorted(voucher["categories"]) == sorted(c.key for c in catalogue.CATEGORIES)
        through = dt.date.fromisoformat(voucher["valid_through"])
        assert through == policy.today() + dt.timedelta(days=policy.VOUCHER_VALID_DAYS)
        page = await e.get(f"{buyer.pages}/vouchers")
        assert page.status_code == 200
        assert voucher["code"] in page.text and "政策" in page.text
        assert f"/t/{buyer.slug}/m/policy/applications/{app_id}" in page.text

        # Granting again (a retried call) issues nothing new.
        review = await policy.get_review(gov_ctx, uuid.UUID(app_id))
        async with db.tenant_scope(gov.id, gov_owner.user_id):
            await policy._grant_service_voucher(gov_ctx, review, 300_000)
        assert len(await _vouchers_for(ref)) == 1

        # Spent at checkout: the voucher pays ¥3,000 of the ¥5,000 service.
        r = await e.post(f"{buyer.api}/listings/{listing.id}/buy", json={})
        assert r.status_code in (200, 201), r.text
        order_id = r.json()["id"]
        r = await e.post(
            f"{buyer.api}/orders/{order_id}/pay", json={"voucher_ids": [voucher["id"]]}
        )
        assert r.status_code == 200, r.text
        await confirm_payment(uuid.UUID(order_id), buyer)
        order = r.json()["order"]
        assert order["voucher_subsidy_fen"] == 300_000
        assert order["buyer_paid_fen"] == 500_000 - 300_000
        [used] = (await e.get(f"{buyer.api}/vouchers")).json()
        assert used["order_id"] == order_id and used["applied_fen"] == 300_000

    # The operator's report names the grant and what it paid.
    await sign_in(client, staff)
    board = (await client.get("/api/v1/operator/m/services/")).json()["vouchers"]
    [row] = [r for r in board["vouchers"] if r["source_ref"] == ref]
    assert row["source"] == "policy" and row["holder_name"] == buyer.tenant.name
    desk = await client.get("/operator/m/services/")
    assert ref in desk.text
    # The charts of orders, turnover and voucher use by category and month count this order.
    charts = {
        key: json.loads(html.unescape(raw))
        for key, raw in re.findall(r'id="chart-(\w+)"[^>]*data-chart="([^"]*)"', desk.text)
    }
    assert set(charts) == {"orders", "turnover", "vouchers"}
    month = charts["vouchers"]["xAxis"]["data"].index(clock.local_now().strftime("%Y-%m"))
    [tax_vouchers] = [s for s in charts["vouchers"]["series"] if s["name"] == "财税服务"]
    assert tax_vouchers["data"][month] >= 3000
    [tax_orders] = [s for s in charts["orders"]["series"] if s["name"] == "财税服务"]
    assert tax_orders["data"][month] >= 1


async def test_no_voucher_without_the_supermarket_or_for_other_support(app, client):
    gov_owner, gov, _ = await org("government", unique("东昌府区工信局"))
    # The policy module alone: the approval stands, nothing is granted.
    plain_owner, plain, _ = await org("enterprise")
    # The supermarket on, but the policy is a subsidy (资金补贴): no voucher either.
    shop = await make_side(f"补贴企业{unique('')}")
    from canal.tenants.services import set_module

    await set_module(shop.ctx, "policy", enabled=True)

    async with app_client(app) as g, app_client(app) as p, app_client(app) as s:
        await sign_in(g, gov_owner)
        await sign_in(p, plain_owner)
        await sign_in(s, shop.person)
        voucher_policy = await _publish(g, gov.slug, support_type="voucher")
        subsidy_policy = await _publish(g, gov.slug, support_type="subsidy")
        plain_app = await _apply(p, plain.slug, voucher_policy)
        shop_app = await _apply(s, shop.slug, subsidy_policy)
        for app_id in (plain_app, shop_app):
            r = await g.post(
                f"/api/v1/t/{gov.slug}/m/policy/queue/{app_id}/decide",
                json={"action": "accept", "amount_yuan": "1000"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "accepted" and r.json()["amount_fen"] == 100_000
            assert await _vouchers_for(f"policy-application:{app_id}") == []
        assert (await s.get(f"{shop.api}/vouchers")).json() == []
        # A subsidy approved at ¥0 is fine (only a voucher must be worth something).
        zero_app = await _apply(s, shop.slug, await _publish(g, gov.slug, support_type="award"))
        r = await g.post(
            f"/api/v1/t/{gov.slug}/m/policy/queue/{zero_app}/decide",
            json={"action": "accept", "amount_yuan": 0},
        )
        assert r.status_code == 200 and r.json()["status"] == "accepted"

"""Package options, stacked / percentage / policy vouchers and the operator's auto-confirm
days — over the JSON API and the pages, with bad input refused (bilingual, nothing changed)."""

from __future__ import annotations

import datetime as dt

import pytest

from canal.marketplace import market
from canal.marketplace.tables import Order
from canal.platform import clock, db
from canal.platform.http.errors import CanalError
from tests.factories import csrf_from, sign_in, unique
from tests.marketplace.helpers import approved_provider, live_listing, make_side, operator
from tests.marketplace.test_services_api import app_client

LISTING = {
    "category": "tax",
    "subcategory": "bookkeeping",
    "description": "每月记账报税。",
    "area": "dongchangfu",
    "delivery_days": 30,
    "price_model": "fixed",
    "price": "1000",
}
OPTIONS = [
    {"group": "发票", "name": "普票", "price": "0"},
    {"group": "发票", "name": "专票", "price": "50.5"},
    {"name": "加急", "price": "200"},
    {"name": "上门", "price": "99.99"},
]


async def _orders_of(tenant_id) -> int:
    async with db.platform_scope():
        return await Order.count().where(Order.tenant_id == tenant_id)


async def test_options_over_the_api_priced_at_checkout_and_re_reviewed(app, client):
    staff = await operator()
    provider = await approved_provider(f"选项财税{unique('')}", staff.user_id)
    buyer = await make_side(f"选项买方{unique('')}")
    await sign_in(client, provider.person)
    # Bad options are refused, each with its own code, nothing created.
    for options, code in (
        ([{"name": "加急", "price": "-5"}], "price_negative"),
        ([{"name": "加急", "price": "1.234"}], "price_too_many_decimals"),
        ([{"name": "", "price": "1"}], "bad_option"),
        ([{"name": "加急", "price": "1"}, {"name": "加急", "price": "2"}], "duplicate_option"),
        ([{"name": f"项{i}", "price": "1"} for i in range(13)], "too_many_options"),
    ):
        bad = await client.post(
            f"{provider.api}/listings/new",
            json={**LISTING, "title": f"代理记账{unique('')}", "options": options},
        )
        assert bad.status_code == 422, options
        [error] = bad.json()["errors"]
        assert (error["field"], error["code"]) == ("options", code)
        assert error["message"]
    quote_only = await client.post(
        f"{provider.api}/listings/new",
        json={**LISTING, "title": "询价", "price_model": "quote", "price": "", "options": OPTIONS},
    )
    assert quote_only.json()["errors"][0]["code"] == "options_need_fixed_price"
    assert (await client.get(f"{provider.api}/provider")).status_code == 200

    created = await client.post(
        f"{provider.api}/listings/new",
        json={**LISTING, "title": f"代理记账{unique('')}", "options": OPTIONS},
    )
    assert created.status_code == 201, created.text
    listing_id = created.json()["id"]
    await market.review_listing(staff.user_id, listing_id, "approve")

    async with app_client(app) as shopper:
        await sign_in(shopper, buyer.person)
        shown = (await shopper.get(f"{buyer.api}/listings/{listing_id}")).json()
        assert [(o["group"], o["name"], o["price_fen"]) for o in shown["options"]] == [
            ("发票", "普票", 0),
            ("发票", "专票", 5050),
            ("", "加急", 20000),
            ("", "上门", 9999),
        ]
        before = await _orders_of(buyer.tenant.id)
        for options, code in (
            ([9], "option_unknown"),
            ([0, 1], "option_group_choice"),  # two of one group
            ([2], "option_group_choice"),  # none of the group
            ([1, 1], "option_twice"),
        ):
            refused = await shopper.post(
                f"{buyer.api}/listings/{listing_id}/buy", json={"options": options}
            )
            assert refused.status_code == 422, options
            assert refused.json()["errors"][0]["code"] == code
        assert await _orders_of(buyer.tenant.id) == before  # nothing was ordered
        bought = await shopper.post(
            f"{buyer.api}/listings/{listing_id}/buy", json={"options": [3, 1, 2]}
        )
        assert bought.status_code == 201, bought.text
        order = bought.json()
        assert order["list_price_fen"] == 100000 + 5050 + 20000 + 9999
        assert [o["name"] for o in order["options"]] == ["专票", "加急", "上门"]
        assert order["commission_fen"] == round(order["list_price_fen"] * 0.05)

        # An edit of the options waits for review; buyers keep the reviewed options.
        edit = await client.post(
            f"{provider.api}/listings/{listing_id}/edit",
            json={
                **LISTING,
                "title": shown["title"],
                "options": [{"name": "加急", "price": "300"}],
            },
        )
        assert edit.status_code == 200, edit.text
        assert edit.json()["pending_changes"]["options"] == [
            {"group": "", "name": "加急", "price_fen": 30000}
        ]
        still = (await shopper.get(f"{buyer.api}/listings/{listing_id}")).json()
        assert len(still["options"]) == 4
        async with app_client(app) as op:  # the reviewer sees the proposed options
            await sign_in(op, staff)
            desk = await op.get("/operator/m/services/")
            assert "加急 +¥300.00" in desk.text
        await market.review_listing(staff.user_id, listing_id, "approve")
        now = (await shopper.get(f"{buyer.api}/listings/{listing_id}")).json()
        assert [(o["name"], o["price_fen"]) for o in now["options"]] == [("加急", 30000)]
        # The order keeps the options as priced when it was placed.
        again = (await shopper.get(f"{buyer.api}/orders/{order['id']}")).json()
        assert again["options"] == order["options"]


async def test_options_on_the_pages_buy_form_and_order_price_block(app, client):
    staff = await operator()
    provider = await approved_provider(f"选项页面{unique('')}", staff.user_id)
    listing = await live_listing(provider, staff.user_id, options=OPTIONS)
    buyer = await make_side(f"选项页面买方{unique('')}")
    await sign_in(client, provider.person)
    form = await client.get(f"{provider.pages}/listings/{listing.id}/edit")
    assert "发票: 专票 | 50.50" in form.text  # the form shows the options as lines
    bad = await client.post(
        f"{provider.pages}/listings/{listing.id}/edit",
        data={
            "_csrf": csrf_from(form.text),
            **{k: str(v) for k, v in LISTING.items()},
            "title": listing.title,
            "options": "加急 | -3",
        },
    )
    assert bad.status_code == 422 and "价格不能为负数" in bad.text
    async with app_client(app) as shopper:
        await sign_in(shopper, buyer.person)
        page = await shopper.get(f"{buyer.pages}/listings/{listing.id}")
        assert page.status_code == 200
        assert 'name="option_g0"' in page.text and 'name="option"' in page.text
        assert "¥50.50" in page.text
        missing = await shopper.post(
            f"{buyer.pages}/listings/{listing.id}/buy",
            data={"_csrf": csrf_from(page.text), "option": "2"},
        )
        assert missing.status_code == 422 and "请选择且只选择一项" in missing.text
        bought = await shopper.post(
            f"{buyer.pages}/listings/{listing.id}/buy",
            data={"_csrf": csrf_from(page.text), "option_g0": "1", "option": ["2", "3"]},
        )
        assert bought.status_code == 303, bought.text
        order_page = await shopper.get(bought.headers["location"])
        assert 'class="price-block"' in order_page.text
        for text in ("发票: 专票", "+¥50.50", "+¥200.00", "+¥99.99", "¥1,630.49"):
            assert text in order_page.text, text


async def test_stacked_percentage_and_policy_vouchers(app, client):
    staff = await operator()
    provider = await approved_provider(f"券财税{unique('')}", staff.user_id)
    listing = await live_listing(provider, staff.user_id, price="1000.01")
    buyer = await make_side(f"券买方{unique('')}")
    soon = (clock.today() + dt.timedelta(days=5)).isoformat()
    later = (clock.today() + dt.timedelta(days=50)).isoformat()
    await sign_in(client, staff)
    api = "/api/v1/operator/m/services/vouchers"
    base = {"holder": buyer.slug, "kind": "innovation", "categories": ["tax"]}
    for percent, amount, code in (
        ("0", "100", "bad_percent"),
        ("100.01", "100", "bad_percent"),
        ("12.345", "100", "bad_percent"),
        ("五十", "100", "bad_percent"),
        ("50", "-1", "price_negative"),
        ("50", "1.001", "price_too_many_decimals"),
    ):
        bad = await client.post(
            api, json={**base, "amount": amount, "percent": percent, "valid_through": later}
        )
        assert bad.status_code == 422, (percent, amount)
        assert code in {e["code"] for e in bad.json()["errors"]}
    assert await market.my_vouchers(buyer.ctx) == []
    half = await client.post(
        api, json={**base, "amount": "400", "percent": "50", "valid_through": later}
    )
    assert half.status_code == 201 and half.json()["percent_bp"] == 5000
    fixed = await client.post(api, json={**base, "amount": "300", "valid_through": soon})
    # Granted by a policy's approved application (the policy module's call), idempotent.
    granted = await market.issue_voucher(
        None,
        holder_id=buyer.tenant.id,
        kind="innovation",
        amount="1000",
        percent="10",
        categories=["tax"],
        valid_through=later,
        source="policy",
        source_ref=f"policy-application:{unique('')}",
    )
    twice = await market.issue_voucher(
        None,
        holder_id=buyer.tenant.id,
        kind="innovation",
        amount="1000",
        percent="10",
        categories=["tax"],
        valid_through=later,
        source="policy",
        source_ref=granted.source_ref,
    )
    assert twice.id == granted.id and len(await market.my_vouchers(buyer.ctx)) == 3
    with pytest.raises(ValueError):
        await market.issue_voucher(
            None,
            holder_id=buyer.tenant.id,
            kind="innovation",
            amount="1",
            categories=["tax"],
            valid_through=later,
            source="policy",
        )

    order = await market.buy_listing(listing.id, buyer.ctx)
    async with app_client(app) as shopper:
        await sign_in(shopper, buyer.person)
        unknown = await shopper.post(
            f"{buyer.api}/orders/{order.id}/pay",
            json={"voucher_ids": [half.json()["id"], "00000000-0000-4000-8000-000000000000"]},
        )
        assert unknown.status_code == 422
        assert (await market.get_order(order.id, buyer.ctx)).voucher_subsidy_fen == 0
        paid = await shopper.post(
            f"{buyer.api}/orders/{order.id}/pay",
            json={"voucher_ids": [half.json()["id"], fixed.json()["id"], str(granted.id)]},
        )
        assert paid.status_code == 200, paid.text
    done = paid.json()["order"]
    # Stacking: the fixed voucher lapses first (¥300); then, lapsing on the same day, the one
    # worth more: 50 % of ¥1,000.01 (¥500.01) capped at ¥400; then 10 % = ¥100.00.
    assert done["voucher_subsidy_fen"] == 30000 + 40000 + 10000
    assert done["buyer_paid_fen"] == 100001 - 80000
    applied = {v.id: v.applied_fen for v in await market.my_vouchers(buyer.ctx)}
    assert sorted(applied.values()) == [10000, 30000, 40000]
    # A voucher that would pay nothing more is refused, not burned.
    other = await market.buy_listing(listing.id, buyer.ctx)
    big = await market.issue_voucher(
        staff.user_id,
        holder_slug=buyer.slug,
        kind="service",
        amount="2000",
        categories=["tax"],
        valid_through=soon,
    )
    small = await market.issue_voucher(
        staff.user_id,
        holder_slug=buyer.slug,
        kind="service",
        amount="1",
        categories=["tax"],
        valid_through=later,
    )
    with pytest.raises(CanalError) as needless:
        await market.pay_order(other.id, buyer.ctx, voucher_ids=[big.id, small.id])
    assert needless.value.code == "voucher_not_needed"
    assert {v.id: v.order_id for v in await market.my_vouchers(buyer.ctx)}[big.id] is None

    # The operator's report and desk show where the vouchers came from.
    board = (await client.get("/api/v1/operator/m/services/")).json()["vouchers"]
    rows = {r["id"]: r for r in board["vouchers"]}
    assert rows[str(granted.id)]["source"] == "policy"
    assert rows[str(granted.id)]["source_ref"] == granted.source_ref
    assert rows[half.json()["id"]]["source"] == "operator"
    assert board["by_source"]["policy"][0] >= 1
    desk = await client.get("/operator/m/services/")
    assert granted.source_ref in desk.text and "政策" in desk.text


async def test_auto_confirm_days_set_by_the_operator(app, client):
    from canal.marketplace.orders import OrderState
    from tests.marketplace.test_services_orders import _order_in

    staff = await operator()
    provider = await approved_provider(f"自动确认{unique('')}", staff.user_id)
    listing = await live_listing(provider, staff.user_id)
    buyer = await make_side(f"自动确认买方{unique('')}")
    world = (staff, provider, listing, buyer)
    await sign_in(client, staff)
    desk = await client.get("/operator/m/services/")
    before = await market.auto_confirm_days()
    for value in ("0", "31", "3.5", "三", "", "9" * 400):
        bad = await client.post(
            "/operator/m/services/settings",
            data={"_csrf": csrf_from(desk.text), "auto_confirm_days": value},
        )
        assert bad.status_code == 422 and "自动确认天数须为 1–30" in bad.text, value
        api_bad = await client.post(
            "/api/v1/operator/m/services/settings", json={"auto_confirm_days": value}
        )
        assert api_bad.status_code == 422
        assert api_bad.json()["errors"][0]["code"] == "bad_auto_confirm_days"
    assert await market.auto_confirm_days() == before  # unchanged by the refusals
    ok = await client.post(
        "/operator/m/services/settings",
        data={"_csrf": csrf_from(desk.text), "auto_confirm_days": "12"},
    )
    assert ok.status_code == 303
    assert (await client.get("/api/v1/operator/m/services/")).json()["auto_confirm_days"] == 12
    set_api = await client.post(
        "/api/v1/operator/m/services/settings", json={"auto_confirm_days": "3"}
    )
    assert set_api.json() == {"auto_confirm_days": 3}
    assert 'value="3"' in (await client.get("/operator/m/services/")).text

    order = await _order_in(OrderState.DELIVERED, world)
    now = clock.now()
    async with db.platform_scope():
        await Order.update({Order.delivered_at: now - dt.timedelta(days=2)}).where(
            Order.id == order.id
        )
    await market.auto_confirm_delivered(now=now)
    assert (await market.get_order(order.id, buyer.ctx)).state == "delivered"  # 2 < 3 days
    await market.auto_confirm_delivered(now=now + dt.timedelta(days=1, minutes=1))
    confirmed = await market.get_order(order.id, buyer.ctx)
    assert confirmed.state == "confirmed"
    history = await market.order_history(order.id, buyer.ctx)
    assert history[-1].party == "system" and "3 天" in history[-1].note
    await market.set_auto_confirm_days(staff.user_id, 7)

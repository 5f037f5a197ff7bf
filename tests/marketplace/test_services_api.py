"""The supermarket end to end over the JSON API: provider application and review, listing
review (and re-review of an edit), Chinese search, quote → order → payment → transitions →
review, with every refusal the issue names."""

from __future__ import annotations

import datetime as dt

from canal.platform import clock
from tests.factories import sign_in, unique
from tests.marketplace.helpers import (
    PDF,
    approved_provider,
    confirm_payment,
    live_listing,
    make_side,
    operator,
)


async def test_provider_application_and_operator_decisions(app, client):
    staff = await operator()
    applicant = await make_side(f"明德财税{unique('')}")
    await sign_in(client, applicant.person)
    # No qualification: refused next to the field, nothing stored.
    answer = await client.post(
        f"{applicant.api}/provider",
        json={"business_scope": "代理记账", "qualification_file_ids": []},
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "qualifications"
    assert (await client.get(f"{applicant.api}/provider")).json() is None

    uploaded = await client.post(f"/api/v1/t/{applicant.slug}/files?name=licence.pdf", content=PDF)
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    answer = await client.post(
        f"{applicant.api}/provider",
        json={"business_scope": "代理记账、纳税申报", "qualification_file_ids": [file_id]},
    )
    assert answer.status_code == 201, answer.text
    provider = answer.json()
    assert provider["status"] == "pending"
    # Not approved yet: cannot list services.
    listing = {
        "category": "tax",
        "title": "代理记账",
        "description": "每月记账报税",
        "area": "dongchangfu",
        "delivery_days": 30,
        "price_model": "fixed",
        "price": "800",
    }
    refused = await client.post(f"{applicant.api}/listings/new", json=listing)
    assert refused.status_code == 403 and refused.json()["code"] == "provider_not_approved"

    async with app_client(app) as op:
        await sign_in(op, staff)
        reject = await op.post(
            f"/api/v1/operator/m/services/providers/{provider['id']}/decide",
            json={"decision": "reject"},
        )
        assert reject.status_code == 422 and reject.json()["errors"][0]["field"] == "reason"
        reject = await op.post(
            f"/api/v1/operator/m/services/providers/{provider['id']}/decide",
            json={"decision": "reject", "reason": "营业执照不清晰"},
        )
        assert reject.status_code == 200 and reject.json()["status"] == "rejected"
    mine = (await client.get(f"{applicant.api}/provider")).json()
    assert (mine["status"], mine["reason"]) == ("rejected", "营业执照不清晰")

    # Re-apply, get approved, then suspended.
    again = await client.post(
        f"{applicant.api}/provider",
        json={"business_scope": "代理记账、纳税申报", "qualification_file_ids": [file_id]},
    )
    assert again.status_code == 201 and again.json()["status"] == "pending"
    async with app_client(app) as op:
        await sign_in(op, staff)
        url = f"/api/v1/operator/m/services/providers/{provider['id']}/decide"
        assert (await op.post(url, json={"decision": "approve"})).json()["status"] == "approved"
        created = await client.post(f"{applicant.api}/listings/new", json=listing)
        assert created.status_code == 201 and created.json()["status"] == "pending"
        suspended = await op.post(url, json={"decision": "suspend", "reason": "投诉核查中"})
        assert suspended.json()["status"] == "suspended"
    refused = await client.post(f"{applicant.api}/listings/new", json=listing)
    assert refused.status_code == 403


def app_client(app):
    from httpx import ASGITransport, AsyncClient

    return AsyncClient(
        transport=ASGITransport(app=app),
        base_url="https://testserver.local",
        follow_redirects=False,
    )


async def test_listing_review_search_and_reviewed_edit(app, client):
    staff = await operator()
    provider = await approved_provider(f"搜索财税{unique('')}", staff.user_id)
    buyer = await make_side(f"买方轴承{unique('')}")
    word = unique("审计")
    await sign_in(client, provider.person)
    bad = await client.post(
        f"{provider.api}/listings/new",
        json={
            "category": "tax",
            "title": "",
            "description": "x",
            "area": "mars",
            "delivery_days": 0,
            "price_model": "fixed",
            "price": "12.345",
        },
    )
    assert bad.status_code == 422
    codes = {e["field"]: e["code"] for e in bad.json()["errors"]}
    assert codes == {
        "title": "required",
        "area": "bad_area",
        "delivery_days": "bad_days",
        "price": "price_too_many_decimals",
    }
    negative = await client.post(
        f"{provider.api}/listings/new",
        json={
            "category": "tax",
            "title": "t",
            "description": "d",
            "area": "online",
            "delivery_days": 3,
            "price_model": "fixed",
            "price": "-5",
        },
    )
    assert negative.json()["errors"][0]["code"] == "price_negative"

    created = await client.post(
        f"{provider.api}/listings/new",
        json={
            "category": "tax",
            "subcategory": "audit",
            "title": f"年度财务{word}报告",
            "description": "出具年度审计报告,满足高新技术企业申报要求。",
            "area": "liaocheng",
            "delivery_days": 20,
            "price_model": "fixed",
            "price": "¥6,800.00",
        },
    )
    assert created.status_code == 201, created.text
    listing_id = created.json()["id"]
    assert created.json()["price_fen"] == 680000

    async with app_client(app) as shopper:
        await sign_in(shopper, buyer.person)
        # Pending listings are not in the catalogue nor readable by others.
        assert (await shopper.get(f"{buyer.api}/listings/{listing_id}")).status_code == 404
        async with app_client(app) as op:
            await sign_in(op, staff)
            ok = await op.post(
                f"/api/v1/operator/m/services/listings/{listing_id}/review",
                json={"decision": "approve"},
            )
            assert ok.status_code == 200 and ok.json()["status"] == "live"
        found = (await shopper.get(f"{buyer.api}/", params={"q": f"财务{word}"})).json()
        assert found["hits"][0]["id"] == listing_id  # the best match first
        mine = {"provider": provider.tenant.name}
        only = (await shopper.get(f"{buyer.api}/", params={"q": "审计报告", **mine})).json()
        assert [h["id"] for h in only["hits"]] == [listing_id]
        assert only["facets"]["category"] == {"tax": 1}
        assert only["facets"]["area"] == {"liaocheng": 1}
        # Facets and filters: a price range that excludes it, then one that includes it.
        none = (
            await shopper.get(f"{buyer.api}/", params={"q": "审计", "price_max": "5000", **mine})
        ).json()
        assert none["total"] == 0
        some = (
            await shopper.get(
                f"{buyer.api}/",
                params={
                    "q": "审计",
                    "price_min": "6000",
                    "category": "tax",
                    **mine,
                    "area": "liaocheng",
                },
            )
        ).json()
        assert some["total"] == 1
        bad_price = await shopper.get(f"{buyer.api}/", params={"price_min": "1.234"})
        assert bad_price.status_code == 422

        # The provider edits the live listing: buyers keep the reviewed text until approval.
        edit = await client.post(
            f"{provider.api}/listings/{listing_id}/edit",
            json={
                "category": "tax",
                "subcategory": "audit",
                "title": f"年度{word}报告(加急)",
                "description": "十个工作日出具。",
                "area": "liaocheng",
                "delivery_days": 10,
                "price_model": "fixed",
                "price": "7800",
            },
        )
        assert edit.status_code == 200 and edit.json()["pending_changes"]["price_fen"] == 780000
        seen = (await shopper.get(f"{buyer.api}/listings/{listing_id}")).json()
        assert (seen["title"], seen["price_fen"]) == (f"年度财务{word}报告", 680000)
        async with app_client(app) as op:
            await sign_in(op, staff)
            queue = (await op.get("/api/v1/operator/m/services/")).json()["listings"]
            assert listing_id in [x["id"] for x in queue]
            await op.post(
                f"/api/v1/operator/m/services/listings/{listing_id}/review",
                json={"decision": "approve"},
            )
        seen = (await shopper.get(f"{buyer.api}/listings/{listing_id}")).json()
        assert (seen["title"], seen["price_fen"]) == (f"年度{word}报告(加急)", 780000)


async def test_quote_order_pay_deliver_confirm_review(app, client):
    staff = await operator()
    provider = await approved_provider(f"报价财税{unique('')}", staff.user_id)
    listing = await live_listing(provider, staff.user_id, price_model="quote", price="")
    buyer = await make_side(f"询价钢管{unique('')}")
    await sign_in(client, buyer.person)
    empty = await client.post(f"{buyer.api}/listings/{listing.id}/quotes", json={"need": " "})
    assert empty.status_code == 422
    asked = await client.post(
        f"{buyer.api}/listings/{listing.id}/quotes", json={"need": "一般纳税人,每月 200 张凭证"}
    )
    assert asked.status_code == 201
    quote_id = asked.json()["id"]
    # Buying a quote-only listing directly is refused.
    direct = await client.post(f"{buyer.api}/listings/{listing.id}/buy")
    assert direct.status_code == 409 and direct.json()["code"] == "listing_not_fixed_price"
    # Accepting before an answer is refused.
    early = await client.post(f"{buyer.api}/quotes/{quote_id}/accept")
    assert early.status_code == 409 and early.json()["code"] == "quote_action_not_allowed"

    async with app_client(app) as seller:
        await sign_in(seller, provider.person)
        assert [q["id"] for q in (await seller.get(f"{provider.api}/quotes")).json()] == [quote_id]
        past = (clock.today() - dt.timedelta(days=2)).isoformat()
        late = await seller.post(
            f"{provider.api}/quotes/{quote_id}/answer",
            json={"price": "3000", "scope": "全年记账", "valid_until": past},
        )
        assert late.status_code == 422 and late.json()["errors"][0]["code"] == "date_past"
        future = (clock.today() + dt.timedelta(days=10)).isoformat()
        answered = await seller.post(
            f"{provider.api}/quotes/{quote_id}/answer",
            json={"price": "3600.50", "scope": "全年记账报税", "valid_until": future},
        )
        assert answered.status_code == 200 and answered.json()["status"] == "answered"
        for bad, code in (
            ("3000.001", "price_too_many_decimals"),
            ("-1", "price_negative"),
            ("0", "price_zero"),
        ):
            refused = await client.post(
                f"{buyer.api}/quotes/{quote_id}/counter",
                json={"counter_note": "便宜点", "counter_price": bad},
            )
            assert refused.status_code == 422, bad
            [error] = refused.json()["errors"]
            assert (error["field"], error["code"]) == ("counter_price", code)
        unchanged = (await client.get(f"{buyer.api}/quotes/{quote_id}")).json()
        assert (unchanged["status"], unchanged["counter_price_fen"]) == ("answered", None)
        countered = await client.post(
            f"{buyer.api}/quotes/{quote_id}/counter",
            json={"counter_note": "3000 可以吗", "counter_price": "3000"},
        )
        assert countered.json()["status"] == "countered"
        assert countered.json()["counter_price_fen"] == 300000
        told = await seller.get(f"{provider.pages}/quotes/{quote_id}")
        assert "¥3,000.00" in told.text and "买方还价金额" in told.text
        answered = await seller.post(
            f"{provider.api}/quotes/{quote_id}/answer",
            json={"price": "3200", "scope": "全年记账报税", "valid_until": future},
        )
        assert answered.json()["price_fen"] == 320000
        order = await client.post(f"{buyer.api}/quotes/{quote_id}/accept")
        assert order.status_code == 201, order.text
        order = order.json()
        oid = order["id"]
        assert (order["state"], order["list_price_fen"], order["paid"]) == ("placed", 320000, False)
        assert order["commission_fen"] + order["payout_fen"] == 320000
        assert order["commission_fen"] == 16000  # the default 5 %

        # The provider cannot accept an unpaid order.
        unpaid = await seller.post(
            f"{provider.api}/orders/{oid}/transition", json={"action": "accept"}
        )
        assert unpaid.status_code == 409 and unpaid.json()["code"] == "order_not_paid"
        paid = await client.post(f"{buyer.api}/orders/{oid}/pay")
        assert paid.status_code == 200, paid.text
        await confirm_payment(oid, buyer)
        assert (await client.get(f"{buyer.api}/orders/{oid}")).json()["paid"] is True
        twice = await client.post(f"{buyer.api}/orders/{oid}/pay")
        assert twice.status_code == 409 and twice.json()["code"] == "order_already_paid"

        # The buyer cannot do the provider's steps; a wrong step is refused with the reason.
        wrong = await client.post(f"{buyer.api}/orders/{oid}/transition", json={"action": "accept"})
        assert wrong.status_code == 403 and wrong.json()["code"] == "order_action_wrong_party"
        for action in ("accept", "start"):
            step = await seller.post(
                f"{provider.api}/orders/{oid}/transition", json={"action": action}
            )
            assert step.status_code == 200, step.text
        early = await client.post(
            f"{buyer.api}/orders/{oid}/transition", json={"action": "confirm"}
        )
        assert early.status_code == 409 and early.json()["code"] == "order_action_not_allowed"
        early_review = await client.post(
            f"{buyer.api}/orders/{oid}/review", json={"rating": 5, "text": "好"}
        )
        assert early_review.status_code == 409
        assert early_review.json()["code"] == "review_order_not_completed"
        msg = await seller.post(
            f"{provider.api}/orders/{oid}/messages", json={"body": "全年凭证已整理,请查收"}
        )
        assert msg.status_code == 201
        delivered = await seller.post(
            f"{provider.api}/orders/{oid}/transition", json={"action": "deliver", "note": "已交付"}
        )
        assert delivered.json()["state"] == "delivered"
        thread = (await client.get(f"{buyer.api}/orders/{oid}/messages")).json()
        assert [m["body"] for m in thread] == ["全年凭证已整理,请查收"]
        confirmed = await client.post(
            f"{buyer.api}/orders/{oid}/transition", json={"action": "confirm"}
        )
        assert confirmed.json()["state"] == "confirmed"
        bad = await client.post(f"{buyer.api}/orders/{oid}/review", json={"rating": 6})
        assert bad.status_code == 422
        review = await client.post(
            f"{buyer.api}/orders/{oid}/review", json={"rating": 4, "text": "专业、及时"}
        )
        assert review.status_code == 201
        again = await client.post(f"{buyer.api}/orders/{oid}/review", json={"rating": 1})
        assert again.status_code == 409 and again.json()["code"] == "review_exists"
        answer = await seller.post(
            f"{provider.api}/orders/{oid}/review/answer", json={"answer": "感谢信任"}
        )
        assert answer.status_code == 200 and answer.json()["answer"] == "感谢信任"
        twice = await seller.post(
            f"{provider.api}/orders/{oid}/review/answer", json={"answer": "再次感谢"}
        )
        assert twice.status_code == 409 and twice.json()["code"] == "review_answered"
        shown = (await client.get(f"{buyer.api}/listings/{listing.id}")).json()
        assert (shown["rating_avg"], shown["rating_count"]) == (4.0, 1)
        statement = (await seller.get(f"{provider.api}/payouts")).json()
        assert statement["settled_fen"] == order["payout_fen"]
        assert statement["commission_fen"] + statement["payout_fen"] == 320000
        history = [
            e for e in (await seller.get(f"{provider.api}/orders/{oid}")).json()["allowed_actions"]
        ]
        assert history == []


async def test_packages_and_comparison(app, client):
    staff = await operator()
    provider = await approved_provider(f"套餐财税{unique('')}", staff.user_id)
    other = await live_listing(provider, staff.user_id, price="300")
    buyer = await make_side(f"套餐买方{unique('')}")
    await sign_in(client, provider.person)
    base = {
        "category": "tax",
        "title": "代理记账套餐",
        "description": "按需选择",
        "area": "online",
        "delivery_days": 30,
        "price_model": "fixed",
        "price": "500",
    }
    bad = await client.post(
        f"{provider.api}/listings/new",
        json={
            **base,
            "packages": [{"name": "季度版", "price": "8.001"}, {"name": "", "price": "1"}],
        },
    )
    assert bad.status_code == 422
    assert [e["code"] for e in bad.json()["errors"]] == ["price_too_many_decimals", "bad_package"]
    quote_only = await client.post(
        f"{provider.api}/listings/new",
        json={**base, "price_model": "quote", "packages": [{"name": "年度版", "price": "1"}]},
    )
    assert quote_only.json()["errors"][0]["code"] == "packages_need_fixed_price"
    created = await client.post(
        f"{provider.api}/listings/new",
        json={
            **base,
            "packages": [{"name": "季度版", "price": "1,400"}, {"name": "年度版", "price": "5000"}],
        },
    )
    assert created.status_code == 201
    listing_id = created.json()["id"]
    assert [p["price_fen"] for p in created.json()["packages"]] == [140000, 500000]
    from canal.marketplace import market

    await market.review_listing(staff.user_id, __import__("uuid").UUID(listing_id), "approve")
    async with app_client(app) as shopper:
        await sign_in(shopper, buyer.person)
        order = await shopper.post(f"{buyer.api}/listings/{listing_id}/buy", json={"package": 1})
        assert order.status_code == 201, order.text
        assert order.json()["list_price_fen"] == 500000
        assert order.json()["title"].endswith("年度版")
        plain = await shopper.post(f"{buyer.api}/listings/{listing_id}/buy")
        assert plain.json()["list_price_fen"] == 50000
        wrong = await shopper.post(f"{buyer.api}/listings/{listing_id}/buy", json={"package": 7})
        assert wrong.status_code == 422
        compared = await shopper.get(
            f"{buyer.api}/compare", params=[("ids", listing_id), ("ids", str(other.id))]
        )
        assert [x["id"] for x in compared.json()] == [listing_id, str(other.id)]
        page = await shopper.get(
            f"{buyer.pages}/compare", params=[("ids", listing_id), ("ids", str(other.id))]
        )
        assert page.status_code == 200 and "年度版" in page.text and "¥5,000.00" in page.text

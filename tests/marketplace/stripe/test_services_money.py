"""Money through Stripe (localstripe + the stand-in): what the buyer is charged, the platform's
application fee, the provider's payout and the voucher subsidy add up to the fen, including
after a partial refund, and agree with what was sent to Stripe."""

from __future__ import annotations

import datetime as dt

import pytest

from canal.marketplace import market, money
from canal.platform import clock
from canal.platform.http.errors import CanalError
from tests.factories import unique
from tests.marketplace.helpers import approved_provider, live_listing, make_side, operator


@pytest.mark.parametrize(
    ("price", "voucher", "refund"),
    [
        ("1000.01", None, "400.00"),  # cash only; 5 % of ¥1,000.01 rounds half up
        ("1000.01", "300", "333.33"),  # cash + voucher, refund split in proportion
        ("88.88", "88", "10.01"),  # the cash (¥0.88) is less than the commission (¥4.44)
        ("1000.01", None, "full"),  # a full refund gives back all the cash and the fee
        ("777.77", "100", "full"),
    ],
)
async def test_charge_fee_payout_subsidy_and_refund_add_up(
    app, gateway, standin, price, voucher, refund
):
    from canal.platform.billing import services as billing

    staff = await operator()
    provider = await approved_provider(f"结算财税{unique('')}", staff.user_id)
    account = await billing.create_connected_account(provider.ctx)
    listing = await live_listing(provider, staff.user_id, price=price)
    buyer = await make_side(f"结算买方{unique('')}")
    order = await market.buy_listing(listing.id, buyer.ctx)
    voucher_id = None
    if voucher:
        issued = await market.issue_voucher(
            staff.user_id,
            holder_slug=buyer.slug,
            kind="innovation",
            amount=voucher,
            categories=["tax"],
            valid_through=(clock.today() + dt.timedelta(days=30)).isoformat(),
        )
        voucher_id = issued.id
    order, secret = await market.pay_order(order.id, buyer.ctx, voucher_id=voucher_id)
    assert secret and not order.paid  # waiting for Stripe's confirmation

    list_fen = money.parse_price(price)
    subsidy = min(money.parse_price(voucher), list_fen) if voucher else 0
    assert order.list_price_fen == list_fen
    assert order.buyer_paid_fen + order.voucher_subsidy_fen == list_fen
    assert order.voucher_subsidy_fen == subsidy
    assert order.commission_fen == money.commission_for(list_fen, 500)
    assert order.commission_fen + order.payout_fen == list_fen

    # What Stripe was asked for: the buyer's cash, CNY, a destination charge to the provider
    # keeping the commission (capped at the cash; the rest comes out of the subsidy).
    sent = standin.sent("POST", "/v1/payment_intents")[-1].form
    fee = min(order.commission_fen, order.buyer_paid_fen)
    assert int(sent["amount"]) == order.buyer_paid_fen
    assert sent["currency"] == "cny"
    assert sent["transfer_data[destination]"] == account
    assert int(sent["application_fee_amount"]) == fee
    from_stripe = int(sent["amount"]) - int(sent["application_fee_amount"])
    from_subsidy = order.voucher_subsidy_fen - (order.commission_fen - fee)
    assert from_stripe + from_subsidy == order.payout_fen  # the provider's payout, to the fen

    # Paying again before Stripe confirms is the same payment (no second charge); Stripe's
    # confirmation (the webhook's handler) marks the order paid; after that, paying is refused.
    posts = len(standin.sent("POST", "/v1/payment_intents"))
    retry, _ = await market.pay_order(order.id, buyer.ctx)
    assert not retry.paid and len(standin.sent("POST", "/v1/payment_intents")) == posts
    from canal.platform import db
    from canal.platform.billing.tables import Payment

    async with db.tenant_scope(buyer.tenant.id):
        row = (
            await Payment.select()
            .where(Payment.idempotency_key == f"market-order-{order.id}")
            .first()
        )
    assert row is not None and row["amount_fen"] == order.buyer_paid_fen
    # The buyer completes the payment at Stripe; billing applies Stripe's own object.
    pi_id = row["stripe_payment_intent_id"]
    await gateway.v1.payment_intents.confirm_async(pi_id)
    intent = await gateway.retrieve_payment_intent(pi_id)
    assert intent is not None and intent["status"] == "succeeded"
    await billing.apply_payment_intent(intent)
    order = await market.refresh_payment(order.id, buyer.ctx)
    assert order.paid
    with pytest.raises(CanalError) as twice:
        await market.pay_order(order.id, buyer.ctx)
    assert twice.value.code == "order_already_paid"

    # Dispute and partial refund: every split adds up, nothing goes negative.
    for action in ("accept", "start", "deliver"):
        await market.transition_order(order.id, provider.ctx, action)
    await market.transition_order(order.id, buyer.ctx, "dispute")
    if refund == "full":
        done = await market.resolve_dispute(staff.user_id, order.id, "full")
        refund_fen = list_fen
    else:
        done = await market.resolve_dispute(staff.user_id, order.id, "partial", refund=refund)
        refund_fen = money.parse_price(refund)
    assert done.refunded_fen == refund_fen
    assert done.buyer_refunded_fen + done.voucher_refunded_fen == refund_fen
    assert done.commission_reversed_fen + done.payout_reversed_fen == refund_fen
    assert 0 <= done.buyer_refunded_fen <= done.buyer_paid_fen
    assert 0 <= done.voucher_refunded_fen <= done.voucher_subsidy_fen
    expected = money.refund(
        money.settle(
            list_fen,
            commission_rate_bp=500,
            voucher=None
            if not voucher
            else money.Voucher(
                code="x",
                kind=money.VoucherKind.INNOVATION,
                amount_fen=money.parse_price(voucher),
                eligible_categories=frozenset({"tax"}),
                expires_at=clock.now() + dt.timedelta(days=1),
            ),
            category="tax",
            at=clock.now(),
        ),
        refund_fen,
    )
    assert (done.buyer_refunded_fen, done.voucher_refunded_fen) == (
        expected.to_buyer_fen,
        expected.to_voucher_issuer_fen,
    )
    assert (done.commission_reversed_fen, done.payout_reversed_fen) == (
        expected.commission_reversed_fen,
        expected.payout_reversed_fen,
    )
    # What went back through Stripe (the stand-in's records of the destination charge): the
    # buyer's cash share only, once, with the provider's transfer reversed and the platform's
    # fee returned in proportion; everything still adds up to the fen.
    refunds = [r for r in standin.sent("POST", "/v1/refunds") if r.form["payment_intent"] == pi_id]
    assert len(refunds) == 1
    assert refunds[0].form["reverse_transfer"] == "true"
    assert refunds[0].form["refund_application_fee"] == "true"
    charge = standin.objects[pi_id]
    assert charge["amount_refunded"] == done.buyer_refunded_fen
    [stripe_refund] = charge["refunds"]
    assert stripe_refund["transfer_reversed"] == done.buyer_refunded_fen
    fee_left = fee - stripe_refund["fee_refunded"]
    cash_left = charge["amount"] - charge["amount_refunded"]
    assert cash_left == done.buyer_paid_fen - done.buyer_refunded_fen
    provider_from_stripe = cash_left - fee_left
    # The platform keeps the rest of the commission from the subsidy it still forwards.
    subsidy_left = done.voucher_subsidy_fen - done.voucher_refunded_fen
    commission_left = done.commission_fen - done.commission_reversed_fen
    forwarded = subsidy_left - (commission_left - fee_left)
    assert provider_from_stripe + forwarded == done.payout_fen - done.payout_reversed_fen
    assert cash_left + subsidy_left + done.refunded_fen == list_fen
    assert fee_left + (subsidy_left - forwarded) == commission_left
    if refund == "full":
        assert cash_left == 0 and fee_left == 0 and forwarded == 0
    else:
        assert 0 <= forwarded <= subsidy_left
    # Ruling again is refused and refunds nothing more.
    with pytest.raises(CanalError):
        await market.resolve_dispute(staff.user_id, order.id, "full")
    assert len(standin.objects[pi_id]["refunds"]) == 1

    # The provider's statement and the operator's figures use the same numbers.
    statement, _ = await market.provider_statement(provider.ctx)
    assert statement.payout_fen == done.payout_fen - done.payout_reversed_fen
    report = await market.voucher_report(staff.user_id)
    assert report.subsidy_fen >= done.voucher_subsidy_fen - done.voucher_refunded_fen


async def test_voucher_rules_refuse_clearly_and_change_nothing(app, gateway, standin):
    staff = await operator()
    provider = await approved_provider(f"券规则{unique('')}", staff.user_id)
    listing = await live_listing(provider, staff.user_id, price="500")
    buyer = await make_side(f"券买方{unique('')}")
    other = await make_side(f"别家{unique('')}")
    wrong_kind = await market.issue_voucher(
        staff.user_id,
        holder_slug=buyer.slug,
        kind="service",
        amount="100",
        categories=["legal"],
        valid_through=clock.today().isoformat(),
    )
    with pytest.raises(CanalError) as bad:
        await market.issue_voucher(
            staff.user_id,
            holder_slug="no-such-org",
            kind="gift",
            amount="1.005",
            categories=[],
            valid_through="2020-01-01",
        )
    fields = {e.field: e.code for e in bad.value.errors}
    assert fields == {
        "holder": "bad_holder",
        "kind": "bad_kind",
        "amount": "price_too_many_decimals",
        "categories": "bad_categories",
        "valid_through": "date_past",
    }
    order = await market.buy_listing(listing.id, buyer.ctx)
    with pytest.raises(CanalError) as not_eligible:
        await market.pay_order(order.id, buyer.ctx, voucher_id=wrong_kind.id)
    assert not_eligible.value.code == "voucher_not_eligible"
    with pytest.raises(CanalError) as not_theirs:
        await market.pay_order(order.id, other.ctx, voucher_id=wrong_kind.id)
    assert not_theirs.value.status == 404
    unchanged = await market.get_order(order.id, buyer.ctx)
    assert (unchanged.buyer_paid_fen, unchanged.voucher_id, unchanged.paid) == (50000, None, False)
    assert [v.order_id for v in await market.my_vouchers(buyer.ctx)] == [None]
    # A voucher covering everything: nothing to charge, the order is paid.
    full = await market.issue_voucher(
        staff.user_id,
        holder_slug=buyer.slug,
        kind="innovation",
        amount="800",
        categories=["tax", "legal"],
        valid_through=(clock.today() + dt.timedelta(days=1)).isoformat(),
    )
    posts = len(standin.sent("POST", "/v1/payment_intents"))
    paid, secret = await market.pay_order(order.id, buyer.ctx, voucher_id=full.id)
    assert paid.paid and secret is None and paid.buyer_paid_fen == 0
    assert paid.voucher_subsidy_fen == 50000
    assert len(standin.sent("POST", "/v1/payment_intents")) == posts  # no charge sent
    second = await market.buy_listing(listing.id, buyer.ctx)
    with pytest.raises(CanalError) as used:
        await market.pay_order(second.id, buyer.ctx, voucher_id=full.id)
    assert used.value.code == "voucher_used"


async def test_provider_sets_up_payouts_through_connect(app, client, gateway, standin):
    from tests.factories import sign_in

    staff = await operator()
    provider = await approved_provider(f"收款服务商{unique('')}", staff.user_id)
    buyer = await make_side(f"不是服务商{unique('')}")
    await sign_in(client, provider.person)
    answer = await client.post(f"{provider.api}/payouts/connect")
    assert answer.status_code == 200, answer.text
    account = standin.sent("POST", "/v1/accounts")[-1]
    assert answer.json()["url"] and account.answered_by == "standin"
    await sign_in(client, buyer.person)
    refused = await client.post(f"{buyer.api}/payouts/connect")
    assert refused.status_code == 403 and refused.json()["code"] == "provider_not_approved"


async def test_order_page_pays_through_checkout_and_the_webhook_marks_it_paid(
    app, client, gateway, standin
):
    """The order page's "pay" opens Stripe Checkout (destination charge, fee = commission,
    card / Alipay / WeChat Pay); Stripe's signed checkout.session.completed, handled by the
    billing job, marks the order paid and tells the provider at once — no page read needed."""
    from canal.platform import db
    from canal.platform.billing.jobs import process_event
    from canal.platform.notifications.tables import Notification
    from tests.billing.helpers import deliver, event
    from tests.factories import csrf_from, sign_in

    staff = await operator()
    provider = await approved_provider(f"收银财税{unique('')}", staff.user_id)
    account = await billing_account(provider)
    listing = await live_listing(provider, staff.user_id, price="1234.56")
    buyer = await make_side(f"收银买方{unique('')}")
    order = await market.buy_listing(listing.id, buyer.ctx)
    await sign_in(client, buyer.person)
    page = await client.get(f"{buyer.pages}/orders/{order.id}")
    assert page.status_code == 200
    paid = await client.post(
        f"{buyer.pages}/orders/{order.id}/pay", data={"_csrf": csrf_from(page.text)}
    )
    assert paid.status_code == 303, paid.text
    assert paid.headers["location"].startswith(f"{standin.base_url}/checkout/cs_test_")
    session_id = paid.headers["location"].rsplit("/", 1)[1]
    sent = standin.objects[session_id]
    assert sent["mode"] == "payment" and sent["amount_total"] == order.buyer_paid_fen
    assert set(sent["payment_method_types"]) == {"card", "alipay", "wechat_pay"}
    assert sent["payment_intent_data"]["transfer_data"]["destination"] == account
    assert int(sent["payment_intent_data"]["application_fee_amount"]) == order.commission_fen
    # Clicking "pay" again (another tab) opens the same session: one order, one charge.
    again = await client.post(
        f"{buyer.pages}/orders/{order.id}/pay", data={"_csrf": csrf_from(page.text)}
    )
    assert again.headers["location"] == paid.headers["location"]
    assert not (await market.get_order(order.id, buyer.ctx)).paid

    # Stripe reports the completed session; the job handles it.
    completed = {**sent, "status": "complete", "payment_status": "paid", "payment_intent": "pi_x"}
    evt = event("checkout.session.completed", completed)
    assert (await deliver(client, evt)).status_code == 200
    assert await process_event(evt["id"]) == "succeeded"
    async with db.platform_scope():
        row = await market.Order.select().where(market.Order.id == order.id).first()
        told = await Notification.select().where(
            (Notification.user_id == provider.person.user_id)
            & Notification.link.like(f"%/orders/{order.id}")
        )
    assert row["paid_at"] is not None  # pushed by the webhook, not by a later read
    assert any("付款" in n["title_zh"] for n in told)
    # A repeated delivery changes nothing; paying again is refused.
    evt2 = event("checkout.session.completed", completed)
    await deliver(client, evt2)
    assert await process_event(evt2["id"]) == "duplicate"
    again = await client.post(
        f"{buyer.pages}/orders/{order.id}/pay", data={"_csrf": csrf_from(page.text)}
    )
    # The refusal itself (the order page says 已付款 whatever the answer).
    assert again.status_code == 409, (again.status_code, again.text[:300])
    assert "该订单已付款,不能重复支付。" in again.text


async def test_a_payment_started_through_the_api_cannot_be_paid_again_through_checkout(
    app, client, gateway, standin
):
    """The API started a PaymentIntent for the order (Stripe.js); the page's "pay" must not
    open a Checkout Session beside it — two open instruments could both be paid."""
    from tests.factories import csrf_from, sign_in

    staff = await operator()
    provider = await approved_provider(f"双通道{unique('')}", staff.user_id)
    listing = await live_listing(provider, staff.user_id, price="300")
    buyer = await make_side(f"双通道买方{unique('')}")
    order = await market.buy_listing(listing.id, buyer.ctx)
    await sign_in(client, buyer.person)
    started = await client.post(f"{buyer.api}/orders/{order.id}/pay")
    assert started.status_code == 200 and started.json()["client_secret"]
    sessions = len(standin.sent("POST", "/v1/checkout/sessions"))
    page = await client.get(f"{buyer.pages}/orders/{order.id}")
    again = await client.post(
        f"{buyer.pages}/orders/{order.id}/pay", data={"_csrf": csrf_from(page.text)}
    )
    assert again.status_code == 409, again.status_code
    assert "已通过其他方式发起支付" in again.text
    assert len(standin.sent("POST", "/v1/checkout/sessions")) == sessions


async def billing_account(provider):
    from canal.platform.billing import services as billing

    return await billing.create_connected_account(provider.ctx)


async def _paid_through_stripe(gateway, buyer, order_id, *, connect: bool) -> str:
    """The buyer completes the order's payment at Stripe (the stand-in for a destination
    charge; localstripe itself, with a test card, for a plain PaymentIntent); billing applies
    Stripe's own object, which marks the order paid. Returns the PaymentIntent's id."""
    from canal.platform import db
    from canal.platform.billing import services as billing
    from canal.platform.billing.tables import Payment

    async with db.tenant_scope(buyer.tenant.id):
        row = (
            await Payment.select()
            .where(Payment.idempotency_key == f"market-order-{order_id}")
            .first()
        )
    assert row is not None
    pi_id = row["stripe_payment_intent_id"]
    if connect:
        await gateway.v1.payment_intents.confirm_async(pi_id)
    else:
        card = await gateway.v1.payment_methods.create_async(
            {
                "type": "card",
                "card": {
                    "number": "4242424242424242",
                    "exp_month": 12,
                    "exp_year": 2034,
                    "cvc": "123",
                },
            }
        )
        # localstripe confirms a PaymentIntent that already names its payment method.
        await gateway.v1.payment_intents.update_async(pi_id, {"payment_method": card.id})
        await gateway.v1.payment_intents.confirm_async(pi_id)
    intent = await gateway.retrieve_payment_intent(pi_id)
    assert intent is not None and intent["status"] == "succeeded"
    await billing.apply_payment_intent(intent)
    return str(pi_id)


@pytest.mark.parametrize(
    ("connect", "price", "options", "vouchers", "refund"),
    [
        # No Connect account: a plain PaymentIntent at localstripe, refunded there; the
        # platform holds the cash and pays the provider the whole remaining payout itself.
        (False, "1000.01", [], [], "333.33"),
        (False, "777.77", [], [("fixed", "100", "")], "full"),
        (False, "1000.01", [], [("pct", "300", "50")], "0.01"),
        # Connect: a destination charge; Stripe's fee refund is the commission reversed on
        # the cash, to the fen, whatever the vouchers.
        (True, "1000.01", [], [], "1.01"),
        (True, "999.99", [1], [("pct", "200", "33.33"), ("fixed", "100", "")], "123.45"),
        (True, "88.88", [], [("pct", "80", "99"), ("fixed", "8", "")], "10.01"),
        (True, "1234.56", [0, 2], [("pct", "5000", "12.5")], "full"),
    ],
)
async def test_refunds_reconcile_with_stripe_to_the_fen(
    app, gateway, standin, connect, price, options, vouchers, refund
):
    """Table-driven: price (+ options) × stacked fixed/percentage vouchers × partial or full
    refund, with and without a Connect account. After the ruling, the order's books agree with
    what Stripe (localstripe / the stand-in) recorded: the cash refunded, the fee refunded, the
    transfer kept, and the platform's forwarded part — to the fen."""
    from canal.platform.billing import services as billing

    staff = await operator()
    provider = await approved_provider(f"对账财税{unique('')}", staff.user_id)
    account = await billing.create_connected_account(provider.ctx) if connect else None
    listing = await live_listing(
        provider,
        staff.user_id,
        price=price,
        options=[
            {"group": "发票", "name": "普票", "price": "0"},
            {"group": "发票", "name": "专票", "price": "12.34"},
            {"name": "加急", "price": "100.01"},
        ],
    )
    buyer = await make_side(f"对账买方{unique('')}")
    order = await market.buy_listing(listing.id, buyer.ctx, options=options or [0])
    deltas = {0: 0, 1: 1234, 2: 10001}
    list_fen = money.parse_price(price) + sum(deltas[i] for i in (options or [0]))
    assert order.list_price_fen == list_fen
    valid = (clock.today() + dt.timedelta(days=30)).isoformat()
    issued = [
        await market.issue_voucher(
            staff.user_id,
            holder_slug=buyer.slug,
            kind="innovation",
            amount=amount,
            percent=percent if kind == "pct" else "",
            categories=["tax"],
            valid_through=valid,
        )
        for kind, amount, percent in vouchers
    ]
    order, secret = await market.pay_order(order.id, buyer.ctx, voucher_ids=[v.id for v in issued])
    expected = money.settle(
        list_fen,
        commission_rate_bp=500,
        voucher=None,
        vouchers=[v.as_money() for v in issued],
        category="tax",
        at=clock.now(),
    )
    assert (order.buyer_paid_fen, order.voucher_subsidy_fen) == (
        expected.buyer_paid_fen,
        expected.voucher_subsidy_fen,
    )
    # Each voucher records what it paid; together they are the order's subsidy.
    mine = {v.id: v for v in await market.my_vouchers(buyer.ctx)}
    assert sum(mine[v.id].applied_fen for v in issued) == order.voucher_subsidy_fen
    assert all(mine[v.id].order_id == order.id for v in issued)
    assert secret
    sent = standin.sent("POST", "/v1/payment_intents")[-1]
    assert int(sent.form["amount"]) == order.buyer_paid_fen
    if connect:
        assert sent.form["transfer_data[destination]"] == account
        assert sent.answered_by == "standin"
    else:
        assert "transfer_data[destination]" not in sent.form
        assert sent.answered_by == "localstripe"  # a plain PaymentIntent, Stripe's own shape
    pi_id = await _paid_through_stripe(gateway, buyer, order.id, connect=connect)
    order = await market.refresh_payment(order.id, buyer.ctx)
    assert order.paid and order.payout_route == ("connect" if connect else "platform")

    for action in ("accept", "start", "deliver"):
        await market.transition_order(order.id, provider.ctx, action)
    await market.transition_order(order.id, buyer.ctx, "dispute")
    if refund == "full":
        done = await market.resolve_dispute(staff.user_id, order.id, "full")
    else:
        done = await market.resolve_dispute(staff.user_id, order.id, "partial", refund=refund)
    routes = done.routes()

    # What Stripe recorded for the refund, read back from Stripe's side.
    posted = [r for r in standin.sent("POST", "/v1/refunds") if r.form["payment_intent"] == pi_id]
    assert len(posted) == 1 and int(posted[0].form["amount"]) == done.buyer_refunded_fen
    if connect:
        charge = standin.objects[pi_id]
        [stripe_refund] = charge["refunds"]
        assert stripe_refund["transfer_reversed"] == done.buyer_refunded_fen
        # The fee Stripe gave back is what our books reversed on the cash, to the fen.
        assert stripe_refund["fee_refunded"] == routes.fee_refunded_fen
        fee_left = int(charge["application_fee_amount"]) - stripe_refund["fee_refunded"]
        cash_left = charge["amount"] - charge["amount_refunded"]
        assert (routes.fee_kept_fen, routes.through_stripe_fen) == (fee_left, cash_left - fee_left)
    else:
        assert "reverse_transfer" not in posted[0].form
        intent = await gateway.retrieve_payment_intent(pi_id)
        charge_id = intent["latest_charge"]
        charge_id = charge_id if isinstance(charge_id, str) else charge_id["id"]
        charge = (await gateway.v1.charges.retrieve_async(charge_id)).to_dict(recursive=True)
        assert charge["amount"] == done.buyer_paid_fen
        assert charge["amount_refunded"] == done.buyer_refunded_fen
        assert routes.through_stripe_fen == routes.fee_kept_fen == 0
    # The books add up, to the fen, on every side.
    assert routes.through_stripe_fen + routes.forwarded_fen == (
        done.payout_fen - done.payout_reversed_fen
    )
    assert routes.fee_kept_fen + routes.commission_outside_fen == (
        done.commission_fen - done.commission_reversed_fen
    )
    assert done.buyer_refunded_fen + done.voucher_refunded_fen == done.refunded_fen
    assert done.commission_reversed_fen + done.payout_reversed_fen == done.refunded_fen
    if refund == "full":
        assert routes.through_stripe_fen == routes.forwarded_fen == routes.fee_kept_fen == 0
    statement, _ = await market.provider_statement(provider.ctx)
    assert statement.through_stripe_fen + statement.forwarded_fen == statement.payout_fen

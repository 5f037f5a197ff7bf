"""Orders in the database: the state machine table-driven over every state × action × party
through the services (allowed moves happen, everything else is refused and changes nothing),
and the two-party isolation of orders and quotes (buyer and provider only)."""

from __future__ import annotations

import pytest

from canal.marketplace import market, orders
from canal.marketplace.orders import Action, OrderState, Party
from canal.marketplace.tables import Order, OrderEvent, Quote
from canal.platform import clock, db
from canal.platform.http.errors import CanalError
from tests.factories import sign_in, unique
from tests.marketplace.helpers import approved_provider, live_listing, make_side, operator


@pytest.fixture(scope="module")
async def market_world(app):
    staff = await operator()
    provider = await approved_provider(f"状态机财税{unique('')}", staff.user_id)
    listing = await live_listing(provider, staff.user_id, price="999.99")
    buyer = await make_side(f"状态机买方{unique('')}")
    return staff, provider, listing, buyer


async def _order_in(state: OrderState, world) -> market.OrderView:
    _staff, _provider, listing, buyer = world
    order = await market.buy_listing(listing.id, buyer.ctx)
    async with db.platform_scope():
        await Order.update({Order.state: state.value, Order.paid_at: db_now()}).where(
            Order.id == order.id
        )
    return await market.get_order(order.id, buyer.ctx)


def db_now():

    return clock.now()


async def _told(person, order_id) -> int:
    """How many notifications about this order ``person`` has (linked to the order's page)."""
    from canal.platform.notifications.tables import Notification

    async with db.user_scope(person.user_id):
        return await Notification.count().where(
            (Notification.user_id == person.user_id)
            & (Notification.link.like(f"%/orders/{order_id}%"))
        )


async def _events(order_id) -> int:
    async with db.platform_scope():
        return await OrderEvent.count().where(OrderEvent.order_id == order_id)


RESOLVE = {
    Action.RESOLVE_REFUND_FULL: "full",
    Action.RESOLVE_REFUND_PARTIAL: "partial",
    Action.RESOLVE_NO_REFUND: "none",
}


@pytest.mark.parametrize("state", list(OrderState), ids=lambda s: s.value)
async def test_every_action_by_every_party_from_every_state(market_world, state):
    staff, provider, _, buyer = market_world
    tried = 0
    for party in (Party.BUYER, Party.PROVIDER, Party.OPERATOR):
        actions = list(Action) if party != Party.OPERATOR else list(RESOLVE)
        for action in actions:
            order = await _order_in(state, market_world)
            before = await _events(order.id)
            heard = {
                Party.BUYER: await _told(buyer.person, order.id),
                Party.PROVIDER: await _told(provider.person, order.id),
            }
            allowed = action in orders.allowed_actions(state, party)
            try:
                if party == Party.OPERATOR:
                    after = await market.resolve_dispute(
                        staff.user_id, order.id, RESOLVE[action], refund="100"
                    )
                else:
                    ctx = buyer.ctx if party == Party.BUYER else provider.ctx
                    after = await market.transition_order(order.id, ctx, action.value)
            except CanalError as error:
                assert not allowed, f"{state} {action} by {party} refused: {error.code}"
                assert error.code in {"order_action_not_allowed", "order_action_wrong_party"}
                unchanged = await market.get_order(order.id, buyer.ctx)
                assert unchanged.state == state.value and await _events(order.id) == before
            else:
                assert allowed, f"{state} {action} by {party} was let through"
                assert after.state == orders.transition(state, action, party).value
                assert await _events(order.id) == before + 1
                # Each move tells the side(s) the table names, and never the mover.
                told = orders.notified(state, action, party)
                for side, person in (
                    (Party.BUYER, buyer.person),
                    (Party.PROVIDER, provider.person),
                ):
                    expected = heard[side] + (1 if side in told else 0)
                    assert await _told(person, order.id) == expected, (state, action, party, side)
            tried += 1
    assert tried == 2 * len(Action) + len(RESOLVE)


async def test_partial_refund_splits_to_the_fen(market_world):
    staff, _provider, _, _buyer = market_world
    order = await _order_in(OrderState.DISPUTED, market_world)
    with pytest.raises(CanalError) as too_much:
        await market.resolve_dispute(staff.user_id, order.id, "partial", refund="999.99")
    assert too_much.value.errors[0].code == "partial_not_partial"
    done = await market.resolve_dispute(staff.user_id, order.id, "partial", refund="333.33")
    assert done.state == "resolved_refunded_partial"
    assert done.refunded_fen == done.buyer_refunded_fen == 33333
    assert done.commission_reversed_fen + done.payout_reversed_fen == 33333
    # 5 % of 99,999 fen = 4,999.95 → 5,000 (half up); a third of it back: 1,666.65 → 1,667.
    assert (done.commission_fen, done.commission_reversed_fen) == (5000, 1667)


async def test_orders_and_quotes_belong_to_their_two_parties_only(app, client, market_world):
    staff, provider, listing, buyer = market_world
    other_buyer = await make_side(f"另一买方{unique('')}")
    other_provider = await approved_provider(f"另一服务商{unique('')}", staff.user_id)
    order = await market.buy_listing(listing.id, buyer.ctx)
    quote = await market.request_quote(listing.id, buyer.ctx, "需要季度报表")
    # Both parties see them; in the database too (row-level security, not only the code).
    for side in (buyer, provider):
        assert (await market.get_order(order.id, side.ctx)).id == order.id
        assert (await market.get_quote(quote.id, side.ctx)).id == quote.id
    for outsider in (other_buyer, other_provider):
        with pytest.raises(CanalError) as missing:
            await market.get_order(order.id, outsider.ctx)
        assert missing.value.status == 404
        assert order.id not in [o.id for o in await market.list_orders(outsider.ctx)]
        assert quote.id not in [q.id for q in await market.list_quotes(outsider.ctx)]
        async with db.tenant_scope(outsider.tenant.id):
            assert await Order.count().where(Order.id == order.id) == 0
            assert await Quote.count().where(Quote.id == quote.id) == 0
            # Nor can an outsider write a row naming the order's parties.
            changed = await Order.update({Order.state: "confirmed"}).where(Order.id == order.id)
            assert changed == []
    # Over HTTP: the other buyer's owner asks through its own organisation → 404.
    await sign_in(client, other_buyer.person)
    for path in (f"/orders/{order.id}", f"/quotes/{quote.id}", f"/orders/{order.id}/messages"):
        assert (await client.get(f"{other_buyer.api}{path}")).status_code == 404
    moved = await client.post(
        f"{other_buyer.api}/orders/{order.id}/transition", json={"action": "cancel"}
    )
    assert moved.status_code == 404
    assert (await market.get_order(order.id, buyer.ctx)).state == "placed"


async def test_auto_confirm_after_seven_days_delivered(market_world):
    import datetime as dt

    _, provider, _, buyer = market_world
    old = await _order_in(OrderState.DELIVERED, market_world)
    fresh = await _order_in(OrderState.DELIVERED, market_world)
    now = clock.now()
    async with db.platform_scope():
        await Order.update({Order.delivered_at: now - dt.timedelta(days=8)}).where(
            Order.id == old.id
        )
        await Order.update({Order.delivered_at: now - dt.timedelta(days=1)}).where(
            Order.id == fresh.id
        )
    assert await market.auto_confirm_delivered(now=now) >= 1
    assert (await market.get_order(old.id, provider.ctx)).state == "confirmed"
    assert (await market.get_order(fresh.id, buyer.ctx)).state == "delivered"
    history = await market.order_history(old.id, buyer.ctx)
    assert (history[-1].action, history[-1].party) == ("confirm", "system")


async def test_two_vouchers_racing_for_one_order_burn_neither_twice(market_world):
    """Two requests apply different vouchers to the same unpaid order at once (both read the
    order before either wrote): one voucher is redeemed, the other is refused and stays
    unused — it must not be marked used for an order that does not carry it."""
    import datetime as dt

    staff, _provider, listing, buyer = market_world
    order = await market.buy_listing(listing.id, buyer.ctx)
    vouchers = [
        await market.issue_voucher(
            staff.user_id,
            holder_slug=buyer.slug,
            kind="innovation",
            amount=amount,
            categories=["tax"],
            valid_through=(clock.today() + dt.timedelta(days=3)).isoformat(),
        )
        for amount in ("100", "200")
    ]
    stale = await market.get_order(order.id, buyer.ctx)  # what both requests read
    await market._apply_vouchers(stale, buyer.ctx, [vouchers[0].id])
    with pytest.raises(CanalError) as second:
        await market._apply_vouchers(stale, buyer.ctx, [vouchers[1].id])
    assert second.value.code == "order_has_voucher"
    mine = {v.id: v.order_id for v in await market.my_vouchers(buyer.ctx)}
    assert mine[vouchers[0].id] == order.id and mine[vouchers[1].id] is None
    after = await market.get_order(order.id, buyer.ctx)
    assert after.voucher_id == vouchers[0].id
    assert after.buyer_paid_fen + after.voucher_subsidy_fen == after.list_price_fen


async def test_a_lapsed_quote_cannot_be_countered_and_odd_package_choices_are_422(
    app, client, market_world
):
    import datetime as dt

    from tests.factories import csrf_from

    staff, provider, fixed, buyer = market_world
    listing = await live_listing(provider, staff.user_id, price_model="quote", price="")
    quote = await market.request_quote(listing.id, buyer.ctx, "每月记账")
    future = (clock.today() + dt.timedelta(days=5)).isoformat()
    await market.answer_quote(quote.id, provider.ctx, price="100", scope="记账", valid_until=future)
    async with db.platform_scope():  # the deadline passes
        await Quote.update({Quote.valid_until: clock.today() - dt.timedelta(days=1)}).where(
            Quote.id == quote.id
        )
    with pytest.raises(CanalError) as late:
        await market.counter_quote(quote.id, buyer.ctx, "便宜点")
    assert late.value.code == "quote_expired"
    assert (await market.get_quote(quote.id, buyer.ctx)).status == "answered"

    await sign_in(client, buyer.person)
    page = await client.get(f"{buyer.pages}/listings/{fixed.id}")
    for choice in ("²", "9" * 5000, "7"):
        bought = await client.post(
            f"{buyer.pages}/listings/{fixed.id}/buy",
            data={"_csrf": csrf_from(page.text), "package": choice},
        )
        assert bought.status_code == 422, (choice[:5], bought.status_code)


async def test_the_database_ties_history_and_messages_to_their_orders_parties(market_world):
    """Row-level security checks a row's own columns only; a third tenant writing raw SQL as
    the app role, naming someone else's order with itself as one of the parties, is refused by
    the database itself (composite foreign keys, decision 0023) — and so is a row whose author
    is not a party, or an order naming a listing with another provider."""
    import uuid

    import asyncpg

    _staff, provider, listing, buyer = market_world
    third = await make_side(f"第三方{unique('')}")
    order = await market.buy_listing(listing.id, buyer.ctx)
    message_sql = (
        "INSERT INTO market_order_messages (id, tenant_id, provider_tenant_id, order_id, "
        "author_id, author_tenant_id, body, file_name, created_at) "
        "VALUES ({}, {}, {}, {}, {}, {}, 'hi', '', now())"
    )
    event_sql = (
        "INSERT INTO market_order_events (id, tenant_id, provider_tenant_id, order_id, action, "
        "party, from_state, to_state, note, created_at) "
        "VALUES ({}, {}, {}, {}, 'confirm', 'buyer', 'placed', 'confirmed', '', now())"
    )
    me, b, p = third.tenant.id, buyer.tenant.id, provider.tenant.id
    cases = [
        (me, p),  # the third tenant as the "buyer" of the provider's order
        (b, me),  # the third tenant as the "provider" of the buyer's order
    ]
    for tenant_id, provider_id in cases:
        for sql, extra in (
            (message_sql, (third.person.user_id, me)),
            (event_sql, ()),
        ):
            args = [uuid.uuid4(), tenant_id, provider_id, order.id, *extra]
            with pytest.raises(asyncpg.exceptions.ForeignKeyViolationError):
                async with db.tenant_scope(me):
                    await OrderEvent.raw(sql, *args)
    # Naming the real parties is refused by row-level security (the third tenant is neither).
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
        async with db.tenant_scope(me):
            await OrderEvent.raw(event_sql, uuid.uuid4(), b, p, order.id)
    # The buyer cannot post as a third organisation either.
    with pytest.raises(asyncpg.exceptions.CheckViolationError):
        async with db.tenant_scope(b):
            await OrderEvent.raw(
                message_sql, uuid.uuid4(), b, p, order.id, third.person.user_id, me
            )
    # An order (or quote) must name its listing's own provider.
    with pytest.raises(asyncpg.exceptions.ForeignKeyViolationError):
        async with db.tenant_scope(me):
            await Order.raw(
                "INSERT INTO market_orders (id, tenant_id, provider_tenant_id, listing_id, "
                "module, title, category, state, list_price_fen, commission_rate_bp, "
                "commission_fen, payout_fen, buyer_paid_fen, voucher_subsidy_fen, refunded_fen, "
                "buyer_refunded_fen, voucher_refunded_fen, commission_reversed_fen, "
                "payout_reversed_fen, payment_key, created_at, updated_at) VALUES "
                "({}, {}, {}, {}, 'services', 'x', 'tax', 'placed', 100, 500, 5, 95, 100, 0, "
                "0, 0, 0, 0, 0, '', now(), now())",
                uuid.uuid4(),
                b,
                me,
                listing.id,
            )
    # Nothing was written; the honest paths still work.
    assert await _events(order.id) == 1
    await market.post_message(order.id, buyer.ctx, "你好")
    assert len(await market.list_messages(order.id, provider.ctx)) == 1

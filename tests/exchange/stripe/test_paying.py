"""Paid datasets with Stripe configured (localstripe + billing's stand-in): the buyer pays
from the grant page (Checkout) or the API (PaymentIntent), billing's webhook job opens the
grant and tells both parties; subscriptions recur through Stripe and move the grant's
expiry; per-query prices are billed per month as invoice items."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from canal.platform import clock, db
from tests.exchange.helpers import Org, active_grant, approved_provider, make_org, published_dataset
from tests.factories import csrf_from, sign_in


async def _paid_grant(client, op, price_model: str, price: str = "128.50") -> tuple[Org, Org, str]:
    provider = await approved_provider("收费数据")
    buyer = await make_org("付费买方")
    dataset_id = await published_dataset(
        client, provider, op, price_model=price_model, price_yuan=price, delivery_modes=["api"]
    )
    grant_id = await active_grant(client, provider, buyer, dataset_id, modes=["api"])
    return provider, buyer, grant_id


async def _grant(grant_id: str) -> dict[str, Any]:
    from canal.exchange.tables import Grant

    async with db.platform_scope():
        row = await Grant.select().where(Grant.id == uuid.UUID(grant_id)).first()
    assert row is not None
    return row


async def _told(grant_id: str) -> set[uuid.UUID]:
    from canal.platform.notifications.tables import Notification

    async with db.platform_scope():
        rows = await Notification.select(Notification.user_id, Notification.title_zh).where(
            Notification.link.like(f"%/grants/{grant_id}")
        )
    return {r["user_id"] for r in rows if "付款" in r["title_zh"]}


async def _purchases(org: Org, grant_id: str) -> list[dict[str, Any]]:
    from canal.exchange.tables import UsageEvent

    async with db.tenant_scope(org.tenant.id):
        return await UsageEvent.select().where(
            (UsageEvent.grant_id == uuid.UUID(grant_id)) & (UsageEvent.action == "purchase")
        )


async def test_grant_page_pays_through_checkout_and_the_webhook_opens_the_grant(
    app, client, gateway, standin, op
):
    from canal.platform.billing.jobs import process_event
    from tests.billing.helpers import deliver, event

    provider, buyer, grant_id = await _paid_grant(client, op, "one_off")
    await sign_in(client, buyer.owner)
    rows = f"{buyer.api}/grants/{grant_id}/rows"
    assert (await client.get(rows)).json()["code"] == "payment_pending"
    page = await client.get(f"{buyer.web}/grants/{grant_id}")
    assert "¥128.50" in page.text and "/payment" in page.text
    paid = await client.post(
        f"{buyer.web}/grants/{grant_id}/payment", data={"_csrf": csrf_from(page.text)}
    )
    assert paid.status_code == 303, paid.text
    assert paid.headers["location"].startswith(f"{standin.base_url}/checkout/cs_test_")
    session_id = paid.headers["location"].rsplit("/", 1)[1]
    sent = standin.objects[session_id]
    assert sent["mode"] == "payment" and sent["amount_total"] == 12850
    assert set(sent["payment_method_types"]) == {"card", "alipay", "wechat_pay"}
    assert sent["metadata"]["order"] == f"exchange-{grant_id}"
    assert sent["success_url"].endswith(f"/grants/{grant_id}?paid=1")
    # A second click (another tab) opens the same session: one grant, one charge.
    again = await client.post(
        f"{buyer.web}/grants/{grant_id}/payment", data={"_csrf": csrf_from(page.text)}
    )
    assert again.headers["location"] == paid.headers["location"]
    back = await client.get(f"{buyer.web}/grants/{grant_id}?paid=1")
    assert 'id="payment-confirming"' in back.text
    assert (await client.get(rows)).status_code == 402

    completed = {
        **sent,
        "status": "complete",
        "payment_status": "paid",
        "payment_intent": f"pi_{uuid.uuid4().hex[:16]}",
    }
    first = event("checkout.session.completed", completed)
    assert (await deliver(client, first)).status_code == 200
    assert await process_event(first["id"]) == "succeeded"
    # Opened by the webhook itself, both parties told in the same transaction.
    assert (await _grant(grant_id))["paid_at"] is not None
    assert {buyer.owner.user_id, provider.owner.user_id} <= await _told(grant_id)
    assert (await client.get(rows)).status_code == 200
    # Delivered twice: nothing more happens; paying again is refused.
    repeat = event("checkout.session.completed", completed)
    await deliver(client, repeat)
    assert await process_event(repeat["id"]) == "duplicate"
    assert len(await _purchases(provider, grant_id)) == 1
    assert len(await _purchases(buyer, grant_id)) == 1
    refused = await client.post(f"{buyer.api}/grants/{grant_id}/payment")
    assert refused.status_code == 409 and refused.json()["code"] == "already_paid"


async def test_api_gets_a_client_secret_and_a_failed_then_succeeded_intent_opens_it(
    app, client, gateway, standin, op
):
    """The API twin answers what Stripe.js needs; payment_intent.payment_failed leaves the
    grant shut, a later payment_intent.succeeded (after an out-of-order retry) opens it."""
    from canal.platform.billing.jobs import process_event
    from canal.platform.billing.tables import Payment
    from tests.billing.helpers import deliver, event

    provider, buyer, grant_id = await _paid_grant(client, op, "one_off", "66.00")
    await sign_in(client, buyer.owner)
    started = await client.post(f"{buyer.api}/grants/{grant_id}/payment")
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["client_secret"] and body["amount_fen"] == 6600 and body["checkout_url"] is None
    assert body["status"] != "succeeded"
    # The same call again: the same payment, no second PaymentIntent.
    posts = len(standin.sent("POST", "/v1/payment_intents"))
    assert (await client.post(f"{buyer.api}/grants/{grant_id}/payment")).status_code == 201
    assert len(standin.sent("POST", "/v1/payment_intents")) == posts
    # The page cannot open a second way to pay beside it.
    page = await client.get(f"{buyer.web}/grants/{grant_id}")
    other = await client.post(
        f"{buyer.web}/grants/{grant_id}/payment", data={"_csrf": csrf_from(page.text)}
    )
    assert other.status_code == 409 and "已通过其他方式发起支付" in other.text

    async with db.tenant_scope(buyer.tenant.id):
        row = (
            await Payment.select().where(Payment.idempotency_key == f"exchange-{grant_id}").first()
        )
    intent_id = row["stripe_payment_intent_id"]
    failed = event("payment_intent.payment_failed", {"id": intent_id, "object": "payment_intent"})
    await deliver(client, failed)
    await process_event(failed["id"])
    rows = f"{buyer.api}/grants/{grant_id}/rows"
    assert (await client.get(rows)).status_code == 402
    assert (await _grant(grant_id))["paid_at"] is None

    pm = await gateway.v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    # localstripe takes the card by update, then confirms.
    await gateway.v1.payment_intents.update_async(intent_id, {"payment_method": pm.id})
    await gateway.v1.payment_intents.confirm_async(intent_id)
    # Stripe's events may arrive in any order: the job re-fetches the intent each time.
    succeeded = event("payment_intent.succeeded", {"id": intent_id, "object": "payment_intent"})
    stale_failed = event(
        "payment_intent.payment_failed", {"id": intent_id, "object": "payment_intent"}
    )
    await deliver(client, succeeded)
    await deliver(client, stale_failed)
    assert await process_event(succeeded["id"]) == "succeeded"
    assert await process_event(stale_failed["id"]) == "unchanged"
    assert (await client.get(rows)).status_code == 200
    assert {buyer.owner.user_id, provider.owner.user_id} <= await _told(grant_id)
    assert len(await _purchases(buyer, grant_id)) == 1


def _snapshot(
    sub_id: str,
    customer: str,
    tenant_id: uuid.UUID,
    grant_id: str,
    status: str,
    period: tuple[int, int],
    **extra: Any,
) -> dict[str, Any]:
    """A subscription as an event carries it (Stripe no longer has it: the job applies the
    snapshot with the event's time)."""
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "created": period[0],
        "cancel_at_period_end": False,
        "metadata": {"kind": "exchange_grant", "tenant_id": str(tenant_id), "reference": grant_id},
        "items": {
            "data": [
                {
                    "current_period_start": period[0],
                    "current_period_end": period[1],
                    "price": {"unit_amount": 9900},
                }
            ]
        },
        **extra,
    }


@pytest.mark.stripe_clock
async def test_subscription_checkout_real_subscription_cancel_and_end(
    app, client, gateway, standin, op
):
    from canal.platform.billing import services as billing
    from canal.platform.billing.jobs import process_event
    from tests.billing.helpers import deliver, event

    provider, buyer, grant_id = await _paid_grant(client, op, "subscription", "99.00")
    assert (await _grant(grant_id))["expires_at"] is None  # set by paid periods only
    await sign_in(client, buyer.owner)
    page = await client.get(f"{buyer.web}/grants/{grant_id}")
    assert "¥99.00" in page.text and "订阅" in page.text
    started = await client.post(
        f"{buyer.web}/grants/{grant_id}/payment", data={"_csrf": csrf_from(page.text)}
    )
    assert started.status_code == 303, started.text
    session = standin.objects[started.headers["location"].rsplit("/", 1)[1]]
    assert session["mode"] == "subscription" and session["payment_method_types"] == ["card"]
    sent = standin.sent("POST", "/v1/checkout/sessions")[-1].form
    price = sent["line_items[0][price]"]
    assert price.endswith("_cny_9900_month") and sent["line_items[0][quantity]"] == "1"
    meta = {
        k: sent[f"subscription_data[metadata][{k}]"]
        for k in ("kind", "tenant_id", "reference", "requested_by")
    }
    assert meta["kind"] == "exchange_grant" and meta["reference"] == grant_id
    assert meta["tenant_id"] == str(buyer.tenant.id)
    # The API twin gives a client the same Checkout page.
    api = await client.post(f"{buyer.api}/grants/{grant_id}/payment")
    assert api.status_code == 201 and api.json()["checkout_url"].startswith(standin.base_url)

    # What Checkout creates at Stripe: a subscription of the buyer's customer to that price.
    customer = await billing.ensure_customer(buyer.ctx)
    pm = await gateway.v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    await gateway.v1.payment_methods.attach_async(pm.id, {"customer": customer})
    await gateway.v1.customers.update_async(
        customer, {"invoice_settings": {"default_payment_method": pm.id}}
    )
    sub = await gateway.v1.subscriptions.create_async(
        {"customer": customer, "items": [{"plan": price}], "metadata": meta}
    )
    created = event("checkout.session.completed", {**session, "subscription": sub.id})
    await deliver(client, created)
    assert await process_event(created["id"]) == "active"
    grant = await _grant(grant_id)
    assert grant["subscription_id"] == sub.id and grant["paid_at"] is not None
    assert grant["expires_at"] > clock.now() + dt.timedelta(days=27)
    assert {buyer.owner.user_id, provider.owner.user_id} <= await _told(grant_id)
    rows = f"{buyer.api}/grants/{grant_id}/rows"
    assert (await client.get(rows)).status_code == 200
    # The same state again (customer.subscription.created after the session): nothing new.
    again = event("customer.subscription.created", sub.to_dict(recursive=True))
    await deliver(client, again)
    assert await process_event(again["id"]) == "active"
    assert len(await _purchases(buyer, grant_id)) == 1
    # Subscribing twice is refused.
    twice = await client.post(f"{buyer.api}/grants/{grant_id}/payment")
    assert twice.status_code == 409 and twice.json()["code"] == "already_paid"

    # The buyer stops renewing: still usable until the paid month ends.
    page = await client.get(f"{buyer.web}/grants/{grant_id}")
    assert "/subscription/cancel" in page.text
    stopped = await client.post(
        f"{buyer.web}/grants/{grant_id}/subscription/cancel",
        data={"_csrf": csrf_from(page.text)},
    )
    assert stopped.status_code == 303, stopped.text
    grant = await _grant(grant_id)
    assert grant["cancel_at_period_end"] is True and grant["expires_at"] > clock.now()
    assert (await client.get(rows)).status_code == 200
    shown = await client.get(f"{buyer.api}/grants/{grant_id}")
    assert shown.json()["payment"]["renews"] is False
    assert "已取消续订" in (await client.get(f"{buyer.web}/grants/{grant_id}")).text
    # Cancelling again: nothing to cancel twice (Stripe's state already says so).
    assert (
        await client.post(f"{buyer.api}/grants/{grant_id}/subscription/cancel")
    ).status_code == 200

    # Stripe ends it (here: at once, as after failed retries): the grant ends with it.
    await gateway.v1.subscriptions.cancel_async(sub.id)
    ended = event("customer.subscription.deleted", {"id": sub.id, "object": "subscription"})
    await deliver(client, ended)
    assert await process_event(ended["id"]) == "canceled"
    gone = await client.get(rows)
    assert gone.status_code == 403 and gone.json()["code"] == "grant_inactive"
    assert "订阅已结束" in (await client.get(f"{buyer.web}/grants/{grant_id}")).text


async def test_subscription_renewal_failed_payment_and_out_of_order_events(
    app, client, gateway, standin, op
):
    """Snapshots (Stripe no longer has the subscription) in a scrambled order: renewals extend
    the grant, an older state never wins, past_due never extends, the end is final."""
    from canal.platform.billing import services as billing
    from canal.platform.billing.jobs import process_event
    from tests.billing.helpers import deliver, event

    provider, buyer, grant_id = await _paid_grant(client, op, "subscription", "99.00")
    customer = await billing.ensure_customer(buyer.ctx)
    sub_id = f"sub_gone_{uuid.uuid4().hex[:12]}"
    now = int(clock.timestamp())
    month = 30 * 86400
    p1, p2, p3 = (
        (now - 10, now + month),
        (now + month, now + 2 * month),
        (
            now + 2 * month,
            now + 3 * month,
        ),
    )

    async def send(etype: str, status: str, period: tuple[int, int], at: int, **extra: Any) -> str:
        snap = _snapshot(sub_id, customer, buyer.tenant.id, grant_id, status, period, **extra)
        evt = event(etype, snap, created=at)
        assert (await deliver(client, evt)).status_code == 200
        return await process_event(evt["id"])

    def until(epoch: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(epoch, dt.UTC)

    assert await send("customer.subscription.created", "active", p1, now + 1) == "active"
    assert (await _grant(grant_id))["expires_at"] == until(p1[1])
    # The renewal extends the grant to the new period's end.
    assert await send("customer.subscription.updated", "active", p2, now + 2) == "active"
    assert (await _grant(grant_id))["expires_at"] == until(p2[1])
    # A late copy of the first period's state (out of order) changes nothing.
    assert await send("customer.subscription.created", "active", p1, now + 1) == "stale"
    assert (await _grant(grant_id))["expires_at"] == until(p2[1])
    # The next renewal fails: past_due never extends the grant.
    assert await send("customer.subscription.updated", "past_due", p3, now + 3) == "past_due"
    assert (await _grant(grant_id))["expires_at"] == until(p2[1])
    # Stripe gives up after its retries: cancelled at the end of the paid period at the latest.
    ended = {"ended_at": p3[0] + 86400, "canceled_at": p3[0] + 86400}
    assert await send("customer.subscription.deleted", "canceled", p3, now + 4, **ended) == (
        "canceled"
    )
    assert (await _grant(grant_id))["expires_at"] == until(p2[1])
    # A late "active" (an older retry) cannot revive it.
    assert await send("customer.subscription.updated", "active", p3, now + 5) == "terminal"
    assert (await _grant(grant_id))["expires_at"] == until(p2[1])
    # Another tenant's customer cannot drive this grant.
    other = await make_org("冒名买方")
    stranger = await billing.ensure_customer(other.ctx)
    snap = _snapshot(
        f"sub_x_{uuid.uuid4().hex[:8]}", stranger, buyer.tenant.id, grant_id, "active", p3
    )
    forged = event("customer.subscription.created", snap, created=now + 6)
    await deliver(client, forged)
    assert await process_event(forged["id"]) == "unmatched"
    assert (await _grant(grant_id))["expires_at"] == until(p2[1])
    # One purchase per paid period (the first and the renewal), on both sides.
    assert [p["amount_fen"] for p in await _purchases(provider, grant_id)] == [9900, 9900]
    assert len(await _purchases(buyer, grant_id)) == 2


async def test_per_query_prices_are_billed_per_month_as_an_invoice_item(
    app, client, gateway, standin, op
):
    """localstripe has no Billing Meters: per-query prices are billing usage rows (not meter
    events), and each finished month is one invoice item + invoice at Stripe."""
    from canal.platform.billing import services as billing
    from canal.platform.billing.tables import UsageRecord

    provider = await approved_provider("按次数据")
    buyer = await make_org("按次买方")
    dataset_id = await published_dataset(
        client, provider, op, price_model="per_query", price_yuan="2.50", delivery_modes=["compute"]
    )
    grant_id = await active_grant(client, provider, buyer, dataset_id, modes=["compute"])
    await sign_in(client, buyer.owner)
    meter_events = len(standin.sent("POST", "/v1/billing/meter_events"))
    for _ in range(3):
        ran = await client.post(
            f"{buyer.api}/grants/{grant_id}/queries",
            json={"sql": "SELECT 行业, count(*) AS n FROM data GROUP BY 行业"},
        )
        assert ran.status_code == 201, ran.text
    refused = await client.post(
        f"{buyer.api}/grants/{grant_id}/queries", json={"sql": "SELECT * FROM data"}
    )
    assert refused.status_code == 422  # a refused query is not charged
    async with db.tenant_scope(buyer.tenant.id):
        rows = await UsageRecord.select().where(UsageRecord.tenant_id == buyer.tenant.id)
    assert [r["quantity"] for r in rows] == [250, 250, 250]
    assert all(r["meter"] == "exchange_query" and r["sent_at"] is None for r in rows)
    assert len(standin.sent("POST", "/v1/billing/meter_events")) == meter_events
    # The buyer's statement shows the month, not yet invoiced.
    page = await client.get(f"{buyer.web}/usage")
    assert 'id="query-statement"' in page.text and "¥7.50" in page.text
    assert "计入下一期月度账单" in page.text

    # The month is not over: nothing is invoiced yet.
    assert await billing.invoice_priced_usage() == 0
    next_month = clock.now() + dt.timedelta(days=32)
    made = await billing.invoice_priced_usage(now=next_month)
    assert made >= 1
    customer = await billing.ensure_customer(buyer.ctx)
    invoices = await gateway.list_invoices(customer)
    assert any(int(i.get("total") or i.get("amount_due") or 0) == 750 for i in invoices), invoices
    async with db.tenant_scope(buyer.tenant.id):
        rows = await UsageRecord.select().where(UsageRecord.tenant_id == buyer.tenant.id)
    assert len({r["invoice_item_id"] for r in rows}) == 1 and rows[0]["invoice_item_id"]
    # Run again (the hourly reconciliation): billed once.
    items = len(standin.sent("POST", "/v1/invoiceitems"))
    await billing.invoice_priced_usage(now=next_month)
    assert len(standin.sent("POST", "/v1/invoiceitems")) == items
    assert "已开具账单" in (await client.get(f"{buyer.web}/usage")).text
    statement = (await client.get(f"{buyer.api}/usage")).json()["statement"]
    assert statement[0]["amount_fen"] == 750 and statement[0]["invoiced"] is True


async def _subscribed(client, gateway, standin, buyer: Org, grant_id: str) -> str:
    """The buyer subscribes (API → Checkout; what Checkout creates at Stripe, made here) and
    the first webhook is handled. Returns the subscription id."""
    from canal.platform.billing import services as billing
    from canal.platform.billing.jobs import process_event
    from tests.billing.helpers import deliver, event

    await sign_in(client, buyer.owner)
    assert (await client.post(f"{buyer.api}/grants/{grant_id}/payment")).status_code == 201
    sent = standin.sent("POST", "/v1/checkout/sessions")[-1].form
    meta = {
        k: sent[f"subscription_data[metadata][{k}]"] for k in ("kind", "tenant_id", "reference")
    }
    customer = await billing.ensure_customer(buyer.ctx)
    pm = await gateway.v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    await gateway.v1.payment_methods.attach_async(pm.id, {"customer": customer})
    await gateway.v1.customers.update_async(
        customer, {"invoice_settings": {"default_payment_method": pm.id}}
    )
    sub = await gateway.v1.subscriptions.create_async(
        {"customer": customer, "items": [{"plan": sent["line_items[0][price]"]}], "metadata": meta}
    )
    created = event("customer.subscription.created", sub.to_dict(recursive=True))
    await deliver(client, created)
    assert await process_event(created["id"]) == "active"
    return str(sub.id)


async def test_reconciliation_repairs_a_missed_webhook_and_revocation_stops_renewal(
    app, client, gateway, standin, op
):
    from canal.platform.billing.jobs import reconcile_subscriptions

    _provider, buyer, grant_id = await _paid_grant(client, op, "subscription", "99.00")
    sub_id = await _subscribed(client, gateway, standin, buyer, grant_id)
    # The buyer stops renewing in Stripe's portal; that webhook never arrives.
    await gateway.v1.subscriptions.update_async(sub_id, {"cancel_at_period_end": True})
    assert (await _grant(grant_id))["cancel_at_period_end"] is False
    await reconcile_subscriptions({})
    assert (await _grant(grant_id))["cancel_at_period_end"] is True

    provider2, buyer2, grant2 = await _paid_grant(client, op, "subscription", "99.00")
    sub2 = await _subscribed(client, gateway, standin, buyer2, grant2)
    await sign_in(client, provider2.owner)
    revoked = await client.post(f"{provider2.api}/grants/{grant2}/revoke", json={"reason": "违约"})
    assert revoked.status_code == 204, revoked.text
    # A revoked grant does not renew: its subscription stops at the period end.
    fresh = await gateway.retrieve_subscription(sub2)
    assert fresh is not None and fresh["cancel_at_period_end"] is True
    await sign_in(client, buyer2.owner)
    gone = await client.get(f"{buyer2.api}/grants/{grant2}/rows")
    assert gone.status_code == 403 and gone.json()["code"] == "grant_inactive"

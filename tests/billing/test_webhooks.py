"""Stripe webhooks: signature over the raw body, stored once, order- and duplicate-proof."""

from __future__ import annotations

import itertools
import json
import uuid

import pytest

from canal.platform import clock, db
from canal.platform.billing.jobs import billing_handle_event, process_event
from canal.platform.billing.tables import BillingSubscription, StripeEvent
from canal.tenants.tables import ModuleSubscription
from tests.billing.helpers import billed_tenant, deliver, event, sign, stripe_subscription


async def _stored(event_id: str) -> int:
    async with db.transaction():
        return await StripeEvent.count().where(StripeEvent.event_id == event_id)


def _snapshot(sub_id: str, customer: str, tenant_id, status: str, created: int) -> dict:
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "created": created,
        "metadata": {"tenant_id": str(tenant_id), "module_key": "smartpark", "plan": "pro"},
        "items": {
            "object": "list",
            "data": [{"current_period_start": created, "current_period_end": created + 30 * 86400}],
        },
    }


async def _state(tenant_id) -> tuple[str | None, str | None]:
    async with db.tenant_scope(tenant_id):
        b = await BillingSubscription.select(BillingSubscription.status).first()
        m = (
            await ModuleSubscription.select(ModuleSubscription.status)
            .where(ModuleSubscription.module_key == "smartpark")
            .first()
        )
    return (b["status"] if b else None, m["status"] if m else None)


async def test_tampered_and_stale_webhooks_are_refused_and_not_stored(client, gateway):
    evt = event("customer.created", {"id": "cus_x", "object": "customer"})
    body = json.dumps(evt).encode()
    cases = {
        "bad signature": (body, sign(body, secret="whsec_wrong")),
        "modified body": (body.replace(b"cus_x", b"cus_y"), sign(body)),
        "stale": (body, sign(body, at=int(clock.wall_timestamp()) - 301)),
        "no header": (body, None),
    }
    for name, (payload, header) in cases.items():
        headers = {"Content-Type": "application/json"}
        if header:
            headers["Stripe-Signature"] = header
        response = await client.post("/webhooks/stripe", content=payload, headers=headers)
        assert response.status_code == 400, name
        assert "webhook_signature_invalid" in response.text, name
    assert await _stored(evt["id"]) == 0
    # The same event, correctly signed and fresh, is accepted — once.
    assert (await deliver(client, evt)).status_code == 200
    again = await deliver(client, evt)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert await _stored(evt["id"]) == 1


SEQUENCE = ("created", "updated", "deleted")
STATUS = {"created": "active", "updated": "past_due", "deleted": "canceled"}
ETYPE = {
    "created": "customer.subscription.created",
    "updated": "customer.subscription.updated",
    "deleted": "customer.subscription.deleted",
}
# Every order of the three events, each also with one duplicate delivered at the end.
ORDERS = [(*p, p[0]) for p in itertools.permutations(SEQUENCE)]


async def _run_snapshot_sequence(client, order, steps=SEQUENCE):
    """Snapshot path: the subscription is unknown to Stripe (404 on re-fetch), so only the
    events' own objects and `created` times decide."""
    from canal.platform.billing.services import ensure_customer

    b = await billed_tenant()
    customer = await ensure_customer(b.ctx)
    sub_id = f"sub_gone_{uuid.uuid4().hex[:12]}"
    t0 = int(clock.wall_timestamp()) - 1000
    events = {
        step: event(
            ETYPE[step],
            _snapshot(sub_id, customer, b.tenant.id, STATUS[step], t0),
            created=t0 + 10 * i,
        )
        for i, step in enumerate(steps)
    }
    for step in order:
        assert (await deliver(client, events[step])).status_code == 200
        await process_event(events[step]["id"])
    return await _state(b.tenant.id)


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
async def test_reordered_and_duplicated_snapshots_end_like_one_clean_delivery(client, order):
    clean = await _run_snapshot_sequence(client, SEQUENCE)
    assert clean == ("canceled", "cancelled")
    assert await _run_snapshot_sequence(client, order) == clean


@pytest.mark.parametrize("order", [("created", "updated"), ("updated", "created", "updated")])
async def test_out_of_order_without_cancel_ends_in_grace(client, order):
    clean = await _run_snapshot_sequence(client, ("created", "updated"), ("created", "updated"))
    assert clean == ("past_due", "active")  # past_due = grace, still usable
    assert await _run_snapshot_sequence(client, order, ("created", "updated")) == clean


@pytest.mark.parametrize("order", ORDERS[:3], ids=["-".join(o) for o in ORDERS[:3]])
async def test_refetch_path_follows_stripe_whatever_the_order(client, gateway, order):
    """Real subscription in localstripe: every event re-fetches it, so late or repeated
    events converge on Stripe's current state."""
    b = await billed_tenant()
    sub = await stripe_subscription(gateway, b)
    cancelled = (await gateway.v1.subscriptions.cancel_async(sub["id"])).to_dict(recursive=True)
    snapshots = {"created": sub, "updated": sub, "deleted": cancelled}
    for step in order:
        evt = event(ETYPE[step], snapshots[step])
        await deliver(client, evt)
        await billing_handle_event({}, evt["id"])
    assert await _state(b.tenant.id) == ("canceled", "cancelled")


async def test_handler_sweeps_pending_events_whose_enqueue_was_lost(client, gateway):
    b = await billed_tenant()
    sub = await stripe_subscription(gateway, b)
    lost = event("customer.subscription.created", sub)
    await deliver(client, lost)  # stored; pretend the enqueue never reached Redis
    other = event("customer.created", {"id": "cus_other", "object": "customer"})
    await deliver(client, other)
    await billing_handle_event({}, other["id"])  # any run picks up pending rows
    assert await _state(b.tenant.id) == ("active", "active")
    async with db.transaction():
        row = (
            await StripeEvent.select(StripeEvent.status)
            .where(StripeEvent.event_id == lost["id"])
            .first()
        )
    assert row["status"] == "done"


async def test_an_event_that_always_fails_ends_failed_and_is_left_alone(client, gateway):
    """A poison event (signed, stored, but its handling raises every time): each run counts
    an attempt; after MAX_ATTEMPTS it is ``failed`` and no run or sweep takes it again."""
    from canal.platform.billing.jobs import MAX_ATTEMPTS, process_pending

    # No "id" on the account: applying it raises KeyError, every time.
    poison = event(
        "account.updated",
        {"object": "account", "metadata": {"tenant_id": str(uuid.uuid4())}},
    )
    assert (await deliver(client, poison)).status_code == 200

    async def row() -> dict:
        async with db.transaction():
            return (
                await StripeEvent.select(
                    StripeEvent.status, StripeEvent.attempts, StripeEvent.error
                )
                .where(StripeEvent.event_id == poison["id"])
                .first()
            )

    for attempt in range(1, MAX_ATTEMPTS + 1):
        with pytest.raises(KeyError):
            await process_event(poison["id"])
        state = await row()
        assert state["attempts"] == attempt and "KeyError" in state["error"]
        assert state["status"] == ("failed" if attempt == MAX_ATTEMPTS else "pending")
    assert await process_event(poison["id"]) == "skipped"
    await process_pending()
    await billing_handle_event({}, poison["id"])
    assert await row() == {
        "status": "failed",
        "attempts": MAX_ATTEMPTS,
        "error": state["error"],
    }

"""Billing's arq jobs: handle stored Stripe events, reconcile subscriptions, re-send usage.

Every handler is idempotent. An event is claimed and applied in one transaction
(``UPDATE … WHERE status = 'pending'``): a duplicate run waits on the row and then finds it
done; a failure rolls the claim back, counts the attempt (in a transaction of its own) and
arq retries — after ``MAX_ATTEMPTS`` failures the event is marked ``failed`` and left alone.
Stripe is read *before* that transaction (a re-fetch holds no lock).
"""

from __future__ import annotations

import logging
from typing import Any

from canal.platform import clock, db
from canal.platform.billing import services
from canal.platform.billing.gateway import gateway
from canal.platform.billing.tables import StripeEvent

log = logging.getLogger("canal.billing.jobs")

SWEEP_LIMIT = 100
MAX_ATTEMPTS = 8


async def _load(event_id: str) -> dict[str, Any] | None:
    async with db.transaction():
        row = (
            await StripeEvent.select(StripeEvent.payload, StripeEvent.event_created)
            .where((StripeEvent.event_id == event_id) & (StripeEvent.status == "pending"))
            .first()
        )
    return row


async def _fetch(event: dict[str, Any]) -> tuple[str, dict[str, Any], int]:
    """What to apply for this event: (kind, Stripe object, seen_at). Re-fetches the object so
    the order in which events arrive does not matter; falls back to the event's snapshot (with
    its `created` as the time) only when Stripe no longer has the object."""
    etype = str(event.get("type", ""))
    obj = (event.get("data") or {}).get("object") or {}
    created = int(event.get("created") or 0)
    now = services.now_epoch()
    gw = gateway()
    if etype.startswith("customer.subscription."):
        fresh = await gw.retrieve_subscription(obj["id"])
        return ("subscription", fresh, now) if fresh else ("subscription", obj, created)
    if etype == "checkout.session.completed":
        if obj.get("mode") == "subscription" and obj.get("subscription"):
            sub_id = obj["subscription"]
            sub_id = sub_id["id"] if isinstance(sub_id, dict) else sub_id
            fresh = await gw.retrieve_subscription(str(sub_id))
            return ("subscription", fresh or {}, now)
        return "prepaid", obj, created
    if etype in {"invoice.paid", "invoice.payment_failed"}:
        sub_id = obj.get("subscription") or (
            ((obj.get("parent") or {}).get("subscription_details") or {}).get("subscription")
        )
        fresh = await gw.retrieve_subscription(str(sub_id)) if sub_id else None
        return ("invoice", {"invoice": obj, "subscription": fresh or {}}, now)
    if etype.startswith("payment_intent."):
        fresh = await gw.retrieve_payment_intent(obj["id"])
        return "payment_intent", fresh or obj, now if fresh else created
    if etype == "account.updated":
        return "account", obj, created
    return "ignored", obj, created


async def _apply(kind: str, obj: dict[str, Any], seen_at: int, etype: str) -> str:
    if kind == "subscription":
        return await services.apply_subscription(obj, seen_at=seen_at) if obj else "missing"
    if kind == "prepaid":
        if (obj.get("metadata") or {}).get("kind") == "payment":
            return await services.apply_payment_checkout(obj)
        return await services.apply_prepaid(obj, seen_at=seen_at)
    if kind == "invoice":
        return await _apply_invoice(obj, seen_at, etype)
    if kind == "payment_intent":
        return await services.apply_payment_intent(obj)
    if kind == "account":
        return await services.apply_account(obj)
    return "ignored"


async def _apply_invoice(obj: dict[str, Any], seen_at: int, etype: str) -> str:
    from canal.platform.audit.services import record

    invoice, sub = obj["invoice"], obj["subscription"]
    outcome = await services.apply_subscription(sub, seen_at=seen_at) if sub else "no-sub"
    tenant_id = await services._tenant_for_customer(str(invoice.get("customer") or ""))
    if tenant_id is not None:
        async with db.tenant_scope(tenant_id):
            await record(
                "billing.invoice_paid" if etype == "invoice.paid" else "billing.payment_failed",
                tenant_id=tenant_id,
                target=str(invoice.get("id", "")),
                data={
                    "amount_fen": int(invoice.get("amount_paid") or invoice.get("total") or 0),
                    "subscription": sub.get("id") if sub else None,
                },
            )
    return outcome


async def process_event(event_id: str) -> str:
    """Handle one stored event exactly once; returns the outcome (also kept on the row)."""
    row = await _load(event_id)
    if row is None:
        return "skipped"
    event = row["payload"]
    if isinstance(event, str):
        import json

        event = json.loads(event)
    etype = str(event.get("type", ""))
    try:
        kind, obj, seen_at = await _fetch(event)
    except Exception as exc:
        await _note_failure(event_id, exc)
        raise
    try:
        async with db.transaction():
            claimed = (
                await StripeEvent.update(
                    {StripeEvent.status: "done", StripeEvent.processed_at: clock.now()}
                )
                .where((StripeEvent.event_id == event_id) & (StripeEvent.status == "pending"))
                .returning(StripeEvent.event_id)
            )
            if not claimed:
                return "skipped"
            outcome = await _apply(kind, obj, seen_at, etype)
            await StripeEvent.update({StripeEvent.error: f"ok:{outcome}"[:500]}).where(
                StripeEvent.event_id == event_id
            )
    except Exception as exc:
        # The claim rolled back with the change: the row is pending again. Count the attempt
        # (in a transaction of its own) so an event that always fails ends ``failed``.
        await _note_failure(event_id, exc)
        raise
    return outcome


async def _note_failure(event_id: str, exc: Exception) -> None:
    """Count a failed attempt of a still-pending event; at MAX_ATTEMPTS it becomes ``failed``
    and no run picks it up again. Never masks the original error."""
    try:
        async with db.transaction():
            await StripeEvent.update(
                {
                    StripeEvent.attempts: StripeEvent.attempts + 1,
                    StripeEvent.error: repr(exc)[:500],
                }
            ).where((StripeEvent.event_id == event_id) & (StripeEvent.status == "pending"))
            await StripeEvent.update({StripeEvent.status: "failed"}).where(
                (StripeEvent.event_id == event_id)
                & (StripeEvent.status == "pending")
                & (StripeEvent.attempts >= MAX_ATTEMPTS)
            )
    except Exception:
        log.exception("could not record the failure of billing event %s", event_id)


async def process_pending(limit: int = SWEEP_LIMIT) -> int:
    """Handle pending events oldest first (by Stripe's `created`); returns how many ran."""
    async with db.transaction():
        rows = await (
            StripeEvent.select(StripeEvent.event_id)
            .where(StripeEvent.status == "pending")
            .order_by(StripeEvent.event_created)
            .order_by(StripeEvent.received_at)
            .limit(limit)
        )
    done = 0
    for r in rows:
        try:
            if await process_event(r["event_id"]) != "skipped":
                done += 1
        except Exception:
            log.exception("billing event %s failed (attempt counted)", r["event_id"])
    return done


async def billing_handle_event(ctx: dict[str, Any], event_id: str) -> str:
    """arq: handle this event, then any other pending ones (an enqueue may have been lost)."""
    outcome = await process_event(event_id)
    await process_pending()
    return outcome


async def reconcile_subscriptions(ctx: dict[str, Any]) -> dict[str, int]:
    """arq (cron, e.g. hourly): re-fetch every Stripe subscription we know of and re-apply it,
    which rewrites the entitlement row — drift (a missed webhook, a hand edit) is repaired."""
    counts = {"checked": 0, "missing": 0, "failed": 0}
    if not gateway().enabled:
        return counts
    item_refs = [ref for lister in services.item_subscription_refs() for ref in await lister()]
    refs = [sub_id for _tenant_id, sub_id in await services.stripe_subscription_refs()]
    for sub_id in refs + item_refs:
        try:
            fresh = await gateway().retrieve_subscription(sub_id)
            if fresh is None:
                counts["missing"] += 1
                continue
            async with db.transaction():
                await services.apply_subscription(
                    fresh, seen_at=services.now_epoch(), authoritative=True
                )
            counts["checked"] += 1
        except Exception:
            counts["failed"] += 1
            log.exception("reconciling %s failed", sub_id)
    await process_pending()
    await services.send_pending_usage()
    # Priced usage of finished months (an hourly run bills each month once, early in the next).
    await services.invoice_priced_usage()
    return counts


# For canal.platform.jobs.job_functions (the lead wires it) and a cron entry for reconcile.
JOBS = (billing_handle_event, reconcile_subscriptions)

"""Stripe webhooks in: verify the signature over the raw body, store each event once, and hand
it to a job — the event row *is* the job's outbox entry (status ``pending``), written in one
transaction; the job is enqueued after commit, and every run also sweeps pending rows, so an
event whose enqueue was lost is still handled."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import stripe

from canal.platform import clock, db
from canal.platform.billing.gateway import gateway
from canal.platform.billing.tables import StripeEvent
from canal.platform.http.errors import CanalError

log = logging.getLogger("canal.billing.webhooks")


def bad_signature() -> CanalError:
    return CanalError(
        "webhook_signature_invalid",
        "Webhook 签名无效或已过期。",
        "The webhook signature is invalid or too old.",
        status=400,
    )


async def receive_event(
    payload: bytes,
    signature: str | None,
    enqueue: Callable[[str], Awaitable[Any]] | None,
) -> bool:
    """Verify and store one delivery; True if it was new. Raises 400 on a bad signature,
    a stale timestamp (over 300 s) or a body that is not an event — nothing is stored then."""
    try:
        event = gateway().construct_event(payload, signature)
    except (stripe.SignatureVerificationError, ValueError):
        raise bad_signature() from None
    event_id = str(event.get("id") or "")
    if not event_id.startswith("evt_") or not event.get("type"):
        raise bad_signature()
    async with db.transaction():
        inserted = await StripeEvent.raw(
            "INSERT INTO stripe_events (id, event_id, event_type, event_created, payload, "
            "status, attempts, error, received_at) "
            "VALUES ({}, {}, {}, {}, {}::jsonb, 'pending', 0, '', {}) "
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            uuid.uuid4(),
            event_id,
            str(event["type"])[:64],
            int(event.get("created") or 0),
            json.dumps(event),
            clock.now(),
        )
        if inserted and enqueue is not None:

            async def after_commit() -> None:
                try:
                    await enqueue(event_id)
                except Exception:  # the row stays pending; the next run or sweep picks it up
                    log.exception("could not enqueue billing_handle_event for %s", event_id)

            db.on_commit(after_commit)
    return bool(inserted)

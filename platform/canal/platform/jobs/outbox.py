"""The transactional outbox: a job is a row written with the change that needs it.

``enqueue_after_commit`` inserts a ``job_outbox`` row in the caller's open transaction and,
once that transaction commits, pushes it to arq with ``_job_id`` = the row id (a job pushed
twice is queued once). The worker's relay pushes any committed row whose push was lost (the
process died between commit and push, Redis was down), so a committed change never loses its
job; a rolled-back change never runs one.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import msgspec
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from canal.platform import db
from canal.platform.jobs.tables import JobOutbox
from canal.platform.settings import get_settings

log = logging.getLogger("canal.jobs")

_attached_url: str | None = None
_attached_pool: ArqRedis | None = None
_pools: dict[str, ArqRedis] = {}


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


def attach(redis_url: str | None = None, *, pool: ArqRedis | None = None) -> None:
    """Tell this process where to push jobs after commit (the app's lifespan, the worker).

    Unattached, a process falls back to ``settings.redis_url``; with neither, rows wait for
    the worker's relay (a few seconds) — correctness never depends on the push.
    """
    global _attached_url, _attached_pool
    _attached_url = redis_url
    _attached_pool = pool


async def detach() -> None:
    global _attached_url, _attached_pool
    _attached_url = None
    _attached_pool = None
    pools = list(_pools.values())
    _pools.clear()
    for pool in pools:
        await pool.aclose()


async def arq_pool(redis_url: str | None = None) -> ArqRedis | None:
    if _attached_pool is not None and redis_url is None:
        return _attached_pool
    url = redis_url or _attached_url or get_settings().redis_url
    if not url:
        return None
    pool = _pools.get(url)
    if pool is None:
        pool = _pools[url] = await create_pool(redis_settings(url))
    return pool


def _known(function: str) -> None:
    from canal.platform.jobs.registry import job_names

    if function not in job_names():
        raise ValueError(f"no job function named {function!r} is registered")


def _decode_args(raw: Any) -> list[Any]:
    if isinstance(raw, str | bytes):
        return list(msgspec.json.decode(raw))
    return list(raw or [])


async def enqueue_after_commit(
    function: str, *args: Any, key: str | None = None
) -> uuid.UUID | None:
    """Write the job ``function(*args)`` into the caller's transaction; push it after commit.

    ``args`` must be JSON values (UUIDs and datetimes become strings). ``key`` deduplicates:
    a second enqueue with a key that is already in the outbox does nothing and returns None.
    Returns the outbox row id, which is also the arq job id.
    """
    _known(function)
    encoded = msgspec.json.encode(list(args)).decode()
    row_id = uuid.uuid4()
    query = (
        "INSERT INTO job_outbox (id, function, args, dedup_key, created_at, attempts, last_error) "
        "VALUES ({}, {}, {}::jsonb, {}, now(), 0, '') "
        "ON CONFLICT (dedup_key) DO NOTHING RETURNING id"
    )
    txn = db.engine().current_transaction.get()
    if txn is not None:
        rows = await JobOutbox.raw(query, row_id, function, encoded, key)
    else:
        async with db.transaction():
            rows = await JobOutbox.raw(query, row_id, function, encoded, key)
    if not rows:
        return None
    # One push (and one UPDATE) per transaction, however many jobs it enqueued.
    pending: list[tuple[uuid.UUID, str, list[Any]]] | None = getattr(txn, "_canal_jobs", None)
    if pending is None:
        pending = [(row_id, function, _decode_args(encoded))]
        if txn is not None:
            txn._canal_jobs = pending  # type: ignore[attr-defined]
        batch = pending

        async def push_now() -> None:
            await push(batch)

        db.on_commit(push_now)
    else:
        pending.append((row_id, function, _decode_args(encoded)))
    return row_id


async def push(rows: list[tuple[uuid.UUID, str, list[Any]]]) -> int:
    """Queue committed outbox rows in arq and note that they were queued. Never raises."""
    if not rows:
        return 0
    try:
        pool = await arq_pool()
        if pool is None:
            return 0
        for row_id, function, args in rows:
            await pool.enqueue_job(function, *args, _job_id=str(row_id))
        await JobOutbox.raw(
            "UPDATE job_outbox SET enqueued_at = now() "
            "WHERE id = ANY({}::uuid[]) AND enqueued_at IS NULL",
            [row_id for row_id, _, _ in rows],
        )
    except Exception:  # the rows stay unqueued; the relay pushes them
        log.exception("could not push %d outbox job(s); the relay will", len(rows))
        return 0
    return len(rows)


async def relay_once(pool: ArqRedis, *, min_age_seconds: float = 5.0, limit: int = 500) -> int:
    """Push outbox rows that were committed but never queued; returns how many.

    Rows younger than ``min_age_seconds`` are left to their own after-commit push. Rows are
    locked with SKIP LOCKED, so several workers relay side by side without stepping on each
    other; arq's ``_job_id`` makes a row pushed by both the relay and its own push run once.
    """
    async with db.transaction():
        rows = await JobOutbox.raw(
            "SELECT id, function, args FROM job_outbox WHERE enqueued_at IS NULL "
            "AND dead_at IS NULL AND created_at <= now() - make_interval(secs => {}) "
            "ORDER BY created_at LIMIT {} FOR UPDATE SKIP LOCKED",
            float(min_age_seconds),
            int(limit),
        )
        if not rows:
            return 0
        for row in rows:
            await pool.enqueue_job(
                row["function"], *_decode_args(row["args"]), _job_id=str(row["id"])
            )
        await JobOutbox.raw(
            "UPDATE job_outbox SET enqueued_at = now() WHERE id = ANY({}::uuid[])",
            [row["id"] for row in rows],
        )
    log.info("relay queued %d outbox job(s) whose push was lost", len(rows))
    return len(rows)


def arq_pool_is_default() -> bool:
    """True when nothing was attached in this process (the worker may attach its pool)."""
    return _attached_url is None and _attached_pool is None

"""The arq worker: managed handlers (retries with backoff, dead letters, counters), the
outbox relay, recovery of jobs a killed worker held, cron jobs, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from arq import Retry
from arq.constants import default_queue_name, in_progress_key_prefix
from arq.cron import CronJob, cron
from arq.worker import Worker

from canal.platform import clock, db, invalidation
from canal.platform.jobs import outbox
from canal.platform.jobs.registry import JobFunction, job_name, raw_job_functions
from canal.platform.jobs.tables import JobOutbox
from canal.platform.runtime import Runtime

log = logging.getLogger("canal.jobs")

# Outcome counters the worker keeps in Redis, so the web process's /metrics can report them
# (the worker is another process, and Prometheus scrapes the web).
JOB_STATS_KEY = "canal:jobs:stats"
WORKER_KEY = "canal:jobs:worker:"
HEARTBEAT_TTL_SECONDS = 10
HOUSEKEEPING_SECONDS = 1.0
JOB_TIMEOUT_SECONDS = 300
KEEP_RESULT_SECONDS = 60
MAX_JOBS = 50


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff, capped, with jitter; after ``max_tries`` the job is dead."""

    max_tries: int = 8
    base_seconds: float = 5.0
    cap_seconds: float = 3600.0

    def delay(self, failed_try: int) -> float:
        raw = min(self.cap_seconds, self.base_seconds * 2 ** (failed_try - 1))
        # Jitter spreads a burst of failures (an SMTP outage) instead of retrying in lockstep.
        return raw * random.uniform(0.75, 1.0)  # noqa: S311 - not security relevant


DEFAULT_POLICY = RetryPolicy()
CRON_POLICY = RetryPolicy(max_tries=3, base_seconds=30.0)


@dataclass
class Books:
    """What the worker tallies in memory and writes out once a second (off the job path)."""

    outcomes: Counter[str] = field(default_factory=Counter)
    finished: list[str] = field(default_factory=list)

    def count(self, name: str, outcome: str) -> None:
        self.outcomes[f"{name}:{outcome}"] += 1

    async def flush(self, redis: Any) -> None:
        outcomes, self.outcomes = self.outcomes, Counter()
        finished, self.finished = self.finished, []
        if outcomes:
            async with redis.pipeline(transaction=False) as pipe:
                for key, value in outcomes.items():
                    pipe.hincrby(JOB_STATS_KEY, key, value)
                await pipe.execute()
        ids = [i for i in (_as_uuid(f) for f in finished) if i is not None]
        if ids:
            await JobOutbox.raw(
                "UPDATE job_outbox SET finished_at = now() "
                "WHERE id = ANY({}::uuid[]) AND finished_at IS NULL",
                ids,
            )


def _as_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "".join(lines)[-4000:]


async def _note_failure(job_id: str, error: str, tries: int) -> None:
    row_id = _as_uuid(job_id)
    if row_id is not None:
        await JobOutbox.raw(
            "UPDATE job_outbox SET attempts = {}, last_error = {} WHERE id = {}",
            tries,
            error,
            row_id,
        )


async def dead_letter(
    name: str, job_id: str, args: tuple[Any, ...], error: str, tries: int
) -> None:
    """Put a job on the dead-letter list (once per job id) and mark its outbox row dead."""
    import msgspec

    encoded = msgspec.json.encode(list(args), enc_hook=str).decode()
    async with db.transaction():
        await JobOutbox.raw(
            "INSERT INTO dead_jobs (id, job_id, function, args, error, tries, failed_at) "
            "VALUES ({}, {}, {}, {}::jsonb, {}, {}, now()) ON CONFLICT (job_id) DO NOTHING",
            uuid.uuid4(),
            job_id[:64],
            name,
            encoded,
            error,
            tries,
        )
        row_id = _as_uuid(job_id)
        if row_id is not None:
            await JobOutbox.raw(
                "UPDATE job_outbox SET dead_at = now(), attempts = {}, last_error = {} "
                "WHERE id = {}",
                tries,
                error,
                row_id,
            )
    log.error("job %s (%s) is dead after %d tries", job_id, name, tries)


def managed(
    function: JobFunction, *, name: str | None = None, policy: RetryPolicy | None = None
) -> JobFunction:
    """Wrap a handler: count outcomes, retry failures with backoff, dead-letter the last."""
    job = name or job_name(function)

    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        books: Books = ctx["canal_books"]
        rules: RetryPolicy = policy or ctx.get("retry_policy", DEFAULT_POLICY)
        tries = int(ctx.get("job_try", 1))
        job_id = str(ctx.get("job_id", ""))
        if tries > rules.max_tries:  # killed mid-run (or retried by hand) too often
            await dead_letter(job, job_id, args, "the job did not finish in any try", tries - 1)
            books.count(job, "dead")
            return None
        try:
            result = await function(ctx, *args, **kwargs)
        except Retry:  # the handler asked for a retry itself
            books.count(job, "retried")
            raise
        except Exception as exc:
            books.count(job, "failed")
            error = _describe(exc)
            if tries < rules.max_tries:
                await _note_failure(job_id, error, tries)
                books.count(job, "retried")
                raise Retry(defer=rules.delay(tries)) from exc
            await dead_letter(job, job_id, args, error, tries)
            books.count(job, "dead")
            raise
        books.count(job, "ok")
        books.finished.append(job_id)
        return result

    functools.update_wrapper(run, function)
    run.__qualname__ = job
    return run


def job_functions() -> list[JobFunction]:
    return [managed(f) for f in raw_job_functions()]


def cron_jobs() -> list[CronJob]:
    from canal.platform.billing.jobs import reconcile_subscriptions
    from canal.platform.jobs.builtin import cleanup_expired

    name = "cron:cleanup_expired"
    reconcile = "cron:reconcile_subscriptions"
    return [
        cron(
            managed(cleanup_expired, name=name, policy=CRON_POLICY),  # type: ignore[arg-type]
            name=name,
            hour={3},
            minute={17},
            timeout=600,
            max_tries=CRON_POLICY.max_tries + 1,
        ),
        # Stripe is the source of truth for paid plans: repair any drift every hour.
        cron(
            managed(reconcile_subscriptions, name=reconcile, policy=CRON_POLICY),  # type: ignore[arg-type]
            name=reconcile,
            minute={7},
            timeout=600,
            max_tries=CRON_POLICY.max_tries + 1,
        ),
        *_module_cron_jobs(),
    ]


def _module_cron_jobs() -> list[CronJob]:
    from canal.exchange.bank.jobs import CRON as bank_cron  # the data bank is not a module
    from canal.platform.modules import registry

    jobs = []
    scheduled_jobs = [(module.key, s) for module in registry().values() for s in module.cron]
    for key, scheduled in [*scheduled_jobs, *(("bank", s) for s in bank_cron)]:
        name = f"cron:{key}:{job_name(scheduled.function)}"
        jobs.append(
            cron(
                managed(scheduled.function, name=name, policy=CRON_POLICY),  # type: ignore[arg-type]
                name=name,
                minute=scheduled.minute,
                hour=scheduled.hour,
                weekday=scheduled.weekday,
                timeout=scheduled.timeout,
                max_tries=CRON_POLICY.max_tries + 1,
            )
        )
    return jobs


# --- recovering jobs a killed worker held ---------------------------------------------------

# Delete an in-progress marker only if the dead worker still owns it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def reap_lost_jobs(redis: Any, me: str, queue: str = default_queue_name) -> int:
    """Free the jobs of workers whose heartbeat stopped, so another worker runs them now.

    arq marks a started job "in progress" for its timeout plus 10 s; a worker killed with
    SIGKILL would leave its jobs stuck that long. Each worker writes its id into the marker
    when a job starts and refreshes a heartbeat key; a marker whose owner has no heartbeat
    belongs to a dead worker and is released (the job keeps its place in the queue).
    """

    ids = await redis.zrangebyscore(
        queue, "-inf", int(clock.wall_timestamp() * 1000), start=0, num=5000
    )
    if not ids:
        return 0
    keys = [in_progress_key_prefix + (i.decode() if isinstance(i, bytes) else i) for i in ids]
    owners = await redis.mget(keys)
    candidates = {o for o in owners if o and o.startswith(b"w:") and o != me.encode()}
    if not candidates:
        return 0
    ordered = sorted(candidates)
    async with redis.pipeline(transaction=False) as pipe:
        for owner in ordered:
            pipe.exists(WORKER_KEY + owner.decode())
        alive = await pipe.execute()
    dead = {owner for owner, up in zip(ordered, alive, strict=True) if not up}
    released = 0
    for key, owner in zip(keys, owners, strict=True):
        if owner in dead:
            released += int(await redis.eval(_RELEASE, 1, key, owner))
    if released:
        log.warning("released %d job(s) held by stopped worker(s) %s", released, sorted(dead))
    return released


# --- the worker -----------------------------------------------------------------------------


async def _housekeeping(ctx: dict[str, Any]) -> None:
    redis = ctx["redis"]
    me = ctx["worker_id"]
    while True:
        try:
            await redis.set(WORKER_KEY + me, "1", ex=HEARTBEAT_TTL_SECONDS)
            await ctx["canal_books"].flush(redis)
            await outbox.relay_once(redis)
            await reap_lost_jobs(redis, me)
        except asyncio.CancelledError:
            raise
        except Exception:  # a database or Redis hiccup; try again next round
            log.exception("job housekeeping failed")
        await asyncio.sleep(HOUSEKEEPING_SECONDS)


def make_worker(
    runtime: Runtime,
    *,
    burst: bool = False,
    policy: RetryPolicy = DEFAULT_POLICY,
    housekeeping: bool | None = None,
) -> Worker:
    """The arq worker. ``burst`` (tests, one-off runs) relays the outbox once, runs what is
    queued and stops; ``housekeeping`` (default: not burst) runs the relay/heartbeat loop."""
    loop_on = (not burst) if housekeeping is None else housekeeping
    worker_id = f"w:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def startup(ctx: dict[str, Any]) -> None:
        # In its own process the worker opens the pool; run inside a process that already
        # has one (the tests, a one-off command) it borrows it and leaves it open.
        ctx["owns_pool"] = db.engine().pool is None
        if ctx["owns_pool"]:
            await db.start_pool(runtime.app_dsn, min_size=1, max_size=10)
        from canal.platform.runtime import open_services

        # Search indexing needs the search service; module jobs may read or write files.
        ctx["owns_services"] = ctx["owns_pool"]
        if ctx["owns_services"]:
            await open_services(runtime)
        ctx.update(
            runtime=runtime,
            settings=runtime.settings,
            retry_policy=policy,
            canal_books=Books(),
            worker_id=worker_id,
        )
        # Jobs that enqueue jobs push through this worker's connection after commit.
        ctx["attached"] = outbox.arq_pool_is_default()
        if ctx["attached"]:
            outbox.attach(pool=ctx["redis"])
        # A job that changes a role, an organisation or a session tells the web processes, as
        # a page would (inside the app's own process the app's publisher is already there).
        ctx["publishes"] = not invalidation.attached()
        if ctx["publishes"]:
            redis = ctx["redis"]

            async def publish(message: str) -> None:
                await redis.publish(invalidation.CHANNEL, message)

            invalidation.attach(publish)
        await ctx["redis"].set(WORKER_KEY + worker_id, "1", ex=HEARTBEAT_TTL_SECONDS)
        await outbox.relay_once(ctx["redis"], min_age_seconds=0 if burst else 5)
        if loop_on:
            ctx["housekeeping"] = asyncio.create_task(_housekeeping(ctx))

    async def on_job_start(ctx: dict[str, Any]) -> None:
        # Sign the in-progress marker arq just set, so a survivor can release it if we die.
        await ctx["redis"].set(
            in_progress_key_prefix + str(ctx["job_id"]), worker_id, xx=True, keepttl=True
        )

    async def shutdown(ctx: dict[str, Any]) -> None:
        task = ctx.get("housekeeping")
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await ctx["canal_books"].flush(ctx["redis"])
            await ctx["redis"].delete(WORKER_KEY + worker_id)
        if ctx.get("attached"):
            outbox.attach(None)
        if ctx.get("publishes"):
            invalidation.attach(None)
        if ctx.get("owns_services"):
            from canal.platform.runtime import close_services

            close_services()
        if ctx.get("owns_pool"):
            await db.close_pool()

    return Worker(
        functions=job_functions(),  # type: ignore[arg-type]
        cron_jobs=cron_jobs(),
        redis_settings=outbox.redis_settings(runtime.redis_url),
        on_startup=startup,
        on_shutdown=shutdown,
        on_job_start=on_job_start,
        burst=burst,
        # One more than the policy: the managed wrapper dead-letters, arq never drops a job.
        max_tries=policy.max_tries + 1,
        max_jobs=MAX_JOBS,
        job_timeout=JOB_TIMEOUT_SECONDS,
        keep_result=KEEP_RESULT_SECONDS,
        poll_delay=0.2,
        handle_signals=not burst,
        # SIGTERM: stop taking jobs, let running ones finish (up to 20 s), then stop.
        job_completion_wait=20,
        health_check_interval=30,
    )


def run_worker(runtime: Runtime) -> None:
    from canal.platform.http.middleware import configure_logging

    configure_logging(runtime.settings.log_json)
    worker = make_worker(runtime)
    worker.run()

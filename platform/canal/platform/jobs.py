"""Background jobs on arq: the worker, the job list, and enqueueing.

Platform jobs live here; modules add theirs through ``ModuleSpec.jobs``. Every handler is
idempotent — arq may run a job twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import smtplib
import uuid
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job
from arq.worker import Worker

from canal.platform import db
from canal.platform.runtime import Runtime
from canal.platform.settings import get_settings

log = logging.getLogger("canal.jobs")


async def deliver_message(ctx: dict[str, Any], message_id: str) -> str:
    """Send one outbox message (mail over SMTP, or the outbox log) exactly once.

    The row is claimed and the message sent inside one transaction: a concurrent duplicate of
    this job waits on the row lock and then finds it sent; a failed send rolls the claim back
    so arq's retry tries again.
    """
    from canal.platform.identity.tables import OutboxMessage

    async with db.transaction():
        claimed = (
            await OutboxMessage.update({OutboxMessage.sent_at: dt.datetime.now(dt.UTC)})
            .where((OutboxMessage.id == uuid.UUID(message_id)) & OutboxMessage.sent_at.is_null())
            .returning(
                OutboxMessage.channel,
                OutboxMessage.recipient,
                OutboxMessage.subject,
                OutboxMessage.body,
            )
        )
        if not claimed:
            return "skipped"
        await _send(claimed[0])
    return "sent"


async def _send(row: dict[str, Any]) -> None:
    settings = get_settings()
    if row["channel"] == "email" and settings.smtp_host:
        mail = EmailMessage()
        mail["From"] = settings.mail_from
        mail["To"] = row["recipient"]
        mail["Subject"] = row["subject"]
        mail.set_content(row["body"])

        def send() -> None:
            with smtplib.SMTP(settings.smtp_host or "", settings.smtp_port, timeout=10) as smtp:
                smtp.send_message(mail)

        await asyncio.to_thread(send)
        return
    outbox = settings.var_dir / "outbox.log"
    outbox.parent.mkdir(parents=True, exist_ok=True)
    with outbox.open("a", encoding="utf-8") as handle:
        handle.write(
            f"--- {row['channel']} to {row['recipient']}: {row['subject']}\n{row['body']}\n"
        )


# Outcome counters the worker keeps in Redis, so the web process's /metrics can report them
# (the worker is another process, and Prometheus scrapes the web).
JOB_STATS_KEY = "canal:jobs:stats"


def _counted(function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(function)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        redis = ctx["redis"]
        try:
            result = await function(ctx, *args, **kwargs)
        except Exception:
            await redis.hincrby(JOB_STATS_KEY, f"{function.__name__}:failed", 1)
            raise
        await redis.hincrby(JOB_STATS_KEY, f"{function.__name__}:ok", 1)
        return result

    return run


def job_functions() -> list[Any]:
    from canal.platform.modules import registry

    functions: list[Any] = [deliver_message]
    for module in registry().values():
        functions.extend(module.jobs)
    return [_counted(f) for f in functions]


async def job_metrics(redis: Any) -> str:
    """Prometheus text for the jobs: outcomes so far and the queue's depth."""
    from arq.constants import default_queue_name

    stats = await redis.hgetall(JOB_STATS_KEY)
    queued = await redis.zcard(default_queue_name)
    lines = [
        "# HELP canal_jobs_total Background jobs finished, by function and outcome.",
        "# TYPE canal_jobs_total counter",
    ]
    for key, value in sorted(stats.items()):
        name, _, outcome = key.decode().rpartition(":")
        lines.append(f'canal_jobs_total{{function="{name}",outcome="{outcome}"}} {int(value)}')
    lines += [
        "# HELP canal_jobs_queued Jobs waiting in the queue.",
        "# TYPE canal_jobs_queued gauge",
        f"canal_jobs_queued {int(queued)}",
    ]
    return "\n".join(lines) + "\n"


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


_pool: ArqRedis | None = None


async def enqueue(runtime_redis_url: str, function: str, *args: Any) -> Job | None:
    global _pool
    if _pool is None:
        _pool = await create_pool(redis_settings(runtime_redis_url))
    return await _pool.enqueue_job(function, *args)


def make_worker(runtime: Runtime, *, burst: bool = False) -> Worker:
    async def startup(ctx: dict[str, Any]) -> None:
        # In its own process the worker opens the pool; run inside a process that already
        # has one (the tests, a one-off command) it borrows it and leaves it open.
        ctx["owns_pool"] = db.engine().pool is None
        if ctx["owns_pool"]:
            await db.start_pool(runtime.app_dsn, min_size=1, max_size=5)

    async def shutdown(ctx: dict[str, Any]) -> None:
        if ctx.get("owns_pool"):
            await db.close_pool()

    return Worker(
        functions=job_functions(),
        redis_settings=redis_settings(runtime.redis_url),
        on_startup=startup,
        on_shutdown=shutdown,
        burst=burst,
        max_tries=5,
        handle_signals=not burst,
    )


def run_worker(runtime: Runtime) -> None:
    from canal.platform.http.middleware import configure_logging

    configure_logging(runtime.settings.log_json)
    worker = make_worker(runtime)
    worker.run()

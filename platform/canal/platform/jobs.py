"""Background jobs on arq: the worker, the job list, and enqueueing.

Platform jobs live here; modules add theirs through ``ModuleSpec.jobs``. Every handler is
idempotent — arq may run a job twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import smtplib
import uuid
from email.message import EmailMessage
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker
from canal.platform import db
from canal.platform.runtime import Runtime
from canal.platform.settings import get_settings

log = logging.getLogger("canal.jobs")


async def deliver_message(ctx: dict[str, Any], message_id: str) -> str:
    """Send one outbox message (mail over SMTP, or the outbox log); skips if already sent."""
    from canal.platform.identity.tables import OutboxMessage

    row = await OutboxMessage.select().where(OutboxMessage.id == uuid.UUID(message_id)).first()
    if row is None or row["sent_at"] is not None:
        return "skipped"
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
    else:
        outbox = settings.var_dir / "outbox.log"
        outbox.parent.mkdir(parents=True, exist_ok=True)
        with outbox.open("a", encoding="utf-8") as handle:
            handle.write(
                f"--- {row['channel']} to {row['recipient']}: {row['subject']}\n{row['body']}\n"
            )
    await OutboxMessage.update({OutboxMessage.sent_at: dt.datetime.now(dt.UTC)}).where(
        OutboxMessage.id == row["id"]
    )
    return "sent"


def job_functions() -> list[Any]:
    from canal.platform.modules import registry

    functions: list[Any] = [deliver_message]
    for module in registry().values():
        functions.extend(module.jobs)
    return functions


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


_pool: ArqRedis | None = None


async def enqueue(runtime_redis_url: str, function: str, *args: Any) -> None:
    global _pool
    if _pool is None:
        _pool = await create_pool(redis_settings(runtime_redis_url))
    await _pool.enqueue_job(function, *args)


def make_worker(runtime: Runtime, *, burst: bool = False) -> Worker:
    async def startup(ctx: dict[str, Any]) -> None:
        await db.start_pool(runtime.app_dsn, min_size=1, max_size=5)

    async def shutdown(ctx: dict[str, Any]) -> None:
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

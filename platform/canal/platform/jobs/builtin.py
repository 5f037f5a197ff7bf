"""The platform's own jobs: the probe (an end-to-end check that records its run exactly
once), a no-op (queue throughput), and the nightly clean-up of expired rows."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from canal.platform import clock, db
from canal.platform.jobs.tables import JobOutbox, JobProbe

log = logging.getLogger("canal.jobs")


def _outbox_id(ctx: dict[str, Any]) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(ctx.get("job_id", "")))
    except ValueError:
        return None


async def claim_once(ctx: dict[str, Any]) -> bool:
    """Inside the handler's transaction: claim this job's outbox row; False if done before.

    Put the job's database effects in the same transaction and they happen exactly once: a
    crash rolls the claim back with them, and a second run of a finished job finds the row
    claimed. A job that did not come through the outbox has nothing to claim (True).
    """
    row_id = _outbox_id(ctx)
    if row_id is None:
        return True
    claimed = await JobOutbox.raw(
        "UPDATE job_outbox SET finished_at = now() WHERE id = {} AND finished_at IS NULL "
        "RETURNING id",
        row_id,
    )
    if claimed:
        return True
    return not await JobOutbox.exists().where(JobOutbox.id == row_id)


async def probe(ctx: dict[str, Any], probe_key: str, work_ms: int = 0) -> str:
    """Record one run of ``probe_key`` — once, however often the job is run or interrupted."""
    async with db.transaction():
        if not await claim_once(ctx):
            return "skipped"
        if work_ms:
            await asyncio.sleep(work_ms / 1000)  # "work" inside the transaction: a kill undoes it
        await JobProbe.insert(JobProbe(probe_key=probe_key[:100]))
    return "done"


async def noop(ctx: dict[str, Any]) -> None:
    """Does nothing: measures the queue itself."""


# $1 is the clock's now (canal.platform.clock), not the database's: the tests move the clock.
CLEANUP_SQL = (
    # Sessions: expired a day ago, or signed out a month ago.
    "DELETE FROM user_sessions WHERE expires_at < $1 - interval '1 day' "
    "OR revoked_at < $1 - interval '30 days'",
    # Password-reset links: expired or used a day ago.
    "DELETE FROM password_resets WHERE expires_at < $1 - interval '1 day' "
    "OR used_at < $1 - interval '1 day'",
    # Invitations nobody accepted: a month after they expired or were revoked.
    "DELETE FROM invitations WHERE accepted_at IS NULL AND (expires_at < $1 - interval "
    "'30 days' OR revoked_at < $1 - interval '30 days')",
    # Finished outbox rows and probe runs after a week; dead rows stay until re-run + a month.
    "DELETE FROM job_outbox WHERE finished_at < $1 - interval '7 days'",
    "DELETE FROM job_probes WHERE ran_at < $1 - interval '7 days'",
    "DELETE FROM dead_jobs WHERE rerun_at < $1 - interval '30 days'",
)


async def cleanup_expired(ctx: dict[str, Any]) -> dict[str, int]:
    """Nightly: delete expired sessions, reset links, stale invitations and old job rows."""
    deleted: dict[str, int] = {}
    # Invitations are tenant-owned (row-level security): the sweep is a platform action.
    async with db.platform_scope():
        connection = db.engine().current_transaction.get().connection  # type: ignore[union-attr]
        moment = clock.now()
        for statement in CLEANUP_SQL:
            status = await connection.execute(statement, moment)
            table = statement.split()[2]
            deleted[table] = deleted.get(table, 0) + int(status.rsplit(" ", 1)[-1])
    log.info("clean-up deleted %s", deleted)
    return deleted

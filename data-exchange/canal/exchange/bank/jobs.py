"""The data bank's background work: retrieving archived files, scheduled folder backups and
the nightly purge of old recycle-bin items.

The data bank is not a module (every organisation and verified resident has one), so these
are registered with the platform's job registry and the worker's cron list directly.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from canal.platform import db
from canal.platform.jobs.builtin import claim_once
from canal.platform.jobs.outbox import enqueue_after_commit
from canal.platform.jobs.registry import JobFunction
from canal.platform.modules import ScheduledJob

from . import services

log = logging.getLogger("canal.bank")


async def bank_retrieve(ctx: dict[str, Any], tenant_id: str, file_id: str, user_id: str) -> int:
    """Copy an archived file's versions back from the cold class (idempotent: a version that
    is already back is skipped)."""
    tenant = await services.tenant_ctx(uuid.UUID(tenant_id), uuid.UUID(user_id))
    return await services.finish_retrieval(tenant, uuid.UUID(file_id))


async def bank_backup_folder(ctx: dict[str, Any], tenant_id: str, folder_id: str) -> str:
    """One scheduled backup of one folder; skipped if it is no longer due (a second run)."""
    tid, fid = uuid.UUID(tenant_id), uuid.UUID(folder_id)
    if (tid, fid) not in set(await services.due_backups()):
        return "not due"
    actor = await services.folder_backup_actor(tid, fid)
    if actor is None:
        return "gone"
    await services.run_backup(await services.tenant_ctx(tid, actor), fid, trigger="schedule")
    return "done"


async def bank_due_backups(ctx: dict[str, Any]) -> int:
    """Hourly: a backup job for every folder whose schedule is due (one per folder and hour)."""
    due = await services.due_backups()
    async with db.transaction():
        if not await claim_once(ctx):
            return 0
        for tenant_id, folder_id in due:
            await enqueue_after_commit(
                "bank_backup_folder",
                str(tenant_id),
                str(folder_id),
                key=f"bank-backup:{folder_id}:{services._now():%Y%m%d%H}",
            )
    return len(due)


async def bank_purge_trash(ctx: dict[str, Any]) -> int:
    """Nightly: empty what has been in any recycle bin for longer than the retention."""
    purged = await services.purge_expired()
    if purged:
        log.info("purged %d files from recycle bins", purged)
    return purged


async def bank_drop_stale_uploads(ctx: dict[str, Any]) -> int:
    """Hourly: resumable uploads nobody finished within ``UPLOAD_TTL`` lose their record and
    staged parts. (Their reservation already stopped counting at the deadline; this frees
    the staging area, so abandoned parts wait at most an hour past it.) Idempotent: a
    second run finds nothing."""
    dropped = await services.drop_stale_uploads()
    if dropped:
        log.info("dropped %d abandoned resumable uploads", dropped)
    return dropped


JOBS: list[JobFunction] = [
    bank_retrieve,
    bank_backup_folder,
    bank_due_backups,
    bank_purge_trash,
    bank_drop_stale_uploads,
]
CRON = [
    ScheduledJob(bank_due_backups, minute={23}),
    ScheduledJob(bank_purge_trash, hour={3}, minute={41}),
    ScheduledJob(bank_drop_stale_uploads, minute={53}),
]

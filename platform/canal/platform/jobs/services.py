"""The operator's view of the jobs: queue figures, the dead-letter list, re-running a job."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from canal.platform import clock, db
from canal.platform.audit.services import record
from canal.platform.http.errors import CanalError, not_found
from canal.platform.jobs.outbox import _decode_args, enqueue_after_commit
from canal.platform.jobs.tables import DeadJob, JobOutbox


@dataclass(frozen=True)
class DeadJobView:
    id: uuid.UUID
    job_id: str
    function: str
    args: list[Any]
    error: str
    tries: int
    failed_at: dt.datetime
    rerun_at: dt.datetime | None
    rerun_job: uuid.UUID | None

    @property
    def error_summary(self) -> str:
        lines = [line for line in self.error.strip().splitlines() if line.strip()]
        return lines[-1][:300] if lines else ""


@dataclass(frozen=True)
class JobsOverview:
    waiting_for_push: int  # committed outbox rows not yet in the queue
    queued: int  # jobs in arq's queue (ready, deferred or running)
    dead: int  # dead jobs not re-run
    outcomes: dict[str, dict[str, int]]  # function -> outcome -> count
    dead_jobs: list[DeadJobView]


def _dead_view(row: dict[str, Any]) -> DeadJobView:
    return DeadJobView(
        id=row["id"],
        job_id=row["job_id"],
        function=row["function"],
        args=_decode_args(row["args"]),
        error=row["error"],
        tries=row["tries"],
        failed_at=row["failed_at"],
        rerun_at=row["rerun_at"],
        rerun_job=row["rerun_job"],
    )


async def overview(redis: Any, *, limit: int = 100) -> JobsOverview:
    """Call only after a platform-role check (the controller's guard does it)."""
    from arq.constants import default_queue_name

    from canal.platform.jobs.worker import JOB_STATS_KEY

    async with db.transaction():
        waiting = await JobOutbox.count().where(
            JobOutbox.enqueued_at.is_null() & JobOutbox.dead_at.is_null()
        )
        dead = await DeadJob.count().where(DeadJob.rerun_at.is_null())
        rows = await DeadJob.select().order_by(DeadJob.failed_at, ascending=False).limit(limit)
    outcomes: dict[str, dict[str, int]] = {}
    for key, value in (await redis.hgetall(JOB_STATS_KEY)).items():
        name, _, outcome = key.decode().rpartition(":")
        outcomes.setdefault(name, {})[outcome] = int(value)
    return JobsOverview(
        waiting_for_push=int(waiting),
        queued=int(await redis.zcard(default_queue_name)),
        dead=int(dead),
        outcomes=dict(sorted(outcomes.items())),
        dead_jobs=[_dead_view(r) for r in rows],
    )


def already_rerun() -> CanalError:
    return CanalError(
        "job_already_rerun",
        "该任务已重新运行过;如再次失败,会作为新的失败任务出现在列表中。",
        "This job was already run again; if it fails again it appears as a new dead job.",
        status=409,
    )


async def rerun_dead_job(dead_job_id: uuid.UUID, actor_id: uuid.UUID, *, ip: str = "") -> uuid.UUID:
    """Run a dead job again through the outbox (a fresh job with fresh tries); once per dead
    job. Returns the new outbox row id."""
    async with db.transaction():
        row = await DeadJob.raw("SELECT * FROM dead_jobs WHERE id = {} FOR UPDATE", dead_job_id)
        if not row:
            raise not_found()
        dead = row[0]
        if dead["rerun_at"] is not None:
            raise already_rerun()
        new_id = await enqueue_after_commit(
            dead["function"], *_decode_args(dead["args"]), key=f"rerun:{dead_job_id}"
        )
        if new_id is None:  # pragma: no cover - the row lock makes this unreachable
            raise already_rerun()
        await DeadJob.update(
            {
                DeadJob.rerun_at: clock.now(),
                DeadJob.rerun_by: actor_id,
                DeadJob.rerun_job: new_id,
            }
        ).where(DeadJob.id == dead_job_id)
        await record(
            "jobs.rerun",
            actor_id=actor_id,
            target=str(dead_job_id),
            ip=ip,
            data={"function": dead["function"], "job": str(new_id)},
        )
    return new_id

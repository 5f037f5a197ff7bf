"""Background jobs on arq: the transactional outbox, the worker, and the job list.

``enqueue_after_commit(function, *args, key=...)`` is how code asks for a job: a row in the
caller's transaction, pushed to arq after commit, relayed by the worker if the push was lost.
Platform jobs live here and in ``notifications``; modules add theirs through
``ModuleSpec.jobs``. Every handler is idempotent — arq may run a job twice. See docs/jobs.md.
"""

from __future__ import annotations

from typing import Any

from arq.jobs import Job

from canal.platform.jobs.builtin import claim_once
from canal.platform.jobs.outbox import (
    arq_pool,
    attach,
    detach,
    enqueue_after_commit,
    redis_settings,
)
from canal.platform.jobs.registry import register_job
from canal.platform.jobs.worker import (
    JOB_STATS_KEY,
    RetryPolicy,
    job_functions,
    make_worker,
    run_worker,
)
from canal.platform.notifications.delivery import deliver_message

__all__ = [
    "JOB_STATS_KEY",
    "RetryPolicy",
    "arq_pool",
    "attach",
    "claim_once",
    "deliver_message",
    "detach",
    "enqueue",
    "enqueue_after_commit",
    "job_functions",
    "job_metrics",
    "make_worker",
    "redis_settings",
    "register_job",
    "run_worker",
]


async def enqueue(redis_url: str, function: str, *args: Any) -> Job | None:
    """Queue a job directly, outside any transaction (no outbox row: lost if Redis is down).

    Prefer ``enqueue_after_commit``; this is for work with no database change behind it.
    """
    pool = await arq_pool(redis_url)
    assert pool is not None
    return await pool.enqueue_job(function, *args)


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

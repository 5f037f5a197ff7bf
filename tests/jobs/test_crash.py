"""SIGKILL the worker in the middle of a batch: after a restart every job has run, and no
job's effect happened twice. The worker is the real command (``canal worker``) in its own
process; the jobs are the platform's probe, whose effect is a row written exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from canal.platform.jobs import enqueue_after_commit
from canal.platform.jobs.tables import JobOutbox, JobProbe
from tests.factories import unique

# a real worker process, killed and restarted
pytestmark = pytest.mark.slow

JOBS = 60
WORK_MS = 300


def _start_worker(settings, runtime, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        CANAL_DATABASE_NAME=settings.database_name,
        CANAL_REDIS_URL=runtime.redis_url,
        CANAL_LOG_JSON="0",
        XDG_RUNTIME_DIR=env.get("XDG_RUNTIME_DIR", "/tmp"),  # noqa: S108
    )
    handle = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "canal.platform.cli", "worker"],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )


async def _runs(batch: str) -> tuple[int, int]:
    rows = await JobProbe.select(JobProbe.probe_key).where(JobProbe.probe_key.like(f"{batch}-%"))
    keys = [r["probe_key"] for r in rows]
    return len(keys), len(set(keys))


async def _wait_for(batch: str, at_least: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        total, _ = await _runs(batch)
        if total >= at_least:
            return total
        await asyncio.sleep(0.05)
    return (await _runs(batch))[0]


async def test_sigkill_mid_batch_loses_nothing_and_repeats_nothing(
    runtime, app, settings, tmp_path
):
    batch = unique("crash-")
    ids = [await enqueue_after_commit("probe", f"{batch}-{i}", WORK_MS) for i in range(JOBS)]
    log = tmp_path / "worker.log"
    first = _start_worker(settings, runtime, log)
    try:
        done_before_kill = await _wait_for(batch, 8, seconds=60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)

    # The survivor runs whatever happened above: a failed assertion must not leave the batch in
    # the queue held by a dead worker (the next tests' workers would wait on it).
    second = _start_worker(settings, runtime, log)
    try:
        # Jobs the dead worker held are freed once its heartbeat lapses (~10 s).
        total = await _wait_for(batch, JOBS, seconds=90)
    finally:
        second.send_signal(signal.SIGTERM)  # graceful: finishes what it runs, then exits
        code = second.wait(timeout=40)
    output = log.read_text(errors="replace")
    assert 0 < done_before_kill < JOBS, "the kill must land in the middle of the batch"
    assert total == JOBS, output[-3000:]
    runs, distinct = await _runs(batch)
    assert runs == distinct == JOBS  # every job ran, none twice
    assert code == 0, output[-3000:]
    # The jobs the killed worker was running were released by the survivor, not by timeout.
    assert "held by stopped worker" in output, output[-3000:]
    finished = await JobOutbox.count().where(
        JobOutbox.id.is_in(ids) & JobOutbox.finished_at.is_not_null()
    )
    assert finished == JOBS

"""The transactional outbox: a job exists exactly when its transaction committed, is pushed
once however often it is pushed, and the relay recovers a push that never happened."""

from __future__ import annotations

import uuid

import pytest
from arq.constants import job_key_prefix

from canal.platform import db
from canal.platform.jobs import RetryPolicy, enqueue_after_commit
from canal.platform.jobs.outbox import arq_pool, relay_once
from canal.platform.jobs.tables import JobOutbox, JobProbe
from tests.factories import unique
from tests.jobs.helpers import drain

FAST = RetryPolicy(max_tries=3, base_seconds=0.01, cap_seconds=0.05)


async def _probe_runs(key: str) -> int:
    return await JobProbe.count().where(JobProbe.probe_key == key)


async def _row(row_id: uuid.UUID) -> dict:
    row = await JobOutbox.select().where(JobOutbox.id == row_id).first()
    assert row is not None
    return row


async def test_job_is_pushed_after_commit_and_runs(runtime, app):
    key = unique("probe-")
    pool = await arq_pool()
    async with db.transaction():
        row_id = await enqueue_after_commit("probe", key)
        assert row_id is not None
        # Not in Redis while the transaction is open: a rollback must leave no job behind.
        assert not await pool.exists(job_key_prefix + str(row_id))
    assert await pool.exists(job_key_prefix + str(row_id))  # pushed after commit
    assert (await _row(row_id))["enqueued_at"] is not None
    await drain(runtime, policy=FAST)
    assert await _probe_runs(key) == 1
    assert (await _row(row_id))["finished_at"] is not None


async def test_rolled_back_change_has_no_job(runtime, app):
    key = unique("probe-")
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await enqueue_after_commit("probe", key, key=f"rollback:{key}")
            raise RuntimeError("the change failed")
    assert not await JobOutbox.exists().where(JobOutbox.dedup_key == f"rollback:{key}")
    await drain(runtime, policy=FAST)
    assert await _probe_runs(key) == 0


async def test_duplicate_enqueues_of_one_key_run_once(runtime, app):
    key = unique("probe-")
    first = await enqueue_after_commit("probe", key, key=f"probe:{key}")
    async with db.transaction():
        second = await enqueue_after_commit("probe", key, key=f"probe:{key}")
    assert first is not None and second is None
    # The same row pushed again (a relay racing the after-commit push) is queued once.
    pool = await arq_pool()
    assert await pool.enqueue_job("probe", key, _job_id=str(first)) is None
    await drain(runtime, policy=FAST)
    assert await _probe_runs(key) == 1


async def test_relay_pushes_a_row_whose_push_was_lost(runtime, app):
    key = unique("probe-")
    # A row committed by a process that died before its after-commit push.
    row_id = uuid.uuid4()
    async with db.transaction():
        await JobOutbox.insert(JobOutbox(id=row_id, function="probe", args=[key]))
    pool = await arq_pool()
    assert not await pool.exists(job_key_prefix + str(row_id))
    assert await relay_once(pool, min_age_seconds=0) >= 1
    assert await pool.exists(job_key_prefix + str(row_id))
    assert (await _row(row_id))["enqueued_at"] is not None
    assert await relay_once(pool, min_age_seconds=0) == 0  # nothing left to relay
    await drain(runtime, policy=FAST)
    assert await _probe_runs(key) == 1


async def test_a_finished_job_run_again_changes_nothing(runtime, app):
    from canal.platform.jobs.builtin import probe

    key = unique("probe-")
    row_id = await enqueue_after_commit("probe", key)
    await drain(runtime, policy=FAST)
    # arq may run a job twice (a worker lost after the commit): the claim makes it a no-op.
    assert await probe({"job_id": str(row_id)}, key) == "skipped"
    assert await _probe_runs(key) == 1


async def test_unknown_job_name_is_refused_at_enqueue(app):
    with pytest.raises(ValueError, match="no job function"):
        await enqueue_after_commit("no_such_job")


def test_backoff_grows_and_is_capped():
    policy = RetryPolicy(max_tries=10, base_seconds=2, cap_seconds=60)
    delays = [policy.delay(n) for n in range(1, 10)]
    assert 1.5 <= delays[0] <= 2 and 3 <= delays[1] <= 4 and 6 <= delays[2] <= 8
    assert max(delays) <= 60 and delays[-1] >= 45

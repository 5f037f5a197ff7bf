"""Retries with backoff, the dead-letter list, and re-running from the operator page."""

from __future__ import annotations

from typing import Any

from canal.platform.jobs import JOB_STATS_KEY, RetryPolicy, enqueue_after_commit, register_job
from canal.platform.jobs.tables import DeadJob, JobOutbox, JobProbe
from tests.factories import csrf_from, sign_in, unique
from tests.jobs.helpers import drain

FAST = RetryPolicy(max_tries=3, base_seconds=0.01, cap_seconds=0.05)
BROKEN: set[str] = set()  # keys whose job fails until the "fix" removes them
TRIES: dict[str, int] = {}


@register_job
async def flaky_test_job(ctx: dict[str, Any], key: str) -> str:
    """Test-only: fails while its key is BROKEN, records one probe row once it works."""
    TRIES[key] = TRIES.get(key, 0) + 1
    if key in BROKEN:
        raise ConnectionError(f"the remote service for {key} is down")
    from canal.platform import db
    from canal.platform.jobs import claim_once

    async with db.transaction():
        if await claim_once(ctx):
            await JobProbe.insert(JobProbe(probe_key=key))
    return "done"


async def test_retries_then_succeeds(runtime, app):
    key = unique("flaky-")
    BROKEN.add(key)
    row_id = await enqueue_after_commit("flaky_test_job", key)

    from canal.platform.jobs import worker as worker_module

    # Heal the service after the second try: the third succeeds.
    original = worker_module._note_failure

    async def heal_after_two(job_id: str, error: str, tries: int) -> None:
        await original(job_id, error, tries)
        if tries >= 2:
            BROKEN.discard(key)

    worker_module._note_failure = heal_after_two
    try:
        await drain(runtime, policy=FAST)
    finally:
        worker_module._note_failure = original
    assert TRIES[key] == 3
    row = await JobOutbox.select().where(JobOutbox.id == row_id).first()
    assert row["attempts"] == 2 and "remote service" in row["last_error"]
    assert row["dead_at"] is None
    assert await JobProbe.count().where(JobProbe.probe_key == key) == 1
    assert not await DeadJob.exists().where(DeadJob.job_id == str(row_id))


async def test_exhausted_job_is_dead_and_the_operator_reruns_it(
    runtime, app, client, operator_staff
):
    key = unique("flaky-")
    BROKEN.add(key)
    row_id = await enqueue_after_commit("flaky_test_job", key)
    before = int(await app.state.redis.hget(JOB_STATS_KEY, "flaky_test_job:dead") or 0)
    await drain(runtime, policy=FAST)
    assert TRIES[key] == FAST.max_tries
    dead = await DeadJob.select().where(DeadJob.job_id == str(row_id)).first()
    assert dead is not None
    assert dead["function"] == "flaky_test_job" and dead["tries"] == FAST.max_tries
    assert "ConnectionError" in dead["error"] and "is down" in dead["error"]
    outbox_row = await JobOutbox.select().where(JobOutbox.id == row_id).first()
    assert outbox_row["dead_at"] is not None
    after = int(await app.state.redis.hget(JOB_STATS_KEY, "flaky_test_job:dead") or 0)
    assert after - before == 1

    # The auditor sees the dead job but may not re-run it.
    await sign_in(client, operator_staff["auditor"])
    listing = await client.get("/api/v1/operator/jobs")
    assert listing.status_code == 200, listing.text
    entry = next(d for d in listing.json()["dead_jobs"] if d["id"] == str(dead["id"]))
    assert entry["args"] == [key] and entry["rerun_at"] is None
    page = await client.get("/operator/jobs")
    assert page.status_code == 200 and "flaky_test_job" in page.text
    assert f"/operator/jobs/dead/{dead['id']}/rerun" not in page.text
    refused = await client.post(f"/api/v1/operator/jobs/dead/{dead['id']}/rerun")
    assert refused.status_code in {403, 404}

    # Fixed; the admin re-runs it from the page (a new job through the outbox).
    BROKEN.discard(key)
    client.cookies.clear()
    await sign_in(client, operator_staff["admin"])
    page = await client.get("/operator/jobs")
    assert f"/operator/jobs/dead/{dead['id']}/rerun" in page.text
    rerun = await client.post(
        f"/operator/jobs/dead/{dead['id']}/rerun", data={"_csrf": csrf_from(page.text)}
    )
    assert rerun.status_code == 303, rerun.text
    again = await client.post(f"/api/v1/operator/jobs/dead/{dead['id']}/rerun")
    assert again.status_code == 409 and again.json()["code"] == "job_already_rerun"
    await drain(runtime, policy=FAST)
    assert await JobProbe.count().where(JobProbe.probe_key == key) == 1
    rerun_row = await DeadJob.select().where(DeadJob.id == dead["id"]).first()
    assert rerun_row["rerun_at"] is not None and rerun_row["rerun_job"] is not None

    # Outsiders: no console at all.
    from tests.factories import make_user

    client.cookies.clear()
    await sign_in(client, await make_user())
    assert (await client.get("/operator/jobs")).status_code == 404
    assert (await client.post(f"/api/v1/operator/jobs/dead/{dead['id']}/rerun")).status_code == 404

"""Operational pieces: the search reindex command and cross-process cache invalidation."""

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from canal.platform import invalidation
from canal.platform.http import tenancy
from canal.platform.http.context import TenantRef

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # runs the CLI in a subprocess
async def test_search_reindex_command_rebuilds_from_the_database(runtime, settings, app):
    from tests.factories import make_tenant, make_user

    await make_tenant(await make_user(), name="重建索引测试有限公司")
    env = dict(
        os.environ,
        CANAL_DATABASE_NAME=settings.database_name,
        CANAL_MEILI_INDEX_PREFIX=f"reindex_{uuid.uuid4().hex[:8]}",
        CANAL_LOG_JSON="false",
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "canal.platform.cli", "search", "reindex"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    counts = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    assert int(counts["organisations"].split()[0]) >= 1


async def test_a_notice_from_another_process_clears_the_cache():
    ref = TenantRef(uuid.uuid4(), "notice-test", "x", "enterprise", "active")
    tenancy._tenant_cache["notice-test"] = (float("inf"), ref)
    await invalidation.handle(f"{invalidation._ORIGIN}|tenant|notice-test")  # our own: ignored
    assert "notice-test" in tenancy._tenant_cache
    await invalidation.handle("another-process|tenant|notice-test")
    assert "notice-test" not in tenancy._tenant_cache


async def test_a_local_change_broadcasts_a_notice():
    sent: list[str] = []

    async def publish(message: str) -> None:
        sent.append(message)

    previous = invalidation._publish  # the running app's Redis publisher, put back after
    invalidation.attach(publish)
    try:
        tenancy.forget_tenant("some-slug")
        await asyncio.sleep(0)  # the notice is sent in the background
        await asyncio.sleep(0)
    finally:
        invalidation.attach(previous)
    assert sent == [f"{invalidation._ORIGIN}|tenant|some-slug"]


async def forget_in_a_job(ctx, which: str) -> str:
    tenancy.forget_tenant(which)
    await asyncio.sleep(0.05)  # the notice goes out in the background
    return which


async def test_a_change_made_in_a_worker_job_reaches_the_web_processes(runtime, app):
    """The worker publishes notices too: a role or organisation changed by a job must not stay
    cached in the web processes until they restart."""
    from redis.asyncio import Redis

    from canal.platform.jobs import enqueue, make_worker
    from canal.platform.jobs.registry import register_job

    slug = f"worker-notice-{uuid.uuid4().hex[:8]}"
    register_job(forget_in_a_job)
    listener = Redis.from_url(runtime.redis_url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(invalidation.CHANNEL)
    previous = invalidation._publish  # the test app's publisher: a worker process has none
    invalidation.attach(None)
    try:
        job = await enqueue(runtime.redis_url, "forget_in_a_job", slug)
        assert job is not None
        worker = make_worker(runtime, burst=True)
        await worker.main()
        await worker.close()
        assert await job.result(timeout=5) == slug
        assert invalidation._publish is None  # the worker took its publisher away again
        notices = []
        for _ in range(50):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                notices.append(message["data"].decode())
            if any(n.endswith(f"|tenant|{slug}") for n in notices):
                break
        assert any(n.endswith(f"|tenant|{slug}") for n in notices), notices
    finally:
        invalidation.attach(previous)
        await pubsub.aclose()
        await listener.aclose()

"""Operational pieces: the search reindex command and cross-process cache invalidation."""

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

from canal.platform import invalidation
from canal.platform.http import tenancy
from canal.platform.http.context import TenantRef

ROOT = Path(__file__).resolve().parents[1]


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

"""Audit fixtures: the one operator tenant of this database, and a throwaway database for
tampering (a broken chain must not leak into other tests' database)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

import msgspec
import pytest


class Throwaway(msgspec.Struct):
    owner_dsn: str
    app_dsn: str


@pytest.fixture(scope="module")
async def throwaway(runtime, settings):
    """A fresh, fully migrated database of its own, dropped afterwards.

    Migrated in a subprocess: ``runtime.migrate`` repoints the process-wide Piccolo engine,
    which the running app's pool must keep.
    """
    from canal.platform import db

    name = f"canal_audit_tamper_{uuid.uuid4().hex[:8]}"
    other = msgspec.structs.replace(settings, database_name=name)
    env = dict(os.environ, CANAL_DATABASE_NAME=name)
    if runtime.settings.database_url:
        env["CANAL_DATABASE_URL"] = runtime.settings.database_url
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "canal.platform.cli",
        "migrate",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=300)
    assert process.returncode == 0, stderr.decode()[-2000:]
    try:
        yield Throwaway(
            db.owner_url(other, runtime.server_url), db.app_url(other, runtime.server_url)
        )
    finally:
        await db.drop_database(other, runtime.server_url)

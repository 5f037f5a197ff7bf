"""Audit fixtures: the one operator tenant of this database, and a throwaway database for
tampering (a broken chain must not leak into other tests' database)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

import msgspec
import pytest

from tests.factories import Person, make_user, unique


@pytest.fixture(scope="session")
async def operator(app) -> Person:
    """Operator staff with platform.audit:read. Only one operator tenant may exist per
    database: reuse the one another test made, else make it."""
    from canal.tenants.services import create_operator_tenant
    from canal.tenants.tables import Tenant

    row = await Tenant.select(Tenant.created_by).where(Tenant.kind == "operator").first()
    if row and row["created_by"]:
        return Person(row["created_by"], "", "")
    person = await make_user("运营审计员")
    await create_operator_tenant(
        creator_id=person.user_id, name="东昌数字运营有限公司", slug=unique("op-"), credit_code=None
    )
    return person


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

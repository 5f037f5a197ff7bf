"""The request path's caches give way at once: a module switched off or a membership revoked
takes effect on the next request, in this process and — over the ``canal:invalidate`` channel —
in another app process that had the old answer cached."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from canal.platform import clock, invalidation
from canal.tenants import services as tenant_services
from tests.factories import make_tenant, make_user, sign_in

ROOT = Path(__file__).resolve().parents[2]

# A second app process on the test database and the test run's Redis database.
SERVER = """
import sys, uvicorn
from canal.platform.app import create_app
from canal.platform.runtime import prepare
from canal.platform.settings import get_settings
uvicorn.run(create_app(prepare(get_settings()), pool_size=2), host="127.0.0.1",
            port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def other_process(settings, runtime) -> Iterator[str]:
    port = _free_port()
    env = dict(
        os.environ,
        CANAL_DATABASE_NAME=settings.database_name,
        CANAL_REDIS_URL=runtime.redis_url,
        CANAL_MEILI_INDEX_PREFIX=settings.meili_index_prefix,
        CANAL_S3_BUCKET_PREFIX=settings.s3_bucket_prefix,
        CANAL_LOG_JSON="false",
        CANAL_ACCESS_LOG="false",
    )
    log = (ROOT / "var" / f"test-other-process-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "the second app process exited"
            assert time.monotonic() < deadline, "the second app process did not start"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


async def _token(person, tenant_id) -> str:
    from canal.platform.identity.tokens import create_token

    return (await create_token(person.user_id, "cache test", tenant_id=tenant_id)).token


async def _eventually(check, seconds: float = 5.0) -> bool:
    """The other process applies a notice a moment after it is published."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_module_switched_off_is_refused_on_the_next_request(client):
    owner = await make_user()
    tenant = await make_tenant(owner)
    await sign_in(client, owner)
    home = f"/api/v1/t/{tenant.slug}/m/policy"
    assert (await client.get(home)).status_code == 403  # cached: off
    on = await client.post(f"/api/v1/t/{tenant.slug}/modules/policy", json={"enabled": True})
    assert on.status_code == 200
    assert (await client.get(home)).status_code == 200
    assert tenant.id in tenant_services._modules_cache  # answered from the cache now
    off = await client.post(f"/api/v1/t/{tenant.slug}/modules/policy", json={"enabled": False})
    assert off.status_code == 200
    refused = await client.get(home)
    assert refused.status_code == 403 and refused.json()["code"] == "module_not_enabled"


@pytest.mark.slow  # waits, or a second server process
async def test_a_paid_period_ends_without_any_write(client):
    """The cache keeps the rows, not the answer: an end date passing needs no notice."""
    owner = await make_user()
    tenant = await make_tenant(owner)
    await sign_in(client, owner)
    import datetime as dt

    soon = clock.now() + dt.timedelta(seconds=1)
    from canal.platform import db

    async with db.transaction():
        await tenant_services.apply_billed_entitlement(
            tenant.id, "policy", plan="free", active=True, active_until=soon, note="test"
        )
    home = f"/api/v1/t/{tenant.slug}/m/policy"
    assert (await client.get(home)).status_code == 200
    await asyncio.sleep(max(0.0, (soon - clock.now()).total_seconds()) + 0.05)
    assert (await client.get(home)).status_code == 403


async def test_a_load_racing_a_change_does_not_store_stale_rows(client):
    owner = await make_user()
    tenant = await make_tenant(owner)
    tenant_services.forget_modules(tenant.id, broadcast_change=False)
    real_raw = tenant_services.ModuleSubscription.raw

    def raw_then_change(*args):  # a change commits while the load's answer is on its way
        query = real_raw(*args)
        tenant_services.forget_modules(tenant.id, broadcast_change=False)
        return query

    tenant_services.ModuleSubscription.raw = raw_then_change  # type: ignore[method-assign]
    try:
        assert not await tenant_services.module_enabled(tenant.id, "policy")
    finally:
        tenant_services.ModuleSubscription.raw = real_raw  # type: ignore[method-assign]
    assert tenant.id not in tenant_services._modules_cache


async def test_a_notice_from_another_process_forgets_the_modules():
    tenant_id = uuid.uuid4()
    tenant_services._modules_cache[tenant_id] = (float("inf"), (("policy", "active", None),))
    await invalidation.handle(f"{invalidation._ORIGIN}|modules|{tenant_id}")  # our own
    assert tenant_id in tenant_services._modules_cache
    await invalidation.handle(f"another-process|modules|{tenant_id}")
    assert tenant_id not in tenant_services._modules_cache


@pytest.mark.slow  # waits, or a second server process
async def test_another_process_sees_a_module_switched_off_at_once(client, other_process):
    owner = await make_user()
    tenant = await make_tenant(owner)
    await sign_in(client, owner)
    on = await client.post(f"/api/v1/t/{tenant.slug}/modules/policy", json={"enabled": True})
    assert on.status_code == 200
    headers = {"Authorization": f"Bearer {await _token(owner, tenant.id)}"}
    home = f"{other_process}/api/v1/t/{tenant.slug}/m/policy"
    async with httpx.AsyncClient(headers=headers, timeout=10) as other:

        async def served() -> bool:
            return (await other.get(home)).status_code == 200

        # The new tenant's owner reaches the other process as a notice (a stranger answers
        # 404 until then, as on a loaded machine); once served, the subscriptions are cached.
        assert await _eventually(served)
        off = await client.post(f"/api/v1/t/{tenant.slug}/modules/policy", json={"enabled": False})
        assert off.status_code == 200

        async def refused() -> bool:
            answer = await other.get(home)
            return answer.status_code == 403 and answer.json()["code"] == "module_not_enabled"

        assert await _eventually(refused)


@pytest.mark.slow  # waits, or a second server process
async def test_another_process_sees_a_membership_revoked_at_once(client, other_process):
    owner, member = await make_user(), await make_user()
    tenant = await make_tenant(owner)
    from canal.platform import db
    from canal.platform.access.services import access
    from canal.tenants.tables import Membership

    async with db.tenant_scope(tenant.id, owner.user_id):
        await Membership.insert(Membership(tenant_id=tenant.id, user_id=member.user_id))
        await access().assign_role(member.user_id, "member", tenant.id)
    headers = {"Authorization": f"Bearer {await _token(member, tenant.id)}"}
    context = f"{other_process}/api/v1/t/{tenant.slug}/context"
    async with httpx.AsyncClient(headers=headers, timeout=10) as other:

        async def answers(status: int) -> bool:
            return (await other.get(context)).status_code == status

        assert await _eventually(lambda: answers(200))  # the role assignment reached it
        await sign_in(client, owner)
        removed = await client.post(
            f"/api/v1/t/{tenant.slug}/members/{member.user_id}/remove", json={}
        )
        assert removed.status_code in (200, 204), removed.text
        assert await _eventually(lambda: answers(404))

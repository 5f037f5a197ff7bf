"""Row-level security is the backstop under every scoped query.

These tests read the database catalogue itself, so a tenant-owned table added by raw SQL, or
by a module that forgot the convention, fails here too.
"""

import asyncpg
import pytest

from canal.platform import db
from tests.factories import make_tenant, make_user

TENANT_TABLES_SQL = """
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
  AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
              AND a.attname = 'tenant_id' AND NOT a.attisdropped)
ORDER BY c.relname
"""


async def test_every_tenant_owned_table_has_forced_row_level_security(runtime):
    conn = await asyncpg.connect(runtime.owner_dsn)
    try:
        rows = await conn.fetch(TENANT_TABLES_SQL)
        policies = {
            r["tablename"]
            for r in await conn.fetch(
                "SELECT tablename FROM pg_policies WHERE policyname = 'canal_tenant'"
            )
        }
    finally:
        await conn.close()
    names = [r["relname"] for r in rows]
    # The platform's own tenant-owned tables must be among them (the check is not vacuous).
    assert {"memberships", "invitations", "module_subscriptions"} <= set(names)
    missing = [r["relname"] for r in rows if not (r["relrowsecurity"] and r["relforcerowsecurity"])]
    assert missing == [], f"tables without ENABLE + FORCE row-level security: {missing}"
    assert set(names) <= policies, f"tables without the tenant policy: {set(names) - policies}"


async def test_app_role_owns_nothing_and_cannot_bypass(runtime):
    conn = await asyncpg.connect(runtime.app_dsn)
    try:
        role = await conn.fetchrow(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        owned = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) = current_user"
        )
    finally:
        await conn.close()
    assert role["rolsuper"] is False
    assert role["rolbypassrls"] is False
    assert owned == 0


async def test_query_without_tenant_setting_returns_no_rows(runtime, app):
    owner = await make_user()
    tenant = await make_tenant(owner)
    conn = await asyncpg.connect(runtime.app_dsn)
    try:
        # No app.tenant_id at all: nothing, although the rows exist.
        assert await conn.fetchval("SELECT count(*) FROM memberships") == 0
        assert await conn.fetchval("SELECT count(*) FROM module_subscriptions") == 0
        # With the tenant set inside a transaction: exactly its rows, and only for that
        # transaction (set_config(..., true) does not leak to the pooled connection).
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant.id))
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM memberships WHERE tenant_id = $1", tenant.id
                )
                == 1
            )
        assert await conn.fetchval("SELECT count(*) FROM memberships") == 0
    finally:
        await conn.close()


async def test_scope_of_one_tenant_cannot_read_or_write_another(app):
    from canal.tenants.tables import Membership

    alice, bob = await make_user("甲"), await make_user("乙")
    tenant_a, tenant_b = await make_tenant(alice), await make_tenant(bob)
    async with db.tenant_scope(tenant_b.id, bob.user_id):
        seen = await Membership.select(Membership.tenant_id).where(
            Membership.tenant_id == tenant_a.id
        )
        assert seen == []
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
        async with db.tenant_scope(tenant_b.id, bob.user_id):
            await Membership.insert(Membership(tenant_id=tenant_a.id, user_id=bob.user_id))
    async with db.tenant_scope(tenant_a.id):
        members = await Membership.select(Membership.user_id).where(
            Membership.tenant_id == tenant_a.id
        )
    assert [m["user_id"] for m in members] == [alice.user_id]


async def test_failed_request_transaction_leaves_nothing(app):
    from canal.tenants.tables import ModuleSubscription

    owner = await make_user()
    tenant = await make_tenant(owner)
    with pytest.raises(RuntimeError):
        async with db.tenant_scope(tenant.id, owner.user_id):
            await ModuleSubscription.insert(
                ModuleSubscription(tenant_id=tenant.id, module_key="policy")
            )
            raise RuntimeError("the request failed after writing")
    async with db.tenant_scope(tenant.id):
        assert (
            await ModuleSubscription.count().where(ModuleSubscription.tenant_id == tenant.id) == 0
        )

"""record() appends inside the caller's transaction, the chain stays valid under concurrency,
and the application role can read the trail but never write it directly."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from canal.platform import db
from canal.platform.audit.chain import canonical_payload
from canal.platform.audit.services import record
from canal.platform.audit.verify import verify_dsn
from tests.factories import make_tenant, make_user, unique


async def _rows_with_target(runtime, target: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(runtime.owner_dsn)
    try:
        return await conn.fetch(
            "SELECT seq, action, tenant_id, actor_id, ip, payload FROM audit_events "
            "WHERE target = $1 ORDER BY seq",
            target,
        )
    finally:
        await conn.close()


async def test_a_clean_chain_verifies(runtime, app):
    owner = await make_user()
    tenant = await make_tenant(owner)
    async with db.tenant_scope(tenant.id, owner.user_id):
        await record(
            "role.granted",
            actor_id=owner.user_id,
            tenant_id=tenant.id,
            target=unique("who-"),
            ip="203.0.113.9",
            data={"role": "admin", "名": "值"},
        )
    await record("auth.login", actor_id=owner.user_id, target=unique("login-"))  # no transaction
    result = await verify_dsn(runtime.owner_dsn)
    assert result.ok, result.summary()
    assert result.checked >= 3  # tenant.created + the two above, plus whatever others wrote
    assert result.head_seq == result.checked


async def test_record_stores_what_it_was_given(runtime, app):
    person = await make_user()
    target = unique("tgt-")
    async with db.transaction():
        await record(
            "auth.login_failed",
            actor_id=person.user_id,
            target=target,
            ip="198.51.100.7",
            data={"reason": "bad_password"},
        )
    [row] = await _rows_with_target(runtime, target)
    assert row["action"] == "auth.login_failed"
    assert row["tenant_id"] is None and row["actor_id"] == person.user_id
    assert row["payload"] == canonical_payload(
        action="auth.login_failed",
        actor_id=person.user_id,
        tenant_id=None,
        target=target,
        ip="198.51.100.7",
        data={"reason": "bad_password"},
    )


async def test_a_rolled_back_transaction_leaves_no_record(runtime, app):
    owner = await make_user()
    tenant = await make_tenant(owner)
    target = unique("rb-")
    with pytest.raises(RuntimeError):
        async with db.tenant_scope(tenant.id, owner.user_id):
            await record(
                "module.enabled", actor_id=owner.user_id, tenant_id=tenant.id, target=target
            )
            raise RuntimeError("the change failed after recording it")
    assert await _rows_with_target(runtime, target) == []
    # The chain is not left with a hole where the rolled-back record would have been.
    assert (await verify_dsn(runtime.owner_dsn)).ok


async def test_concurrent_appends_keep_one_valid_chain(runtime, app):
    owner = await make_user()
    tenant = await make_tenant(owner)
    target = unique("con-")

    async def one(i: int) -> None:
        async with db.tenant_scope(tenant.id, owner.user_id):
            await record(
                "module.enabled",
                actor_id=owner.user_id,
                tenant_id=tenant.id,
                target=target,
                data={"i": i},
            )

    await asyncio.gather(*(one(i) for i in range(50)))
    rows = await _rows_with_target(runtime, target)
    assert len(rows) == 50
    assert len({r["seq"] for r in rows}) == 50
    result = await verify_dsn(runtime.owner_dsn)
    assert result.ok, result.summary()


WRITES = [
    "UPDATE audit_events SET target = 'rewritten'",
    "DELETE FROM audit_events",
    "TRUNCATE audit_events",
    "INSERT INTO audit_events (seq, action, target, ip, payload, prev_hash, hash) "
    "VALUES (999999999, 'auth.login', '', '', '{}', '', 'forged')",
    "UPDATE audit_head SET seq = 0",
    "DELETE FROM audit_head",
    "TRUNCATE audit_head",
    "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '')",
]


@pytest.mark.parametrize("statement", WRITES)
async def test_the_app_role_cannot_write_the_trail_directly(runtime, app, statement):
    await record("auth.login", target=unique("exists-"))  # at least one row to hit
    conn = await asyncpg.connect(runtime.app_dsn)
    try:
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            async with conn.transaction():
                # Platform scope: row-level security would let it see every row.
                await conn.execute("SELECT set_config('app.scope', 'platform', true)")
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_the_app_role_reads_only_through_row_level_security(runtime, app):
    owner = await make_user()
    tenant_a, tenant_b = await make_tenant(owner), await make_tenant(owner)
    conn = await asyncpg.connect(runtime.app_dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_b.id))
            seen = await conn.fetch("SELECT DISTINCT tenant_id FROM audit_events")
        assert [r["tenant_id"] for r in seen] == [tenant_b.id]
        assert tenant_a.id not in {r["tenant_id"] for r in seen}
        # No scope at all: nothing, not even sign-ins without a tenant.
        assert await conn.fetchval("SELECT count(*) FROM audit_events") == 0
    finally:
        await conn.close()


async def test_the_append_function_refuses_a_payload_that_contradicts_its_columns(runtime, app):
    conn = await asyncpg.connect(runtime.app_dsn)
    payload = canonical_payload(
        action="auth.login", actor_id=None, tenant_id=None, target="someone", ip="", data=None
    )
    try:
        with pytest.raises(asyncpg.exceptions.InvalidParameterValueError):
            await conn.fetchval(
                "SELECT canal_audit_append(NULL, NULL, $1, $2, '', $3)",
                "auth.logout",
                "someone",
                payload,
            )
        seq = await conn.fetchval(
            "SELECT canal_audit_append(NULL, NULL, $1, $2, '', $3)",
            "auth.login",
            "someone",
            payload,
        )
        assert seq > 0
    finally:
        await conn.close()
    assert (await verify_dsn(runtime.owner_dsn)).ok


def test_every_recorded_action_has_a_label_in_both_languages():
    """Each action code the code base records is named for people, in zh_CN and English."""
    import re
    from pathlib import Path

    import canal
    from canal.platform.audit.services import action_labels
    from canal.web.i18n import catalog

    recorded = set()
    for root in canal.__path__:
        for path in Path(root).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            recorded |= set(re.findall(r"record\(\s*\"([a-z_]+\.[a-z_]+)\"", text))
    assert len(recorded) >= 20  # the scan finds the calls at all
    labels = action_labels()
    unlabelled = sorted(recorded - set(labels))
    assert unlabelled == [], f"actions without a label: {unlabelled}"
    zh = catalog("zh_CN")
    untranslated = sorted(label for label in labels.values() if label not in zh)
    assert untranslated == [], f"labels without Chinese: {untranslated}"

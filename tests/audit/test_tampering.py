"""`canal audit verify` finds an edited, deleted or reordered record, and says which.

All tampering happens in a throwaway database (fixture ``throwaway``): each test rebuilds a
clean ten-record chain there, breaks it as the owner could, and checks the report.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from canal.platform.audit.chain import canonical_payload, chain_hash
from canal.platform.audit.verify import verify_chain, verify_command, verify_dsn

# migrates a throwaway database in a subprocess
pytestmark = pytest.mark.slow

N = 10


async def _append(conn: asyncpg.Connection, i: int, tenant: uuid.UUID | None) -> int:
    target = f"record-{i}"
    payload = canonical_payload(
        action="role.granted",
        actor_id=None,
        tenant_id=tenant,
        target=target,
        ip="192.0.2.1",
        data={"i": i, "角色": "管理员"},
    )
    return await conn.fetchval(
        "SELECT canal_audit_append($1, NULL, $2, $3, $4, $5)",
        tenant,
        "role.granted",
        target,
        "192.0.2.1",
        payload,
    )


@pytest.fixture
async def chain(throwaway):
    """A clean chain of N records, on an owner connection with the immutability trigger off
    (an owner can always do that; the point is that verify still notices)."""
    conn = await asyncpg.connect(throwaway.owner_dsn)
    await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
    await conn.execute("TRUNCATE audit_events")
    await conn.execute("UPDATE audit_head SET seq = 0, hash = repeat('0', 64)")
    await conn.execute("ALTER TABLE audit_events ENABLE TRIGGER USER")
    tenant = uuid.uuid4()
    for i in range(1, N + 1):
        assert await _append(conn, i, tenant if i % 2 else None) == i
    assert (await verify_chain(conn)).ok
    await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
    try:
        yield conn
    finally:
        await conn.execute("ALTER TABLE audit_events ENABLE TRIGGER USER")
        await conn.close()


async def _expect(conn: asyncpg.Connection, seq: int, problem: str) -> None:
    result = await verify_chain(conn)
    assert not result.ok
    assert (result.broken_seq, result.problem) == (seq, problem), result.summary()
    assert str(seq) in result.zh and str(seq) in result.en


async def test_clean_chain_verifies_and_command_says_so(chain, throwaway, capsys):
    result = await verify_chain(chain)
    assert result.ok and result.checked == N and result.head_seq == N

    class Rt:
        owner_dsn = throwaway.owner_dsn

    # verify_command runs its own event loop; call it the way the CLI does, in a thread.
    import asyncio

    code = await asyncio.to_thread(verify_command, Rt())
    out = capsys.readouterr().out
    assert code == 0
    assert "审计链完整" in out and "Audit chain intact" in out and f"{N} records" in out


async def test_an_owner_cannot_casually_update_or_delete(throwaway):
    conn = await asyncpg.connect(throwaway.owner_dsn)
    try:
        for statement in (
            "UPDATE audit_events SET target = 'x'",
            "DELETE FROM audit_events",
            "TRUNCATE audit_events",
        ):
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_edited_target_column(chain):
    await chain.execute("UPDATE audit_events SET target = 'someone-else' WHERE seq = 4")
    await _expect(chain, 4, "edited")


async def test_edited_payload(chain):
    await chain.execute(
        "UPDATE audit_events SET payload = replace(payload, '管理员', '所有者') WHERE seq = 6"
    )
    await _expect(chain, 6, "edited")


async def test_edited_time(chain):
    await chain.execute(
        "UPDATE audit_events SET created_at = created_at - interval '1 day' WHERE seq = 2"
    )
    await _expect(chain, 2, "edited")


async def test_edited_and_rehashed_record_breaks_the_next_link(chain):
    row = await chain.fetchrow("SELECT * FROM audit_events WHERE seq = 5")
    forged = row["payload"].replace("管理员", "所有者")
    new_hash = chain_hash(row["prev_hash"], 5, row["created_at"], forged)
    await chain.execute(
        "UPDATE audit_events SET payload = $1, hash = $2 WHERE seq = 5", forged, new_hash
    )
    await _expect(chain, 6, "out_of_order")


async def test_deleted_middle_record(chain):
    await chain.execute("DELETE FROM audit_events WHERE seq = 5")
    await _expect(chain, 5, "missing")


async def test_deleted_first_record(chain):
    await chain.execute("DELETE FROM audit_events WHERE seq = 1")
    await _expect(chain, 1, "missing")


async def test_deleted_last_record(chain):
    await chain.execute(f"DELETE FROM audit_events WHERE seq = {N}")
    await _expect(chain, N, "head_mismatch")


async def test_deleted_last_records_and_renumbered_head_is_still_caught_by_export(chain):
    # An owner who also rewinds the head hides the deletion from the chain itself; only a
    # head hash kept elsewhere catches that (docs/audit.md). verify reports what it can.
    await chain.execute(f"DELETE FROM audit_events WHERE seq = {N}")
    await chain.execute(
        f"UPDATE audit_head SET seq = {N - 1}, "
        f"hash = (SELECT hash FROM audit_events WHERE seq = {N - 1})"
    )
    result = await verify_chain(chain)
    assert result.ok and result.head_seq == N - 1


async def test_swapped_seq_of_two_records(chain):
    await chain.execute("UPDATE audit_events SET seq = -3 WHERE seq = 3")
    await chain.execute("UPDATE audit_events SET seq = 3 WHERE seq = 7")
    await chain.execute("UPDATE audit_events SET seq = 7 WHERE seq = -3")
    await _expect(chain, 3, "out_of_order")


async def test_swapped_contents_of_two_records(chain):
    """Everything but seq moves, hashes included: each record is intact on its own, but
    the links no longer line up."""
    columns = (
        "tenant_id",
        "actor_id",
        "action",
        "target",
        "ip",
        "created_at",
        "payload",
        "prev_hash",
        "hash",
    )
    query = f"SELECT {', '.join(columns)} FROM audit_events WHERE seq = $1"
    a, b = [await chain.fetchrow(query, seq) for seq in (3, 8)]
    sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(columns))
    await chain.execute("UPDATE audit_events SET hash = 'moving' WHERE seq = 3")
    await chain.execute(f"UPDATE audit_events SET {sets} WHERE seq = $1", 8, *a.values())
    await chain.execute(f"UPDATE audit_events SET {sets} WHERE seq = $1", 3, *b.values())
    await _expect(chain, 3, "out_of_order")


async def test_verify_dsn_reports_on_a_fresh_connection(chain, throwaway):
    await chain.execute("UPDATE audit_events SET ip = '10.0.0.1' WHERE seq = 9")
    result = await verify_dsn(throwaway.owner_dsn)
    assert (result.ok, result.broken_seq, result.problem) == (False, 9, "edited")


async def test_appends_work_for_an_owner_that_is_not_superuser(throwaway, chain):
    """FORCE ROW LEVEL SECURITY binds a non-superuser owner too: the function's own
    ``SET app.scope = 'platform'`` must let it write any tenant's (or no tenant's) record,
    whatever the calling transaction's scope."""
    await chain.execute("ALTER TABLE audit_events ENABLE TRIGGER USER")
    role = f"canal_audit_owner_{uuid.uuid4().hex[:8]}"
    await chain.execute(f'CREATE ROLE "{role}" NOSUPERUSER NOBYPASSRLS')
    try:
        for statement in (
            f'ALTER TABLE audit_events OWNER TO "{role}"',
            f'ALTER TABLE audit_head OWNER TO "{role}"',
            f"ALTER FUNCTION canal_audit_append(uuid, uuid, text, text, text, text) "
            f'OWNER TO "{role}"',
        ):
            await chain.execute(statement)
        app = await asyncpg.connect(throwaway.app_dsn)
        try:
            async with app.transaction():
                await app.execute("SELECT set_config('app.tenant_id', $1, true)", str(uuid.uuid4()))
                assert await _append(app, 11, uuid.uuid4()) == N + 1
                assert await _append(app, 12, None) == N + 2
        finally:
            await app.close()
        # The non-superuser owner sees every row when it verifies (platform scope).
        await chain.execute(f'SET ROLE "{role}"')
        result = await verify_chain(chain)
        await chain.execute("RESET ROLE")
        assert result.ok and result.checked == N + 2, result.summary()
    finally:
        await chain.execute("RESET ROLE")
        for table in ("audit_events", "audit_head"):
            await chain.execute(f"ALTER TABLE {table} OWNER TO CURRENT_USER")
        await chain.execute(
            "ALTER FUNCTION canal_audit_append(uuid, uuid, text, text, text, "
            "text) OWNER TO CURRENT_USER"
        )
        await chain.execute(f'DROP ROLE "{role}"')


async def test_security_sql_leaves_the_app_role_read_and_append_only(throwaway, settings):
    """What apply_security runs after its blanket grants (canal.platform.audit.grants)."""
    from canal.platform.audit.grants import APPEND_SIGNATURE, audit_security_sql

    role = settings.app_db_role
    conn = await asyncpg.connect(throwaway.owner_dsn)
    try:
        for statement in audit_security_sql(role):
            await conn.execute(statement)
        for table in ("audit_events", "audit_head"):
            for privilege, expected in (
                ("SELECT", True),
                ("INSERT", False),
                ("UPDATE", False),
                ("DELETE", False),
                ("TRUNCATE", False),
            ):
                held = await conn.fetchval(
                    "SELECT has_table_privilege($1, $2, $3)", role, table, privilege
                )
                assert held is expected, (table, privilege)
        assert await conn.fetchval(
            "SELECT has_function_privilege($1, $2, 'EXECUTE')", role, APPEND_SIGNATURE
        )
        assert not await conn.fetchval(
            "SELECT has_function_privilege('public', $1, 'EXECUTE')", APPEND_SIGNATURE
        )
    finally:
        await conn.close()
    app = await asyncpg.connect(throwaway.app_dsn)
    try:
        assert await _append(app, 99, None) > 0
    finally:
        await app.close()

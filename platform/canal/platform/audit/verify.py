"""Walk the audit chain and report the first record that was edited, removed or moved.

``canal audit verify`` runs this as the owner; the operator console runs it as the app role
in platform scope. Both read in one REPEATABLE READ snapshot, streaming with a cursor.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from canal.platform.audit.chain import GENESIS_HASH, chain_hash

BATCH = 5000

_ROWS = """
SELECT seq, tenant_id, actor_id, action, target, ip, created_at, payload, prev_hash, hash
FROM audit_events ORDER BY seq
"""


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int  # records read
    head_seq: int | None  # what the head row says the last seq is
    broken_seq: int | None = None  # the first seq at fault
    problem: str = ""  # stable code: edited, missing, out_of_order, head_mismatch, no_head
    zh: str = ""
    en: str = ""

    def summary(self, locale: str | None = None) -> str:
        if locale is not None:
            return self.zh if locale.startswith("zh") else self.en
        return f"{self.zh}\n{self.en}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ok(checked: int, head_seq: int) -> VerifyResult:
    return VerifyResult(
        True,
        checked,
        head_seq,
        zh=f"审计链完整:已校验 {checked} 条记录,未发现篡改。",
        en=f"Audit chain intact: {checked} records checked, no tampering found.",
    )


def _broken(
    checked: int, head_seq: int | None, seq: int, problem: str, zh: str, en: str
) -> VerifyResult:
    return VerifyResult(
        False,
        checked,
        head_seq,
        seq,
        problem,
        zh=f"审计链在第 {seq} 条记录处断开:{zh}(已校验 {checked} 条)",
        en=f"Audit chain broken at record {seq}: {en} ({checked} checked)",
    )


def _columns_match(row: asyncpg.Record) -> bool:
    """The columns shown and filtered on must say what the hashed payload says."""
    try:
        body = json.loads(row["payload"])
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    return (
        body.get("action") == row["action"]
        and body.get("target") == row["target"]
        and body.get("ip") == row["ip"]
        and body.get("actor") == (str(row["actor_id"]) if row["actor_id"] else "")
        and body.get("tenant") == (str(row["tenant_id"]) if row["tenant_id"] else "")
    )


async def verify_chain(conn: asyncpg.Connection, *, batch: int = BATCH) -> VerifyResult:
    """Check every record in seq order on ``conn`` (owner, or app role — platform scope is set).

    Reports the first problem: a gap in seq (a record deleted), a record whose prev_hash is
    not its predecessor's hash (moved, or a predecessor rewritten), a record whose hash does
    not match its contents or whose columns differ from its payload (edited), and a head row
    that does not name the last record (the newest record deleted).
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute("SELECT set_config('app.scope', 'platform', true)")
        head = await conn.fetchrow("SELECT seq, hash FROM audit_head WHERE id = 1")
        if head is None:
            return VerifyResult(
                False,
                0,
                None,
                None,
                "no_head",
                zh="审计链头记录缺失(audit_head 为空)。",
                en="The audit chain head (audit_head) is missing.",
            )
        head_seq: int = head["seq"]
        expected = 1
        prev = GENESIS_HASH
        checked = 0
        async for row in conn.cursor(_ROWS, prefetch=batch):
            seq: int = row["seq"]
            checked += 1
            if seq != expected:
                return _broken(
                    checked,
                    head_seq,
                    expected,
                    "missing",
                    f"第 {expected}–{seq - 1} 条记录缺失(被删除)。",
                    f"records {expected}–{seq - 1} are missing (deleted).",
                )
            if row["prev_hash"] != prev:
                return _broken(
                    checked,
                    head_seq,
                    seq,
                    "out_of_order",
                    "该记录与前一条记录的哈希不衔接(记录被移动、调换或前一条被改写)。",
                    "it does not follow the record before it (moved, swapped, or "
                    "the previous record was rewritten).",
                )
            if chain_hash(prev, seq, row["created_at"], row["payload"]) != row["hash"] or (
                not _columns_match(row)
            ):
                return _broken(
                    checked,
                    head_seq,
                    seq,
                    "edited",
                    "记录内容与其哈希不符(记录被修改)。",
                    "its contents do not match its hash (the record was edited).",
                )
            prev = row["hash"]
            expected += 1
        last = expected - 1
        if head_seq != last or head["hash"] != prev:
            # Past the last record: the newest ones were removed; below it: records were
            # added behind the head's back; equal: the last record was rewritten.
            at = last + 1 if head_seq > last else head_seq + 1 if head_seq < last else last
            return _broken(
                checked,
                head_seq,
                at,
                "head_mismatch",
                f"链头记录为第 {head_seq} 条,但最后一条记录是第 {last} 条"
                "(最新的记录被删除,或链头被改写)。",
                f"the head says the last record is {head_seq} but it is {last} "
                "(the newest records were deleted, or the head was rewritten).",
            )
        return _ok(checked, head_seq)


async def verify_dsn(dsn: str) -> VerifyResult:
    conn = await asyncpg.connect(dsn)
    try:
        return await verify_chain(conn)
    finally:
        await conn.close()


async def verify_with_pool() -> VerifyResult:
    """In the running app: borrow a pooled (app role) connection. Platform callers only."""
    from canal.platform.db import engine

    pool = engine().pool
    if pool is None:
        raise RuntimeError("the database pool is not running")
    async with pool.acquire() as conn:
        return await verify_chain(conn)


def verify_command(runtime: Any) -> int:
    """``canal audit verify``: print the result in Chinese and English; 0 if intact."""
    result = asyncio.run(verify_dsn(runtime.owner_dsn))
    print(result.summary())
    return 0 if result.ok else 1

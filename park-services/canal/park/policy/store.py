"""Where match results live: one byte per (enterprise, policy), one row per enterprise.

A full re-match of 100,000 enterprises × 1,000 policies yields ~12 million eligible / nearly
pairs. One row per pair (UUID key, foreign key, row-level security, three indexes) took minutes
to write. Here ``policy_match_sets`` has one row per enterprise whose ``codes`` hold one byte
per policy column (``policy_match_columns``: position → policy, version), 100 MB in all,
written by binary COPY into a temporary table and one ``INSERT … ON CONFLICT`` (COPY itself is
refused on a table under row-level security). See docs/decisions/0015-policy-match-sets.md.

A byte: low seven bits 0 not eligible (also any byte past the end of a row), 1 eligible,
2 + i nearly eligible with criterion i missing; high bit: announced at the column's version.

Three writers, one per kind of change:

* ``store_enterprise`` — one enterprise against every open policy (its portrait changed);
* ``store_policy`` / ``drop_policy`` — one policy against every enterprise, set-based SQL;
* ``store_matrix`` — everyone against everything (the nightly re-match), bulk; it re-packs
  the columns (one per open policy, positions 0…n-1).

They serialise on the table lock (``SHARE ROW EXCLUSIVE`` for the two set-wide writers,
``ROW EXCLUSIVE`` plus the row lock for the single enterprise), so columns never move under a
writer. Readers read columns and codes in one statement (one snapshot). Each writer announces a
pair that became eligible, unless dismissed, once per policy version.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import struct
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from canal.park.policy.matcher import ELIGIBLE, NOT_ELIGIBLE
from canal.platform import clock, db
from canal.platform.notifications.services import notify

# Byte values (see the module docstring).
NOT_ELIGIBLE_BYTE, ELIGIBLE_BYTE, NEARLY_BASE, ANNOUNCED = 0, 1, 2, 0x80
# Seven bits leave room for 126 criteria; a rule with more stores its last as the missing one
# (only the page's evaluation, never the stored index, names the criterion to a person).
MAX_MISSING = 0x7F - NEARLY_BASE

# PostgreSQL binary COPY: dates count days and timestamps microseconds from 2000-01-01.
PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
ROWS_PER_CHUNK = 5000
# Serialises allocating a column to a policy between concurrent single-enterprise writers.
COLUMN_LOCK = 0x70_6D_63  # "pmc"


def to_byte(code: int) -> int:
    if code == NOT_ELIGIBLE:
        return NOT_ELIGIBLE_BYTE
    if code == ELIGIBLE:
        return ELIGIBLE_BYTE
    return NEARLY_BASE + min(int(code), MAX_MISSING)


def from_byte(byte: int) -> int:
    base = byte & 0x7F
    if base == NOT_ELIGIBLE_BYTE:
        return NOT_ELIGIBLE
    if base == ELIGIBLE_BYTE:
        return ELIGIBLE
    return base - NEARLY_BASE


# int8 code (as its unsigned byte) → stored byte; codes below -2 do not occur.
_LUT = np.array(
    [to_byte(c) if c >= NOT_ELIGIBLE else 0 for c in (*range(128), *range(-128, 0))],
    dtype=np.uint8,
)


def to_bytes(codes: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """Matcher codes → stored bytes (without the announced bit), vectorised."""
    if codes.dtype == np.int8:
        # One table lookup; no wider temporaries for 100 million codes.
        return _LUT[codes.view(np.uint8)]
    c = codes.astype(np.int16)
    out = np.where(c == NOT_ELIGIBLE, NOT_ELIGIBLE_BYTE, NEARLY_BASE + np.minimum(c, MAX_MISSING))
    return np.where(c == ELIGIBLE, ELIGIBLE_BYTE, out).astype(np.uint8)


@dataclasses.dataclass
class StoredMatches:
    """One enterprise's stored state: ``codes[policy_id] = (code, version_number)`` for
    eligible / nearly pairs, ``notified[policy_id] = version`` announced, dismissals."""

    codes: dict[uuid.UUID, tuple[int, int]]
    notified: dict[uuid.UUID, int]
    dismissed: set[uuid.UUID]


def _connection() -> Any:
    """The asyncpg connection of the open scope (for COPY, locks and array parameters)."""
    txn = db.engine().current_transaction.get()
    assert txn is not None, "open a db scope first"
    return txn.connection


# Columns and one enterprise's bytes in one statement, so both come from one snapshot.
READ_ONE = """
SELECT c.policy_id, c.version_number, get_byte(s.codes, c.position) AS b
FROM policy_match_sets s JOIN policy_match_columns c ON c.position < length(s.codes)
WHERE s.tenant_id = $1
"""


async def read_enterprise(tenant_id: uuid.UUID) -> StoredMatches:
    async with db.tenant_scope(tenant_id):
        conn = _connection()
        rows = await conn.fetch(READ_ONE, tenant_id)
        dismissed = {
            r["policy_id"]
            for r in await conn.fetch(
                "SELECT policy_id FROM policy_dismissals WHERE tenant_id = $1", tenant_id
            )
        }
    codes = {}
    notified = {}
    for r in rows:
        code = from_byte(r["b"])
        if code != NOT_ELIGIBLE:
            codes[r["policy_id"]] = (code, r["version_number"])
        if r["b"] & ANNOUNCED:
            notified[r["policy_id"]] = r["version_number"]
    return StoredMatches(codes, notified, dismissed)


# --- notifications ------------------------------------------------------------------------


async def _announce(new_eligible: Mapping[uuid.UUID, Sequence[Mapping[str, Any]]]) -> int:
    """Tell each enterprise's members about its newly eligible policies (one message each),
    in the caller's transaction. Members and slugs are looked up in one query each."""
    tenants = [t for t, ps in new_eligible.items() if ps]
    if not tenants:
        return 0
    async with db.platform_scope():
        conn = _connection()
        members: dict[uuid.UUID, list[uuid.UUID]] = {}
        for m in await conn.fetch(
            "SELECT tenant_id, user_id FROM memberships WHERE tenant_id = ANY($1::uuid[])",
            tenants,
        ):
            members.setdefault(m["tenant_id"], []).append(m["user_id"])
        slugs = {
            t["id"]: t["slug"]
            for t in await conn.fetch(
                "SELECT id, slug FROM tenants WHERE id = ANY($1::uuid[])",
                [t for t in tenants if t in members],
            )
        }
    for tenant_id in tenants:
        if not members.get(tenant_id):
            continue
        policies = new_eligible[tenant_id]
        titles = "、".join(p["title"] for p in policies[:3])
        more = len(policies)
        async with db.tenant_scope(tenant_id):
            await notify(
                members[tenant_id],
                "policy_match",
                title_zh=f"有 {more} 项惠企政策符合贵企业条件",
                title_en=f"{more} support {'policy' if more == 1 else 'policies'} match you now",
                body_zh=titles,
                body_en=titles,
                link=f"/t/{slugs.get(tenant_id, '')}/m/policy/matches",
                tenant_id=tenant_id,
            )
    return sum(len(new_eligible[t]) for t in tenants)


# --- columns --------------------------------------------------------------------------------


async def _columns(conn: Any) -> dict[uuid.UUID, tuple[int, int]]:
    """policy id → (position, version number)."""
    rows = await conn.fetch("SELECT policy_id, position, version_number FROM policy_match_columns")
    return {r["policy_id"]: (r["position"], r["version_number"]) for r in rows}


async def _allocate(conn: Any, policy_id: uuid.UUID, version: int) -> tuple[int, int]:
    """The policy's column, made at the next free position when it has none (a new
    policy); holes left by closed policies are reused only when a full run re-packs."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", COLUMN_LOCK)
    row = await conn.fetchrow(
        "SELECT position, version_number FROM policy_match_columns WHERE policy_id = $1",
        policy_id,
    )
    if row is not None:
        return row["position"], row["version_number"]
    position = await conn.fetchval(
        "INSERT INTO policy_match_columns (id, policy_id, position, version_number) "
        "SELECT $1, $2, coalesce(max(position) + 1, 0), $3 FROM policy_match_columns "
        "RETURNING position",
        uuid.uuid4(),
        policy_id,
        version,
    )
    return int(position), version


# --- one enterprise -------------------------------------------------------------------------

UPSERT_ONE = """
INSERT INTO policy_match_sets (id, tenant_id, codes, as_of, updated_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (tenant_id) DO UPDATE SET codes = EXCLUDED.codes, as_of = EXCLUDED.as_of,
    updated_at = EXCLUDED.updated_at
"""


async def store_enterprise(
    tenant_id: uuid.UUID,
    policies: Sequence[Mapping[str, Any]],
    codes: Sequence[int],
    day: dt.date,
) -> int:
    """Replace one enterprise's groups with ``codes`` (one per open policy in ``policies``);
    policies no longer open drop out. Returns how many policies were announced."""
    async with db.tenant_scope(tenant_id):
        conn = _connection()
        # Waits for a set-wide writer (which moves columns) and holds it off until commit.
        await conn.execute("LOCK TABLE policy_match_sets IN ROW EXCLUSIVE MODE")
        old = await conn.fetchval(
            "SELECT codes FROM policy_match_sets WHERE tenant_id = $1 FOR UPDATE", tenant_id
        )
        old = old or b""
        dismissed = {
            r["policy_id"]
            for r in await conn.fetch(
                "SELECT policy_id FROM policy_dismissals WHERE tenant_id = $1", tenant_id
            )
        }
        columns = await _columns(conn)
        for p in policies:
            if p["id"] not in columns:
                columns[p["id"]] = await _allocate(conn, p["id"], p["version_number"])
        width = max((pos for pos, _ in columns.values()), default=-1) + 1
        new = bytearray(width)
        announce = []
        for p, code in zip(policies, codes, strict=True):
            position, version = columns[p["id"]]
            byte = to_byte(int(code))
            was = old[position] if position < len(old) else 0
            if version == p["version_number"]:
                told = bool(was & ANNOUNCED)
                if byte == ELIGIBLE_BYTE and not told and p["id"] not in dismissed:
                    announce.append(p)
                    told = True
                byte |= ANNOUNCED if told else 0
            # else: a new version whose policy job has not run yet; that job announces it.
            new[position] = byte
        await conn.execute(UPSERT_ONE, uuid.uuid4(), tenant_id, bytes(new), day)
        return await _announce({tenant_id: announce})


# --- one policy -----------------------------------------------------------------------------

# $1 tenants, $2 codes (one per tenant), $3 policy id, $4 position, $5 new version (flags of
# the old version no longer count).
ANNOUNCE_POLICY = """
SELECT n.tenant_id FROM unnest($1::uuid[], $2::smallint[]) AS n(tenant_id, code)
LEFT JOIN policy_match_sets s ON s.tenant_id = n.tenant_id
WHERE n.code = -1
  AND ($5 OR s.codes IS NULL OR length(s.codes) <= $4 OR get_byte(s.codes, $4) < 128)
  AND NOT EXISTS (SELECT 1 FROM policy_dismissals d
                  WHERE d.tenant_id = n.tenant_id AND d.policy_id = $3::uuid)
"""

ENSURE_ROWS = """
INSERT INTO policy_match_sets (id, tenant_id, codes, as_of, updated_at)
SELECT gen_random_uuid(), n.tenant_id, '\\x'::bytea, $3::date, now()
FROM unnest($1::uuid[], $2::smallint[]) AS n(tenant_id, code) WHERE n.code <> -2
ON CONFLICT (tenant_id) DO NOTHING
"""

# $1 tenants, $2 new bytes (announced bit included), $3 position.
PUT_POLICY = """
UPDATE policy_match_sets s SET
    codes = set_byte(
        CASE WHEN length(s.codes) > $3 THEN s.codes
             ELSE s.codes || decode(repeat('00', $3 + 1 - length(s.codes)), 'hex') END,
        $3, n.byte),
    updated_at = now()
FROM unnest($1::uuid[], $2::smallint[]) AS n(tenant_id, byte)
WHERE s.tenant_id = n.tenant_id
  AND (n.byte <> 0 OR (length(s.codes) > $3 AND get_byte(s.codes, $3) <> 0))
"""

# Old bytes of the column, to keep their announced bits when the version did not change.
OLD_BITS = """
SELECT s.tenant_id FROM policy_match_sets s
WHERE length(s.codes) > $1 AND get_byte(s.codes, $1) >= 128
"""


async def store_policy(
    policy: Mapping[str, Any], tenants: Sequence[uuid.UUID], codes: npt.NDArray[Any], day: dt.date
) -> int:
    """One open policy's group for every enterprise in ``tenants`` (``codes`` in the same
    order): set-based, only rows that hold the pair or get it are written."""
    codes16 = [int(c) for c in codes]
    version = policy["version_number"]
    async with db.platform_scope():
        conn = _connection()
        await conn.execute("LOCK TABLE policy_match_sets IN SHARE ROW EXCLUSIVE MODE")
        position, column_version = await _allocate(conn, policy["id"], version)
        new_version = column_version != version
        announce = {
            r["tenant_id"]
            for r in await conn.fetch(
                ANNOUNCE_POLICY, tenants, codes16, policy["id"], position, new_version
            )
        }
        told = (
            set() if new_version else {r["tenant_id"] for r in await conn.fetch(OLD_BITS, position)}
        )
        told |= announce
        byte_codes = to_bytes(np.asarray(codes)).tolist()
        new_bytes = [
            b | (ANNOUNCED if t in told else 0) for t, b in zip(tenants, byte_codes, strict=True)
        ]
        await conn.execute(ENSURE_ROWS, tenants, codes16, day)
        await conn.execute(PUT_POLICY, tenants, new_bytes, position)
        if new_version:
            # Rows outside ``tenants`` keep no announcement of the old version either.
            await conn.execute(
                "UPDATE policy_match_sets SET codes = set_byte(codes, $1, "
                "get_byte(codes, $1) & 127) WHERE length(codes) > $1 "
                "AND get_byte(codes, $1) >= 128 AND NOT (tenant_id = ANY($2::uuid[]))",
                position,
                tenants,
            )
            await conn.execute(
                "UPDATE policy_match_columns SET version_number = $2 WHERE policy_id = $1",
                policy["id"],
                version,
            )
        return await _announce({t: [policy] for t in announce})


async def drop_policy(policy_id: uuid.UUID) -> None:
    """A policy closed (or was withdrawn): its column is cleared in every row and freed, and
    its dismissals go."""
    async with db.platform_scope():
        conn = _connection()
        await conn.execute("LOCK TABLE policy_match_sets IN SHARE ROW EXCLUSIVE MODE")
        position = await conn.fetchval(
            "DELETE FROM policy_match_columns WHERE policy_id = $1 RETURNING position", policy_id
        )
        if position is not None:
            await conn.execute(
                "UPDATE policy_match_sets SET codes = set_byte(codes, $1, 0) "
                "WHERE length(codes) > $1 AND get_byte(codes, $1) <> 0",
                position,
            )
        await conn.execute("DELETE FROM policy_dismissals WHERE policy_id = $1", policy_id)


# --- everyone against everything ------------------------------------------------------------


async def _read_all_codes(conn: Any) -> tuple[list[bytes], list[bytes]]:
    """Every row's tenant id (16 bytes) and codes, by binary COPY (no per-row objects
    beyond two bytes strings)."""
    buf = bytearray()

    async def sink(chunk: bytes) -> None:
        buf.extend(chunk)

    await conn.copy_from_query(
        "SELECT tenant_id, codes FROM policy_match_sets", output=sink, format="binary"
    )
    data = bytes(buf)
    pos = 11 + 4
    (ext,) = struct.unpack_from(">i", data, pos)
    pos += 4 + ext
    tenants, codes = [], []
    while True:
        (nfields,) = struct.unpack_from(">h", data, pos)
        if nfields == -1:
            break
        tenants.append(data[pos + 6 : pos + 22])
        (length,) = struct.unpack_from(">i", data, pos + 22)
        codes.append(data[pos + 26 : pos + 26 + length])
        pos += 26 + length
    return tenants, codes


async def store_matrix(
    tenants: Sequence[uuid.UUID],
    policies: Sequence[Mapping[str, Any]],
    matrix: npt.NDArray[Any],
    day: dt.date,
    *,
    timings: dict[str, float] | None = None,
) -> int:
    """A full re-match: ``matrix[j, i]`` is the code of ``policies[j]`` (every open policy)
    for ``tenants[i]``. Columns are re-packed (policy j at position j) and every row is
    rewritten in one transaction; rows of enterprises not in ``tenants`` (no longer
    subscribed) are carried over to the new positions. Call it inside
    ``lock_for_full_run`` opened before the portraits were read, so nothing written
    meanwhile is overwritten with older results. Returns how many (enterprise, policy)
    pairs were announced. ``timings`` collects seconds per phase (for the benchmark)."""
    lap = [time.perf_counter()]

    def mark(phase: str) -> None:
        now = time.perf_counter()
        if timings is not None:
            timings[phase] = timings.get(phase, 0.0) + now - lap[0]
        lap[0] = now

    n_policies, n_tenants = matrix.shape
    assert n_policies == len(policies) and n_tenants == len(tenants)
    async with db.platform_scope():
        conn = _connection()
        await conn.execute("LOCK TABLE policy_match_sets IN SHARE ROW EXCLUSIVE MODE")
        old_tenants, old_codes = await _read_all_codes(conn)
        columns = await _columns(conn)
        mark("read")

        tenant_bytes = [t.bytes for t in tenants]
        index = {b: i for i, b in enumerate(tenant_bytes)}
        extra = [t for t in old_tenants if t not in index]  # no longer subscribed
        all_tenants = tenant_bytes + extra
        for b in extra:
            index[b] = len(index)
        # Old bytes, one row per enterprise, one column per old position.
        width = max((pos for pos, _ in columns.values()), default=-1) + 1
        old = np.zeros((len(all_tenants), width), dtype=np.uint8)
        rows_at = np.array([index[t] for t in old_tenants], dtype=np.int64)
        if width and all(len(c) == width for c in old_codes):  # usual: one scatter
            old[rows_at] = np.frombuffer(b"".join(old_codes), dtype=np.uint8).reshape(-1, width)
        else:
            for i, codes in zip(rows_at.tolist(), old_codes, strict=True):
                n = min(len(codes), width)
                old[i, :n] = np.frombuffer(codes, dtype=np.uint8, count=n)
        # Old position of each open policy, and whether its announced bits still count
        # (same version). Nightly runs find every policy where the last one put it.
        old_pos = np.array([columns.get(p["id"], (-1, 0))[0] for p in policies], dtype=np.int64)
        counted = np.array(
            [columns.get(p["id"], (-1, 0))[1] == p["version_number"] for p in policies],
            dtype=bool,
        ) & (old_pos >= 0)
        in_place = width >= n_policies and np.array_equal(old_pos, np.arange(n_policies))
        mark("decode")

        new = np.empty((len(all_tenants), n_policies), dtype=np.uint8)
        new[:n_tenants] = to_bytes(matrix.T)
        if in_place:
            told_before = old[:, :n_policies] >= ANNOUNCED
            if not counted.all():
                told_before[:, ~counted] = False
        else:
            told_before = np.zeros((len(all_tenants), n_policies), dtype=bool)
            told_before[:, counted] = old[:, old_pos[counted]] >= ANNOUNCED
        # Enterprises no longer subscribed: their old bytes, moved to the new positions.
        have = old_pos >= 0
        extra_rows = old[n_tenants:]
        new[n_tenants:] = 0
        new[n_tenants:, have] = extra_rows[:, old_pos[have]] & 0x7F
        del old, extra_rows
        announce = new == ELIGIBLE_BYTE
        announce &= ~told_before
        announce[n_tenants:] = False
        pol_index = {p["id"]: j for j, p in enumerate(policies)}
        for r in await conn.fetch("SELECT tenant_id, policy_id FROM policy_dismissals"):
            i, j = index.get(r["tenant_id"].bytes), pol_index.get(r["policy_id"])
            if i is not None and j is not None:
                announce[i, j] = False
        told_before |= announce
        new |= told_before.view(np.uint8) << 7
        del told_before
        mark("bytes")

        data = memoryview(new.tobytes())
        row_ids = np.frombuffer(np.random.bytes(16 * len(all_tenants)), dtype=np.uint8).copy()
        row_ids = row_ids.reshape(-1, 16)
        row_ids[:, 6] = (row_ids[:, 6] & 0x0F) | 0x40  # a version-4 UUID
        row_ids[:, 8] = (row_ids[:, 8] & 0x3F) | 0x80
        ids = row_ids.tobytes()
        head = struct.Struct(">hi16si16si")
        tail = struct.pack(
            ">iiiq",
            4,
            (day - PG_EPOCH.date()).days,
            8,
            (clock.now() - PG_EPOCH) // dt.timedelta(microseconds=1),
        )

        async def rows() -> AsyncIterator[bytes]:
            yield COPY_SIGNATURE
            for start in range(0, len(all_tenants), ROWS_PER_CHUNK):
                parts: list[bytes | memoryview] = []
                for i in range(start, min(start + ROWS_PER_CHUNK, len(all_tenants))):
                    parts.append(
                        head.pack(5, 16, ids[16 * i : 16 * i + 16], 16, all_tenants[i], n_policies)
                    )
                    parts.append(data[i * n_policies : (i + 1) * n_policies])
                    parts.append(tail)
                yield b"".join(parts)
            yield b"\xff\xff"

        await conn.execute(
            "CREATE TEMP TABLE policy_match_load (LIKE policy_match_sets) ON COMMIT DROP"
        )
        await conn.copy_to_table(
            "policy_match_load",
            source=rows(),
            columns=("id", "tenant_id", "codes", "as_of", "updated_at"),
            format="binary",
        )
        mark("copy")
        await conn.execute(
            "INSERT INTO policy_match_sets SELECT * FROM policy_match_load "
            "ON CONFLICT (tenant_id) DO UPDATE SET codes = EXCLUDED.codes, "
            "as_of = EXCLUDED.as_of, updated_at = EXCLUDED.updated_at"
        )
        await conn.execute("DELETE FROM policy_match_columns")
        await conn.execute(
            "INSERT INTO policy_match_columns (id, policy_id, position, version_number) "
            "SELECT gen_random_uuid(), p, k - 1, v "
            "FROM unnest($1::uuid[], $2::integer[]) WITH ORDINALITY AS u(p, v, k)",
            [p["id"] for p in policies],
            [p["version_number"] for p in policies],
        )
        await conn.execute(
            "DELETE FROM policy_dismissals WHERE policy_id <> ALL($1::uuid[])",
            [p["id"] for p in policies],
        )
        mark("insert")

        new_eligible: dict[uuid.UUID, list[Mapping[str, Any]]] = {}
        a_tenant, a_policy = np.nonzero(announce)
        if len(a_tenant):
            # Only enterprises with members have anyone to tell (a first full run announces
            # millions of pairs; most synthetic or new enterprises have nobody to tell yet).
            candidates = [tenants[i] for i in np.unique(a_tenant).tolist()]
            heard = await conn.fetch(
                "SELECT DISTINCT tenant_id FROM memberships WHERE tenant_id = ANY($1::uuid[])",
                candidates,
            )
            told = np.isin(a_tenant, [index[r["tenant_id"].bytes] for r in heard])
            for i, j in zip(a_tenant[told].tolist(), a_policy[told].tolist(), strict=True):
                new_eligible.setdefault(tenants[i], []).append(policies[j])
        told_pairs = await _announce(new_eligible)
        mark("announce")
        return told_pairs


@asynccontextmanager
async def lock_for_full_run() -> AsyncIterator[Any]:
    """The scope a full re-match runs in: the table lock is taken before the portraits are
    read, so portrait and policy jobs that commit meanwhile wait, then run on newer data."""
    async with db.platform_scope() as txn:
        await _connection().execute("LOCK TABLE policy_match_sets IN SHARE ROW EXCLUSIVE MODE")
        yield txn

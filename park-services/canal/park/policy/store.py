"""Where match results live: one ``policy_match_sets`` row per enterprise, dismissals apart.

A full re-match of 100,000 enterprises × 1,000 policies yields ~12 million eligible / nearly
pairs. One row per pair (UUID key, foreign key, row-level security, three indexes) took minutes
to write; one row per enterprise with parallel arrays is 100,000 rows, written by binary COPY
into a temporary table and one ``INSERT … ON CONFLICT`` (COPY itself is refused on a table
under row-level security). See docs/decisions/0015-policy-match-sets.md.

Three writers, one per kind of change, all serialised by row locks or a table lock:

* ``store_enterprise`` — one enterprise against every open policy (its portrait changed);
* ``store_policy`` / ``drop_policy`` — one policy against every enterprise (published,
  changed, closed), set-based in SQL;
* ``store_matrix`` — everyone against everything (the nightly re-match), bulk.

Each announces a pair that became eligible, unless dismissed, once per policy version
(``notified_ids`` / ``notified_versions`` remember what was announced).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import struct
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from canal.park.policy.matcher import ELIGIBLE, NOT_ELIGIBLE
from canal.park.policy.tables import Dismissal, MatchSet
from canal.platform import db
from canal.platform.notifications.services import notify

# PostgreSQL binary COPY: dates count days and timestamps microseconds from 2000-01-01.
PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
UUID_OID, INT2_OID, INT4_OID = 2950, 21, 23
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
ROWS_PER_CHUNK = 2000

COLUMNS = (
    "id",
    "tenant_id",
    "policy_ids",
    "codes",
    "version_numbers",
    "notified_ids",
    "notified_versions",
    "as_of",
    "updated_at",
)


@dataclasses.dataclass
class StoredMatches:
    """One enterprise's stored state: ``codes[policy_id] = (code, version_number)``."""

    codes: dict[uuid.UUID, tuple[int, int]]
    notified: dict[uuid.UUID, int]
    dismissed: set[uuid.UUID]


async def read_enterprise(tenant_id: uuid.UUID) -> StoredMatches:
    async with db.tenant_scope(tenant_id):
        row = await MatchSet.select().where(MatchSet.tenant_id == tenant_id).first()
        dismissed = {
            r["policy_id"]
            for r in await Dismissal.select(Dismissal.policy_id).where(
                Dismissal.tenant_id == tenant_id
            )
        }
    if row is None:
        return StoredMatches({}, {}, dismissed)
    return StoredMatches(
        {
            p: (int(c), int(v))
            for p, c, v in zip(row["policy_ids"], row["codes"], row["version_numbers"], strict=True)
        },
        dict(zip(row["notified_ids"], row["notified_versions"], strict=True)),
        dismissed,
    )


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


# --- one enterprise -------------------------------------------------------------------------

UPSERT_ONE = (
    "INSERT INTO policy_match_sets (id, tenant_id, policy_ids, codes, version_numbers, "
    "notified_ids, notified_versions, as_of, updated_at) VALUES ({}, {}, {}::uuid[], "
    "{}::smallint[], {}::integer[], {}::uuid[], {}::integer[], {}, now()) "
    "ON CONFLICT (tenant_id) DO UPDATE SET policy_ids = EXCLUDED.policy_ids, "
    "codes = EXCLUDED.codes, version_numbers = EXCLUDED.version_numbers, "
    "notified_ids = EXCLUDED.notified_ids, notified_versions = EXCLUDED.notified_versions, "
    "as_of = EXCLUDED.as_of, updated_at = EXCLUDED.updated_at"
)


async def store_enterprise(
    tenant_id: uuid.UUID,
    policies: Sequence[Mapping[str, Any]],
    codes: Sequence[int],
    day: dt.date,
) -> int:
    """Replace one enterprise's groups with ``codes`` (one per open policy in ``policies``);
    policies no longer open drop out. Returns how many policies were announced."""
    async with db.tenant_scope(tenant_id):
        # The row lock keeps a concurrent policy job from announcing the same pair twice.
        locked = await MatchSet.raw(
            "SELECT notified_ids, notified_versions FROM policy_match_sets "
            "WHERE tenant_id = {} FOR UPDATE",
            tenant_id,
        )
        dismissed = {
            r["policy_id"]
            for r in await Dismissal.select(Dismissal.policy_id).where(
                Dismissal.tenant_id == tenant_id
            )
        }
        old = (
            dict(zip(locked[0]["notified_ids"], locked[0]["notified_versions"], strict=True))
            if locked
            else {}
        )
        open_ids = {p["id"] for p in policies}
        notified = {p: v for p, v in old.items() if p in open_ids}
        kept = [(p, int(c)) for p, c in zip(policies, codes, strict=True) if c != NOT_ELIGIBLE]
        announce = [
            p
            for p, c in kept
            if c == ELIGIBLE
            and notified.get(p["id"]) != p["version_number"]
            and p["id"] not in dismissed
        ]
        for p in announce:
            notified[p["id"]] = p["version_number"]
        await MatchSet.raw(
            UPSERT_ONE,
            uuid.uuid4(),
            tenant_id,
            [p["id"] for p, _ in kept],
            [c for _, c in kept],
            [p["version_number"] for p, _ in kept],
            list(notified),
            list(notified.values()),
            day,
        )
        return await _announce({tenant_id: announce})


# --- one policy -----------------------------------------------------------------------------


def _without(column: str, policy_param: str) -> str:
    """SQL: ``column`` with the element at the policy's position (in ``ids``) cut out."""
    ids = "s.notified_ids" if column.startswith("s.notified") else "s.policy_ids"
    pos = f"coalesce(array_position({ids}, {policy_param}), cardinality({ids}) + 1)"
    return f"({column}[:{pos} - 1] || {column}[{pos} + 1:])"


# $1 tenants, $2 codes (one per tenant), $3 policy id, $4 version number, $5 day.
ANNOUNCE_POLICY = """
SELECT n.tenant_id FROM unnest($1::uuid[], $2::smallint[]) AS n(tenant_id, code)
LEFT JOIN policy_match_sets s ON s.tenant_id = n.tenant_id
WHERE n.code = -1
  AND s.notified_versions[array_position(s.notified_ids, $3::uuid)] IS DISTINCT FROM $4
  AND NOT EXISTS (SELECT 1 FROM policy_dismissals d
                  WHERE d.tenant_id = n.tenant_id AND d.policy_id = $3::uuid)
"""

ENSURE_ROWS = """
INSERT INTO policy_match_sets (id, tenant_id, policy_ids, codes, version_numbers,
    notified_ids, notified_versions, as_of, updated_at)
SELECT gen_random_uuid(), n.tenant_id, '{}', '{}', '{}', '{}', '{}', $3::date, now()
FROM unnest($1::uuid[], $2::smallint[]) AS n(tenant_id, code) WHERE n.code <> -2
ON CONFLICT (tenant_id) DO NOTHING
"""

# $1 tenants, $2 codes, $3 policy id, $4 version number, $5 announce (per tenant).
PUT_POLICY = f"""
UPDATE policy_match_sets s SET
    policy_ids = {_without("s.policy_ids", "$3::uuid")}
        || CASE WHEN n.code <> -2 THEN ARRAY[$3::uuid] ELSE '{{}}'::uuid[] END,
    codes = {_without("s.codes", "$3::uuid")}
        || CASE WHEN n.code <> -2 THEN ARRAY[n.code] ELSE '{{}}'::smallint[] END,
    version_numbers = {_without("s.version_numbers", "$3::uuid")}
        || CASE WHEN n.code <> -2 THEN ARRAY[$4::integer] ELSE '{{}}'::integer[] END,
    notified_ids = CASE WHEN n.announce
        THEN {_without("s.notified_ids", "$3::uuid")} || ARRAY[$3::uuid]
        ELSE s.notified_ids END,
    notified_versions = CASE WHEN n.announce
        THEN {_without("s.notified_versions", "$3::uuid")} || ARRAY[$4::integer]
        ELSE s.notified_versions END,
    updated_at = now()
FROM unnest($1::uuid[], $2::smallint[], $5::boolean[]) AS n(tenant_id, code, announce)
WHERE s.tenant_id = n.tenant_id AND (n.code <> -2 OR $3::uuid = ANY(s.policy_ids))
"""

DROP_POLICY = f"""
UPDATE policy_match_sets s SET
    policy_ids = {_without("s.policy_ids", "$1::uuid")},
    codes = {_without("s.codes", "$1::uuid")},
    version_numbers = {_without("s.version_numbers", "$1::uuid")},
    notified_ids = {_without("s.notified_ids", "$1::uuid")},
    notified_versions = {_without("s.notified_versions", "$1::uuid")},
    updated_at = now()
WHERE $1::uuid = ANY(s.policy_ids) OR $1::uuid = ANY(s.notified_ids)
"""


def _connection() -> Any:
    """The asyncpg connection of the open scope (for COPY and array parameters)."""
    txn = db.engine().current_transaction.get()
    assert txn is not None, "open a db scope first"
    return txn.connection


async def store_policy(
    policy: Mapping[str, Any], tenants: Sequence[uuid.UUID], codes: npt.NDArray[Any], day: dt.date
) -> int:
    """One open policy's group for every enterprise in ``tenants`` (``codes`` in the same
    order): set-based, only rows that hold the pair or get it are touched."""
    codes16 = [int(c) for c in codes]
    async with db.platform_scope():
        conn = _connection()
        await conn.execute("LOCK TABLE policy_match_sets IN SHARE ROW EXCLUSIVE MODE")
        announce = {
            r["tenant_id"]
            for r in await conn.fetch(
                ANNOUNCE_POLICY, tenants, codes16, policy["id"], policy["version_number"]
            )
        }
        await conn.execute(ENSURE_ROWS, tenants, codes16, day)
        await conn.execute(
            PUT_POLICY,
            tenants,
            codes16,
            policy["id"],
            policy["version_number"],
            [t in announce for t in tenants],
        )
        return await _announce({t: [policy] for t in announce})


async def drop_policy(policy_id: uuid.UUID) -> None:
    """A policy closed (or was withdrawn): it leaves every enterprise's matches, its
    announcements and its dismissals."""
    async with db.platform_scope():
        conn = _connection()
        await conn.execute(DROP_POLICY, policy_id)
        await Dismissal.delete().where(Dismissal.policy_id == policy_id)


async def touched_by(policy_id: uuid.UUID) -> set[uuid.UUID]:
    async with db.platform_scope():
        rows = await _connection().fetch(
            "SELECT tenant_id FROM policy_match_sets WHERE $1::uuid = ANY(policy_ids)", policy_id
        )
    return {r["tenant_id"] for r in rows}


# --- everyone against everything ------------------------------------------------------------


def _uuid_keys(ids: npt.NDArray[Any]) -> npt.NDArray[np.uint64]:
    """The first 8 bytes of each UUID as a sortable integer (random enough to look up by;
    the caller checks the full value)."""
    return np.ascontiguousarray(ids).view(">u8").reshape(-1, 2)[:, 0].astype(np.uint64)


def _index_of(
    ids: npt.NDArray[Any], sorted_keys: npt.NDArray[Any], order: npt.NDArray[Any], known: Any
) -> npt.NDArray[np.int64]:
    """Position of each UUID (``V16``) in ``known`` (``V16``), or -1."""
    if not len(ids) or not len(known):
        return np.full(len(ids), -1, dtype=np.int64)
    keys = _uuid_keys(ids)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    idx = order[at]
    return np.where(known[idx] == ids, idx, -1).astype(np.int64)


async def _read_notified(
    conn: Any, tenant_index: Mapping[bytes, int]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]:
    """Every stored announcement as parallel arrays (tenant index, policy UUID, version),
    read by binary COPY and decoded with numpy — millions of UUID objects would take
    seconds."""
    buf = bytearray()

    async def sink(chunk: bytes) -> None:
        buf.extend(chunk)

    await conn.copy_from_query(
        "SELECT tenant_id, notified_ids, notified_versions FROM policy_match_sets "
        "WHERE cardinality(notified_ids) > 0",
        output=sink,
        format="binary",
    )
    data = bytes(buf)
    pos = 11 + 4
    (ext,) = struct.unpack_from(">i", data, pos)
    pos += 4 + ext
    tenants: list[npt.NDArray[Any]] = []
    ids: list[npt.NDArray[Any]] = []
    versions: list[npt.NDArray[Any]] = []
    uuid_elem = np.dtype([("len", ">i4"), ("v", "V16")])
    int_elem = np.dtype([("len", ">i4"), ("v", ">i4")])
    while True:
        (nfields,) = struct.unpack_from(">h", data, pos)
        if nfields == -1:
            break
        pos += 2 + 4
        tenant = data[pos : pos + 16]
        pos += 16
        arrays = []
        for elem in (uuid_elem, int_elem):
            (length,) = struct.unpack_from(">i", data, pos)
            ndim, _, _, n = struct.unpack_from(">iiii", data, pos + 4)
            start = pos + 4 + 12 + 8 * ndim
            arrays.append(np.frombuffer(data, dtype=elem, count=n, offset=start)["v"])
            pos += 4 + length
        index = tenant_index.get(tenant)
        if index is None:  # an enterprise no longer subscribed: its row is left alone
            continue
        tenants.append(np.full(len(arrays[0]), index, dtype=np.int64))
        ids.append(arrays[0])
        versions.append(arrays[1].astype(np.int32))
    if not tenants:
        return np.empty(0, np.int64), np.empty(0, "V16"), np.empty(0, np.int32)
    return np.concatenate(tenants), np.concatenate(ids), np.concatenate(versions)


class _Arrays:
    """Binary COPY encoding of one array column for all rows: the elements of every row
    laid end to end (``offsets`` tell where each row's run starts)."""

    def __init__(self, oid: int, elements: npt.NDArray[Any], counts: npt.NDArray[Any]):
        self.oid = oid
        self.width = elements.dtype.itemsize
        self.data = memoryview(elements.tobytes())
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).tolist()

    def field(self, row: int) -> list[bytes | memoryview]:
        a, b = self.offsets[row], self.offsets[row + 1]
        n = b - a
        if n == 0:
            return [struct.pack(">iiii", 12, 0, 0, self.oid)]
        return [
            struct.pack(">iiiiii", 20 + n * self.width, 1, 0, self.oid, n, 1),
            self.data[a * self.width : b * self.width],
        ]


def _elements(kind: str, values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    width = {"uuid": 16, "int2": 2, "int4": 4}[kind]
    dtype = np.dtype([("len", ">i4"), ("v", {"uuid": "V16", "int2": ">i2", "int4": ">i4"}[kind])])
    out = np.empty(len(values), dtype=dtype)
    out["len"] = width
    out["v"] = values
    return out


async def store_matrix(
    tenants: Sequence[uuid.UUID],
    policies: Sequence[Mapping[str, Any]],
    matrix: npt.NDArray[Any],
    day: dt.date,
    *,
    started: dt.datetime | None = None,
    timings: dict[str, float] | None = None,
) -> int:
    """A full re-match: ``matrix[j, i]`` is the code of ``policies[j]`` (every open policy)
    for ``tenants[i]``. Every enterprise's row is replaced in one transaction; a row written
    since ``started`` (a portrait or policy job that ran while the matrix was computed, from
    newer data) is kept. Returns how many (enterprise, policy) pairs were announced.
    ``timings`` collects seconds per phase (for the benchmark)."""
    clock = [time.perf_counter()]

    def mark(phase: str) -> None:
        now = time.perf_counter()
        if timings is not None:
            timings[phase] = timings.get(phase, 0.0) + now - clock[0]
        clock[0] = now

    started = started or dt.datetime.now(dt.UTC)
    n_policies, n_tenants = matrix.shape
    assert n_policies == len(policies) and n_tenants == len(tenants)
    policy_uuids = np.frombuffer(b"".join(p["id"].bytes for p in policies), dtype="V16")
    versions = np.array([p["version_number"] for p in policies], dtype=np.int32)
    tenant_bytes = [t.bytes for t in tenants]
    tenant_index = {b: i for i, b in enumerate(tenant_bytes)}
    pkeys = _uuid_keys(policy_uuids)
    porder = np.argsort(pkeys, kind="stable")
    pkeys_sorted = pkeys[porder]

    by_tenant = np.ascontiguousarray(matrix.T)
    pair_tenant, pair_policy = np.nonzero(by_tenant != NOT_ELIGIBLE)
    pair_codes = by_tenant[pair_tenant, pair_policy].astype(np.int16)
    eligible = pair_codes == ELIGIBLE
    eligible_keys = pair_tenant[eligible] * n_policies + pair_policy[eligible]
    mark("pairs")

    async with db.platform_scope():
        conn = _connection()
        # Other writers (portrait and policy jobs) wait until this commits; readers do not.
        await conn.execute("LOCK TABLE policy_match_sets IN SHARE ROW EXCLUSIVE MODE")
        old_tenant, old_ids, old_versions = await _read_notified(conn, tenant_index)
        mark("read_announced")
        old_policy = _index_of(old_ids, pkeys_sorted, porder, policy_uuids)
        still_open = old_policy >= 0
        old_tenant, old_policy, old_versions = (
            old_tenant[still_open],
            old_policy[still_open],
            old_versions[still_open],
        )
        old_keys = old_tenant * n_policies + old_policy
        dismissed_rows = await conn.fetch(
            "SELECT tenant_id, policy_id FROM policy_dismissals WHERE policy_id = ANY($1::uuid[])",
            [p["id"] for p in policies],
        )
        pol_index = {p["id"]: j for j, p in enumerate(policies)}
        dismissed_keys = np.array(
            [
                tenant_index[r["tenant_id"].bytes] * n_policies + pol_index[r["policy_id"]]
                for r in dismissed_rows
                if r["tenant_id"].bytes in tenant_index
            ],
            dtype=np.int64,
        )
        current = old_versions == versions[old_policy]
        announce_keys = eligible_keys[
            ~np.isin(eligible_keys, old_keys[current]) & ~np.isin(eligible_keys, dismissed_keys)
        ]
        # Announcements kept (other pairs) plus the new ones at the current version.
        keep = ~np.isin(old_keys, announce_keys)
        notified_keys = np.concatenate([old_keys[keep], announce_keys])
        notified_versions = np.concatenate(
            [old_versions[keep], versions[announce_keys % n_policies]]
        )
        order = np.argsort(notified_keys, kind="stable")
        notified_keys, notified_versions = notified_keys[order], notified_versions[order]
        notified_tenant, notified_policy = np.divmod(notified_keys, n_policies)
        mark("announce_diff")

        per_row = np.bincount(pair_tenant, minlength=n_tenants)
        notified_per_row = np.bincount(notified_tenant, minlength=n_tenants)
        columns = [
            _Arrays(UUID_OID, _elements("uuid", policy_uuids[pair_policy]), per_row),
            _Arrays(INT2_OID, _elements("int2", pair_codes), per_row),
            _Arrays(INT4_OID, _elements("int4", versions[pair_policy]), per_row),
            _Arrays(UUID_OID, _elements("uuid", policy_uuids[notified_policy]), notified_per_row),
            _Arrays(INT4_OID, _elements("int4", notified_versions), notified_per_row),
        ]
        mark("encode_columns")
        row_ids = bytearray(np.random.bytes(16 * n_tenants))
        tail = struct.pack(
            ">iiiq",
            4,
            (day - PG_EPOCH.date()).days,
            8,
            (dt.datetime.now(dt.UTC) - PG_EPOCH) // dt.timedelta(microseconds=1),
        )

        async def rows() -> AsyncIterator[bytes]:
            yield COPY_SIGNATURE
            for start in range(0, n_tenants, ROWS_PER_CHUNK):
                parts: list[bytes | memoryview] = []
                for i in range(start, min(start + ROWS_PER_CHUNK, n_tenants)):
                    row_id = uuid.UUID(bytes=bytes(row_ids[16 * i : 16 * i + 16]), version=4)
                    parts.append(
                        struct.pack(">hi16si16s", 9, 16, row_id.bytes, 16, tenant_bytes[i])
                    )
                    for column in columns:
                        parts.extend(column.field(i))
                    parts.append(tail)
                yield b"".join(parts)
            yield b"\xff\xff"

        await conn.execute(
            "CREATE TEMP TABLE policy_match_load (LIKE policy_match_sets) ON COMMIT DROP"
        )
        await conn.copy_to_table(
            "policy_match_load", source=rows(), columns=COLUMNS, format="binary"
        )
        mark("copy")
        written = await conn.fetch(
            "INSERT INTO policy_match_sets SELECT * FROM policy_match_load "
            "ON CONFLICT (tenant_id) DO UPDATE SET policy_ids = EXCLUDED.policy_ids, "
            "codes = EXCLUDED.codes, version_numbers = EXCLUDED.version_numbers, "
            "notified_ids = EXCLUDED.notified_ids, "
            "notified_versions = EXCLUDED.notified_versions, as_of = EXCLUDED.as_of, "
            "updated_at = EXCLUDED.updated_at WHERE policy_match_sets.updated_at < $1 "
            "RETURNING tenant_id",
            started,
        )
        mark("insert")
        await conn.execute(
            "DELETE FROM policy_dismissals WHERE policy_id <> ALL($1::uuid[])",
            [p["id"] for p in policies],
        )
        new_eligible: dict[uuid.UUID, list[Mapping[str, Any]]] = {}
        if len(announce_keys):
            replaced = {tenant_index[r["tenant_id"].bytes] for r in written}
            a_tenant, a_policy = np.divmod(announce_keys, n_policies)
            candidates = [tenants[i] for i in np.unique(a_tenant).tolist() if i in replaced]
            # Only enterprises with members have anyone to tell (saves a loop over millions
            # of pairs when a first full run announces everything).
            heard = await conn.fetch(
                "SELECT DISTINCT tenant_id FROM memberships WHERE tenant_id = ANY($1::uuid[])",
                candidates,
            )
            told = np.isin(a_tenant, [tenant_index[r["tenant_id"].bytes] for r in heard])
            for i, j in zip(a_tenant[told].tolist(), a_policy[told].tolist(), strict=True):
                new_eligible.setdefault(tenants[i], []).append(policies[j])
        told_pairs = await _announce(new_eligible)
        mark("announce")
        return told_pairs

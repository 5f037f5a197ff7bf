"""The match store (``canal.park.policy.store``): one row per enterprise, written by three paths
(one enterprise, one policy, everyone at once) that must agree with the reference evaluator and
with each other; dismissals survive a full re-match; a pair is announced once per policy
version; row-level security keeps each enterprise to its own row at the SQL level."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import numpy as np
import pytest

from canal.park.policy import services, store
from canal.park.policy.matcher import ELIGIBLE, NOT_ELIGIBLE
from canal.park.policy.rules import evaluate
from canal.park.policy.tables import Dismissal, MatchSet
from canal.platform import db
from canal.platform.notifications.tables import Notification
from tests.policy.helpers import CRITERIA, certificate, org, policy_json

# The app's lifespan starts the pool on a migrated test database.
pytestmark = pytest.mark.usefixtures("app")

HIGH_TECH = [certificate()]
# Each world's policy asks for a region of its own, so the policies other tests published
# (same database) match none of these enterprises and each announcement names only this one.
REGION = "371599"
ELIGIBLE_FACTS = {"region_code": REGION, "employees": 120, "certifications": HIGH_TECH}
NEARLY_FACTS = ELIGIBLE_FACTS | {"employees": 8}  # the third criterion (index 2) unmet
OTHER_REGION = ELIGIBLE_FACTS | {"region_code": "440300", "employees": 8}  # two unmet


async def _told(user_id: uuid.UUID, title: str) -> int:
    async with db.user_scope(user_id):
        rows = await Notification.select(Notification.body_zh).where(
            (Notification.user_id == user_id) & (Notification.kind == "policy_match")
        )
    return sum(title in r["body_zh"] for r in rows)


async def _world() -> dict[str, Any]:
    _, _, gctx = await org("government")
    region = f"37{uuid.uuid4().int % 10**4:04d}"
    people = {}
    for name, facts in (
        ("eligible", ELIGIBLE_FACTS),
        ("nearly", NEARLY_FACTS),
        ("other", OTHER_REGION),
    ):
        owner, tenant, ctx = await org("enterprise")
        if facts["region_code"] == REGION:
            facts = facts | {"region_code": region}
        await services.set_facts(ctx, facts)
        people[name] = (owner, tenant, ctx, facts)
    criteria = {
        "all": [{"fact": "region_code", "op": "in", "values": [region]}, *CRITERIA["all"][1:]]
    }
    data = policy_json(criteria)
    policy_id = await services.create_policy(gctx, services.parse_policy(data), publish=True)
    return {"gctx": gctx, "people": people, "policy_id": policy_id, "data": data}


def _expected(policy: dict[str, Any], facts: dict[str, Any]) -> int | None:
    """The reference evaluator's code for a pair, None when not eligible (not stored)."""
    portrait = services.portrait_of(
        {"fact": k, "value": services.parse_fact(k, v)} for k, v in facts.items()
    )
    result = evaluate(services.policy_rule(policy), portrait, services.today())
    if result.group.value == "eligible":
        return ELIGIBLE
    if result.group.value == "nearly":
        return result.missing_criterion
    return None


async def _stored(tenant_id: uuid.UUID, policy_id: uuid.UUID) -> tuple[int, int] | None:
    return (await store.read_enterprise(tenant_id)).codes.get(policy_id)


async def test_three_write_paths_store_what_the_reference_evaluator_says():
    w = await _world()
    policy = await services.catalogue_get(w["policy_id"])
    expected = {name: _expected(policy, p[3]) for name, p in w["people"].items()}
    assert expected == {"eligible": ELIGIBLE, "nearly": 2, "other": None}

    def want(name: str) -> tuple[int, int] | None:
        code = expected[name]
        return None if code is None else (code, 1)

    # 1. one policy against every enterprise (publishing enqueued this job)
    await services.rematch_policy(w["policy_id"])
    for name, (_, tenant, _, _) in w["people"].items():
        assert await _stored(tenant.id, w["policy_id"]) == want(name), name
    # 2. one enterprise against every policy
    for name, (_, tenant, _, _) in w["people"].items():
        await services.rematch_enterprise(tenant.id)
        assert await _stored(tenant.id, w["policy_id"]) == want(name), name
    # 3. everyone against everything, through the bulk COPY path
    await services.rematch_all()
    for name, (_, tenant, _, _) in w["people"].items():
        assert await _stored(tenant.id, w["policy_id"]) == want(name), name

    # A new version: every path stores the version it matched against.
    changed = services.parse_policy(w["data"] | {"summary": "第二版"})
    assert await services.update_policy(w["gctx"], w["policy_id"], changed) == 2
    await services.rematch_policy(w["policy_id"])
    _, eligible, ectx, _ = w["people"]["eligible"]
    assert await _stored(eligible.id, w["policy_id"]) == (ELIGIBLE, 2)
    [view] = [m for m in await services.matches_view(ectx) if m.policy["id"] == w["policy_id"]]
    assert view.group == "eligible" and view.version_number == 2

    # The enterprise falls out of the group: the pair leaves its row.
    await services.set_facts(ectx, {"region_code": "440300", "employees": 8})
    await services.rematch_all()
    assert await _stored(eligible.id, w["policy_id"]) is None


async def test_bulk_store_round_trips_a_matrix_and_keeps_rows_written_meanwhile():
    w = await _world()
    tenants = [t.id for _, t, _, _ in w["people"].values()]
    day = services.today()
    policies = await services.open_catalogue(day)
    rng = np.random.default_rng(7)
    matrix = rng.choice([ELIGIBLE, NOT_ELIGIBLE, 0, 3], size=(len(policies), len(tenants)))
    async with store.lock_for_full_run():
        await store.store_matrix(tenants, policies, matrix.astype(np.int8), day)
    for i, tenant_id in enumerate(tenants):
        stored = (await store.read_enterprise(tenant_id)).codes
        want = {
            p["id"]: (int(matrix[j, i]), p["version_number"])
            for j, p in enumerate(policies)
            if matrix[j, i] != NOT_ELIGIBLE
        }
        assert stored == want

    # An enterprise left out of a full run (no longer subscribed) keeps its results, moved
    # to the re-packed columns.
    _, tenant, _, _ = w["people"]["eligible"]
    await services.rematch_enterprise(tenant.id)
    kept = await store.read_enterprise(tenant.id)
    assert kept.codes[w["policy_id"]] == (ELIGIBLE, 1)
    others = [t for t in tenants if t != tenant.id]
    policies = list(reversed(policies))  # every policy lands on another position
    matrix = np.full((len(policies), len(others)), NOT_ELIGIBLE, dtype=np.int8)
    async with store.lock_for_full_run():
        await store.store_matrix(others, policies, matrix, day)
    assert await store.read_enterprise(tenant.id) == kept
    assert (await store.read_enterprise(others[0])).codes == {}


async def test_dismissal_survives_a_full_rematch_and_silences_the_announcement():
    w = await _world()
    owner, tenant, ctx, _ = w["people"]["eligible"]
    title = w["data"]["title"]
    await services.set_dismissed(ctx, w["policy_id"], True)
    for _ in range(2):
        await services.rematch_all()
        [view] = [m for m in await services.matches_view(ctx) if m.policy["id"] == w["policy_id"]]
        assert view.dismissed and view.group == "eligible"
    assert await _told(owner.user_id, title) == 0
    # Shown again: the next matching announces it (it was never announced at this version).
    await services.set_dismissed(ctx, w["policy_id"], False)
    await services.rematch_all()
    assert await _told(owner.user_id, title) == 1
    # Dismissing a policy that is not in the catalogue answers 404 and stores nothing.
    with pytest.raises(Exception) as refused:
        await services.set_dismissed(ctx, uuid.uuid4(), True)
    assert getattr(refused.value, "status", None) == 404
    async with db.tenant_scope(tenant.id):
        assert await Dismissal.count().where(Dismissal.tenant_id == tenant.id) == 0


async def test_announced_once_per_version_whichever_path_runs():
    w = await _world()
    owner, tenant, _, _ = w["people"]["eligible"]
    near_owner, _, _, _ = w["people"]["nearly"]
    title = w["data"]["title"]
    await services.rematch_all()
    await services.rematch_all()
    await services.rematch_policy(w["policy_id"])
    await services.rematch_enterprise(tenant.id)
    assert await _told(owner.user_id, title) == 1
    assert await _told(near_owner.user_id, title) == 0
    # A new version is announced again, once, by whichever path sees it first.
    changed = services.parse_policy(w["data"] | {"summary": "第二版"})
    await services.update_policy(w["gctx"], w["policy_id"], changed)
    await services.rematch_all()
    await services.rematch_policy(w["policy_id"])
    await services.rematch_enterprise(tenant.id)
    assert await _told(owner.user_id, title) == 2


async def test_closed_policy_leaves_matches_announcements_and_dismissals():
    w = await _world()
    _, tenant, ctx, _ = w["people"]["eligible"]
    await services.rematch_policy(w["policy_id"])
    await services.set_dismissed(ctx, w["policy_id"], True)
    after_close = services.today() + dt.timedelta(days=31)
    await services.rematch_policy(w["policy_id"], after_close)
    stored = await store.read_enterprise(tenant.id)
    assert w["policy_id"] not in stored.codes
    assert w["policy_id"] not in stored.notified
    assert w["policy_id"] not in stored.dismissed


async def test_row_level_security_keeps_each_enterprise_to_its_own_row():
    w = await _world()
    await services.rematch_all()
    _, mine, ctx, _ = w["people"]["eligible"]
    _, theirs, tctx, _ = w["people"]["nearly"]
    await services.set_dismissed(tctx, w["policy_id"], True)
    async with db.tenant_scope(mine.id, ctx.user_id):
        rows = await MatchSet.raw("SELECT tenant_id FROM policy_match_sets")
        assert {r["tenant_id"] for r in rows} == {mine.id}
        assert await Dismissal.raw("SELECT * FROM policy_dismissals") == []
        changed = await MatchSet.raw(
            "UPDATE policy_match_sets SET codes = decode('', 'hex') WHERE tenant_id = {} "
            "RETURNING id",
            theirs.id,
        )
        assert changed == []
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
        async with db.tenant_scope(mine.id, ctx.user_id):
            await Dismissal.raw(
                "INSERT INTO policy_dismissals (id, tenant_id, policy_id, created_at) "
                "VALUES ({}, {}, {}, now())",
                uuid.uuid4(),
                theirs.id,
                w["policy_id"],
            )
    # Outside any scope nothing is visible at all; the other enterprise's state is intact.
    async with db.transaction():
        assert await MatchSet.raw("SELECT id FROM policy_match_sets") == []
    stored = await store.read_enterprise(theirs.id)
    assert stored.codes[w["policy_id"]] == (2, 1) and w["policy_id"] in stored.dismissed


async def test_migration_moves_pair_rows_into_byte_rows(runtime):
    """The data step of the migration that replaced ``policy_matches``, run against a
    stand-in of the old table (a temporary table of that name, in a rolled-back
    transaction)."""
    from importlib import import_module

    migration = "canal.park.policy.piccolo_migrations.policy_2026_11_24t11_29_27_587586"
    move = import_module(migration).MOVE_MATCHES
    _, a, _ = await org("enterprise")
    _, b, _ = await org("enterprise")
    p1, p2 = sorted([uuid.uuid4(), uuid.uuid4()])  # positions follow the policy ids
    conn = await asyncpg.connect(runtime.owner_dsn)
    txn = conn.transaction()
    await txn.start()
    try:
        await conn.execute("SELECT set_config('app.scope', 'platform', true)")
        await conn.execute("DELETE FROM policy_match_columns")
        await conn.execute(
            "CREATE TEMP TABLE policy_matches (id uuid, tenant_id uuid, policy_id uuid, "
            "version_id uuid, version_number integer, grp varchar, missing_index smallint, "
            "as_of date, dismissed boolean, notified_version integer, updated_at timestamptz)"
        )
        old = [
            (a.id, p1, 2, "eligible", None, False, 2),  # announced at the current version
            (a.id, p2, 1, "nearly", 3, True, None),  # dismissed
            (b.id, p1, 2, "not_eligible", None, True, 1),  # announced at an older version
        ]
        await conn.executemany(
            "INSERT INTO policy_matches VALUES (gen_random_uuid(), $1, $2, gen_random_uuid(), "
            "$3, $4, $5, current_date, $6, $7, now())",
            old,
        )
        await conn.execute(move)
        await conn.execute("SELECT set_config('app.scope', 'platform', true)")
        columns = await conn.fetch(
            "SELECT policy_id, position, version_number FROM policy_match_columns ORDER BY position"
        )
        assert [(c["policy_id"], c["version_number"]) for c in columns] == [(p1, 2), (p2, 1)]
        codes = {
            r["tenant_id"]: r["codes"]
            for r in await conn.fetch(
                "SELECT tenant_id, codes FROM policy_match_sets WHERE tenant_id = ANY($1::uuid[])",
                [a.id, b.id],
            )
        }
        assert codes == {a.id: bytes([1 | 0x80, 2 + 3]), b.id: bytes([0, 0])}
        dismissed = {
            (r["tenant_id"], r["policy_id"])
            for r in await conn.fetch("SELECT tenant_id, policy_id FROM policy_dismissals")
        }
        assert {(a.id, p2), (b.id, p1)} <= dismissed
        # Room in each page, so a full re-match updates rows in place (HOT).
        options = await conn.fetchval(
            "SELECT reloptions FROM pg_class WHERE relname = 'policy_match_sets'"
        )
        assert "fillfactor=45" in options
    finally:
        await txn.rollback()
        await conn.close()


@pytest.mark.slow  # waits for a lock
async def test_a_portrait_job_waits_for_a_full_run_and_then_wins():
    """A full run holds the table lock from before it reads portraits; an enterprise job
    that starts meanwhile waits (no deadlock) and then writes its newer result."""
    import asyncio

    w = await _world()
    _, tenant, _, _ = w["people"]["eligible"]
    day = services.today()
    policies = await services.open_catalogue(day)
    locked, release = asyncio.Event(), asyncio.Event()

    async def full_run_with_old_data() -> None:
        async with store.lock_for_full_run():
            locked.set()
            await release.wait()
            stale = np.full((len(policies), 1), NOT_ELIGIBLE, dtype=np.int8)
            await store.store_matrix([tenant.id], policies, stale, day)

    full = asyncio.create_task(full_run_with_old_data())
    await locked.wait()
    job = asyncio.create_task(services.rematch_enterprise(tenant.id))
    await asyncio.sleep(0.5)
    assert not job.done()  # waiting for the full run's lock
    release.set()
    await asyncio.wait_for(full, 30)
    await asyncio.wait_for(job, 30)
    assert await _stored(tenant.id, w["policy_id"]) == (ELIGIBLE, 1)

"""``canal demo``'s data: seeded through the real services, idempotent, all or nothing, coherent,
and dated from the day it is seeded — today, and with the clock moved well ahead."""

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from canal.platform import clock, db

# seeds the whole demo district in a subprocess
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# argv[1]: "plain", "half-made" (an earlier start stopped after making people) or "fails" (a
# module's seeding raises half-way: nothing may stay behind, and the next start just works).
SEED = """
import asyncio, sys
from canal.platform import demo, modules
from canal.platform.demo import seed_demo
from canal.platform.runtime import migrate, prepare
from canal.platform.settings import get_settings

async def main(scenario):
    runtime = prepare(get_settings())
    await migrate(runtime)
    if scenario == "half-made":
        from canal.platform import db
        from canal.platform.identity.services import create_user
        await db.start_pool(runtime.app_dsn, min_size=1, max_size=2)
        await create_user("13806351002", "Half-made-1", "张伟")
        await db.close_pool()
    if scenario == "fails":
        policy = modules.registry()["policy"]
        real_seed = policy.seed_demo
        async def broken(world):
            await real_seed(world)
            raise RuntimeError("stopped half-way on purpose")
        object.__setattr__(policy, "seed_demo", broken)
        try:
            await seed_demo(runtime)
        except RuntimeError as error:
            assert "on purpose" in str(error)
        else:
            raise AssertionError("the broken seeding did not fail")
        from canal.platform import db
        await db.start_pool(runtime.app_dsn, min_size=1, max_size=2)
        from canal.platform.identity.tables import User
        assert not await User.exists(), "a failed seeding left people behind"
        await db.close_pool()
        object.__setattr__(policy, "seed_demo", real_seed)
    first = await seed_demo(runtime)
    again = await seed_demo(runtime)
    assert [x.login for x in first] == [x.login for x in again]

asyncio.run(main(sys.argv[1]))
"""


def _offset_to(moment: dt.datetime) -> float:
    return (moment - clock.now()).total_seconds()


SCENARIOS = {
    # Today, after a seeding that failed half-way in this very run.
    "today": lambda: (0.0, "fails"),
    # 2027-06-30 23:30 UTC is already 1 July in Beijing; an earlier start left people behind.
    "beijing-tomorrow": lambda: (
        _offset_to(dt.datetime(2027, 6, 30, 23, 30, tzinfo=dt.UTC)),
        "half-made",
    ),
    # A year and a half from now.
    "eighteen-months": lambda: (548 * 86400.0, "plain"),
}


@pytest.mark.parametrize("when", list(SCENARIOS))
async def test_demo_seeds_a_coherent_district(runtime, settings, when):
    offset, scenario = SCENARIOS[when]()
    seeded_on = (clock.now() + dt.timedelta(seconds=offset)).astimezone(clock.display_tz()).date()
    name = f"canal_demo_{uuid.uuid4().hex[:8]}"
    env = dict(
        os.environ,
        CANAL_DATABASE_NAME=name,
        CANAL_LOG_JSON="false",
        CANAL_CLOCK_OFFSET_SECONDS=str(offset),
    )
    if settings.database_url:
        env["CANAL_DATABASE_URL"] = settings.database_url
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", SEED, scenario],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    logins_file = settings.var_dir / f"demo-logins-{name}.json"
    owner_dsn = db.owner_url(msgspec_replace(settings, name), runtime.server_url)
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        logins = json.loads(logins_file.read_text())
        conn = await asyncpg.connect(owner_dsn)
        try:
            await _check_district(conn, runtime, name, logins)
            await _check_dated_from(conn, seeded_on)
        finally:
            await conn.close()
    finally:
        await db.drop_database(msgspec_replace(settings, name), runtime.server_url)
        logins_file.unlink(missing_ok=True)
        await _drop_indexes(runtime, name)


async def _check_dated_from(conn, seeded_on: dt.date) -> None:
    """The story is the same on any day: windows open around the day of seeding, the demo's
    applications went in, and the vouchers and certificates run ahead of it."""
    windows = await conn.fetch(
        "SELECT title, window_opens, window_closes FROM policy_catalogue "
        "WHERE window_opens IS NOT NULL"
    )
    open_now = [w for w in windows if w["window_opens"] <= seeded_on <= w["window_closes"]]
    upcoming = [w for w in windows if w["window_opens"] > seeded_on]
    assert len(open_now) >= 10, (seeded_on, windows)
    assert upcoming, "the demo also shows a policy whose window opens later"
    assert all(
        (w["window_closes"] - seeded_on).days <= 400 and (seeded_on - w["window_opens"]).days <= 400
        for w in windows
    ), "every window is near the day of seeding, none stuck on the day it was written"
    statuses = sorted(
        r["status"] for r in await conn.fetch("SELECT status FROM policy_applications")
    )
    assert statuses == ["accepted", "submitted"], statuses
    expiries = [
        clock.local_date(r["expires_at"])
        for r in await conn.fetch("SELECT expires_at FROM market_vouchers")
    ]
    assert expiries and all(day > seeded_on for day in expiries)
    # The dated facts moved too: the high-tech certificate is still valid on the day of seeding.
    certifications = await conn.fetchval(
        "SELECT f.value FROM policy_facts f JOIN tenants t ON t.id = f.tenant_id "
        "WHERE t.slug = 'lc-bearing' AND f.fact = 'certifications'"
    )
    certifications = json.loads(certifications)
    [hightech] = [c for c in certifications if c["name"] == "高新技术企业"]
    assert dt.date.fromisoformat(hightech["valid_from"]) <= seeded_on
    assert dt.date.fromisoformat(hightech["valid_to"]) > seeded_on


async def _check_district(conn, runtime, name: str, logins: list[dict]) -> None:
    tenants = {r["slug"]: r for r in await conn.fetch("SELECT slug, name, kind FROM tenants")}
    modules = await conn.fetch(
        "SELECT t.slug, m.module_key FROM module_subscriptions m "
        "JOIN tenants t ON t.id = m.tenant_id WHERE m.status = 'active'"
    )
    totp = await conn.fetchval(
        "SELECT totp_enabled FROM users WHERE email = 'admin@szdc.example.cn'"
    )
    pending = await conn.fetchval("SELECT count(*) FROM invitations WHERE accepted_at IS NULL")
    # Only the welcome (kind "system"): modules' demo data may notify people as well.
    welcomed = await conn.fetchval("SELECT count(*) FROM notifications WHERE kind = 'system'")
    policy_matches = await conn.fetchval(
        "SELECT count(*) FROM policy_match_sets m JOIN tenants t ON t.id = m.tenant_id "
        "JOIN policy_match_columns c ON c.position < length(m.codes) "
        "WHERE t.slug = 'lc-bearing' AND get_byte(m.codes, c.position) & 127 = 1"
    )
    catalogue = await conn.fetchval("SELECT count(*) FROM policy_catalogue")
    live_listings = {
        str(r["id"])
        for r in await conn.fetch("SELECT id FROM market_listings WHERE status = 'live'")
    }
    indexed = await _indexed_ids(runtime, f"{name}_service_listings")
    assert tenants["szdc"]["kind"] == "operator"
    assert tenants["szdc"]["name"] == "数字东昌大数据有限公司"
    assert tenants["jiaming-park"]["name"] == "嘉明经济开发区"
    assert {"lc-bearing", "dc-steelpipe", "shuzhi-soft", "guangming-community"} <= set(tenants)
    assert ("lc-bearing", "policy") in {(m["slug"], m["module_key"]) for m in modules}
    assert totp is True  # operator staff must use two-factor
    assert pending == 1
    assert welcomed == len(logins)  # everyone finds a welcome in the inbox
    assert catalogue >= 20 and policy_matches >= 1  # the policy module's demo data
    assert all(x["password"] for x in logins) and len({x["password"] for x in logins}) == 1
    assert logins[0]["totp_secret"]
    # The scratch database got its own search indexes (not the demo's), and the catalogue's
    # index holds exactly its live listings: nothing twice, nothing from another database.
    assert live_listings and indexed == live_listings


async def _indexed_ids(runtime, uid: str) -> set[str]:
    import meilisearch

    client = meilisearch.Client(runtime.meili_url, runtime.meili_key)
    found = await asyncio.to_thread(
        lambda: client.index(uid).get_documents({"limit": 1000, "fields": ["id"]})
    )
    return {str(d.id) for d in found.results}


async def _drop_indexes(runtime, prefix: str) -> None:
    import meilisearch

    client = meilisearch.Client(runtime.meili_url, runtime.meili_key)
    indexes = await asyncio.to_thread(lambda: client.get_indexes({"limit": 1000})["results"])
    for index in indexes:
        if index.uid.startswith(f"{prefix}_"):
            await asyncio.to_thread(client.delete_index, index.uid)


def msgspec_replace(settings, name):
    import msgspec

    return msgspec.structs.replace(settings, database_name=name)

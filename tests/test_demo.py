"""``canal demo``'s data: seeded through the real services, idempotent, and coherent."""

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg

from canal.platform import db

ROOT = Path(__file__).resolve().parents[1]
SEED = """
import asyncio
from canal.platform.demo import seed_demo
from canal.platform.runtime import migrate, prepare
from canal.platform.settings import get_settings

async def main():
    runtime = prepare(get_settings())
    await migrate(runtime)
    first = await seed_demo(runtime)
    again = await seed_demo(runtime)
    assert [x.login for x in first] == [x.login for x in again]

asyncio.run(main())
"""


async def test_demo_seeds_a_coherent_district(runtime, settings):
    name = f"canal_demo_{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, CANAL_DATABASE_NAME=name, CANAL_LOG_JSON="false")
    if settings.database_url:
        env["CANAL_DATABASE_URL"] = settings.database_url
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", SEED],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    logins_file = settings.var_dir / f"demo-logins-{name}.json"
    logins = json.loads(logins_file.read_text())
    owner_dsn = db.owner_url(msgspec_replace(settings, name), runtime.server_url)
    conn = await asyncpg.connect(owner_dsn)
    try:
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
    finally:
        await conn.close()
        await db.drop_database(msgspec_replace(settings, name), runtime.server_url)
        logins_file.unlink()
        await _drop_indexes(runtime, name)
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

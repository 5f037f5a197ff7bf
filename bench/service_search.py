"""Service supermarket search: the catalogue's search API through the portal vs the same
search straight against Meilisearch, in one run.

Workload: 50,000 synthetic live listings (500 providers, the eight categories, four areas,
Chinese titles and descriptions) in the ``service_listings`` index. 1,000 random faceted
Chinese searches (a one- to four-character word; a category in half of them, a price range in
half, an area in a third; facets on category, area, provider and price model), run 8 at a time:

* portal — ``GET /api/v1/t/{slug}/m/services/?q=…`` on the whole app (uvicorn on loopback;
  bearer token, tenant guard, casbin, module check, filter building, visibility rule, JSON);
* direct — the same filter and facets with the meilisearch client the portal uses, from a
  thread pool of the same width.

Rounds alternate (portal, direct, portal, direct) and the rates are the median round; the
p50/p99 are of a further serial pass (one search at a time: a search's own latency, not its
wait behind seven others; the loaded p99s are reported beside them).
Goal: portal rate ≥ 0.7 × direct rate and portal p99 ≤ 50 ms.

Run: .venv/bin/python bench/service_search.py   (``--rebuild`` re-indexes, ~1 min; ``--smoke``:
1,000 listings, 40 searches, one round, its own scratch database and index)
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import benchkit
import msgspec

ROOT = Path(__file__).resolve().parents[1]
DATABASE = benchkit.scratch("canal_bench_services")
PREFIX = benchkit.scratch("bench_services")
DOCS = benchkit.size(50_000, 1_000)
PROVIDERS = benchkit.size(500, 20)
QUERIES = benchkit.size(int(os.environ.get("BENCH_QUERIES", "1000")), 40)
ROUNDS = benchkit.size(int(os.environ.get("BENCH_ROUNDS", "2")), 1)
SERIAL = benchkit.size(max(200, QUERIES // 5), 20)
WIDTH = 8
SEED = 6
WORDS = [
    "代理记账",
    "审计",
    "纳税",
    "专利",
    "商标",
    "培训",
    "融资",
    "贷款",
    "法律",
    "合同",
    "招聘",
    "人事",
    "品牌",
    "精益",
    "供应链",
    "股权",
    "数字化",
    "技术转移",
    "孵化",
    "咨询",
    "财",
    "税",
    "法",
    "企业",
    "高新技术",
    "研发",
    "知识产权",
    "保险",
    "管理",
    "改造",
]
TITLES = [
    "小规模纳税人代理记账",
    "年度财务审计报告",
    "高新技术企业认定辅导",
    "专利申请与布局",
    "商标注册",
    "劳动合同审查",
    "企业常年法律顾问",
    "中层管理者培训",
    "精益生产咨询",
    "供应链管理诊断",
    "股权激励方案设计",
    "生产线数字化改造",
    "技术转移对接",
    "科技型企业融资",
    "流动资金贷款咨询",
    "员工招聘外包",
    "品牌策划",
    "研发费用加计扣除",
    "创业孵化服务",
    "企业财产保险方案",
]
CATEGORIES = [
    "finance",
    "talent",
    "startup",
    "legal",
    "tax",
    "management",
    "technology",
    "exchange",
]
AREAS = ["dongchangfu", "liaocheng", "shandong", "online"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def documents() -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    providers = [
        (
            uuid.UUID(int=rng.getrandbits(128)),
            f"聊城{rng.choice(['明德', '诚信', '华信', '数智', '鲁西'])}{i}号服务公司",
        )
        for i in range(PROVIDERS)
    ]
    docs = []
    for i in range(DOCS):
        provider_id, provider_name = providers[i % PROVIDERS]
        title = f"{rng.choice(TITLES)}({rng.choice(['标准版', '加急', '年度', '专项'])})"
        category = rng.choice(CATEGORIES)
        rated = rng.random() < 0.6
        docs.append(
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128))),
                "tenant_id": str(provider_id),
                "visibility": "public",
                "title": title,
                "description": f"{title}:{rng.choice(WORDS)}、{rng.choice(WORDS)}一站式服务。",
                "provider_name": provider_name,
                "provider_id": str(provider_id),
                "category": category,
                "category_name": category,
                "subcategory": "",
                "area": rng.choice(AREAS),
                "price_model": rng.choice(["fixed", "fixed", "quote", "free"]),
                "price_fen": rng.randrange(0, 5_000_000),
                "delivery_days": rng.randrange(1, 120),
                "rating": round(rng.uniform(3, 5), 2) if rated else 0,
                "rating_count": rng.randrange(1, 50) if rated else 0,
            }
        )
    return docs


def queries() -> list[tuple[str, dict[str, Any]]]:
    """(query, filters) pairs; filters in the API's own terms (prices in yuan)."""
    rng = random.Random(SEED + 1)
    found = []
    for _ in range(QUERIES):
        filters: dict[str, Any] = {}
        if rng.random() < 0.5:
            filters["category"] = rng.choice(CATEGORIES)
        if rng.random() < 0.5:
            low = rng.randrange(0, 20_000)
            filters["price_min"], filters["price_max"] = (
                str(low),
                str(low + rng.randrange(1_000, 30_000)),
            )
        if rng.random() < 0.33:
            filters["area"] = rng.choice(AREAS)
        found.append((rng.choice(WORDS), filters))
    return found


async def prepare_data() -> tuple[str, str, str, str]:
    """A fresh database with a user, an enterprise with the module on and a bearer token."""
    from canal.platform import db
    from canal.platform.access.services import access
    from canal.platform.identity.secrets import new_api_token, token_hash
    from canal.platform.identity.services import create_user
    from canal.platform.identity.tables import ApiToken
    from canal.platform.runtime import prepare
    from canal.platform.settings import load_settings
    from canal.tenants.services import create_tenant
    from canal.tenants.tables import ModuleSubscription
    from canal.tenants.validators import credit_code_check_char

    settings = msgspec.structs.replace(
        load_settings(), database_name=DATABASE, meili_index_prefix=PREFIX
    )
    runtime = prepare(settings)
    await benchkit.fresh_database(runtime)
    await db.start_pool(runtime.app_dsn, min_size=1, max_size=2)
    try:
        await access().reload()
        user_id = await create_user("bench@example.cn", "bench-password-123", "压测用户")
        code17 = "91371502MA3BENCK1"
        tenant = await create_tenant(
            creator_id=user_id,
            name="压测采购企业",
            slug="bench-buyer",
            kind="enterprise",
            credit_code=code17 + credit_code_check_char(code17),
        )
        async with db.tenant_scope(tenant.id, user_id):
            await ModuleSubscription.insert(
                ModuleSubscription(tenant_id=tenant.id, module_key="services")
            )
        token, prefix = new_api_token()
        await ApiToken.insert(
            ApiToken(
                user=user_id,
                tenant=tenant.id,
                name="bench",
                prefix=prefix,
                token_hash=token_hash(token),
            )
        )
    finally:
        await db.close_pool()
    return tenant.slug, token, runtime.meili_url, runtime.meili_key


def start_server(port: int) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        CANAL_DATABASE_NAME=DATABASE,
        CANAL_MEILI_INDEX_PREFIX=PREFIX,
        CANAL_LOG_JSON="false",
        CANAL_ACCESS_LOG="false",
    )
    logfile = (ROOT / "var" / "bench-service-search.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "http_server.py"), "app", str(port)],
        env=env,
        stdout=logfile,
        stderr=logfile,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        if proc.poll() is not None:
            raise RuntimeError((ROOT / "var" / "bench-service-search.log").read_text()[-3000:])
        time.sleep(0.1)
    raise RuntimeError("app server did not start")


async def run_portal(
    base: str, token: str, work: list[tuple[str, dict[str, Any]]], width: int = WIDTH
) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    totals: list[int] = []
    queue = list(work)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:

        async def worker() -> None:
            while queue:
                q, filters = queue.pop()
                started = time.perf_counter()
                answer = await client.get("/", params={"q": q, **filters})
                latencies.append((time.perf_counter() - started) * 1000)
                if answer.status_code != 200:
                    raise RuntimeError(f"portal answered {answer.status_code}: {answer.text[:300]}")
                totals.append(answer.json()["total"])

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(width)))
        elapsed = time.perf_counter() - started
    return {"rate": len(work) / elapsed, "latencies": latencies, "totals": totals}


def run_direct(
    url: str, key: str, work: list[tuple[str, dict[str, Any]]], width: int = WIDTH
) -> dict[str, Any]:
    import meilisearch

    from canal.marketplace.services.controllers import SEARCH_FACETS, _search_filters
    from canal.marketplace.services.module import LISTINGS_INDEX
    from canal.platform.search.services import filter_clauses, quote

    client = meilisearch.Client(url, key)
    uid = f"{PREFIX}_{LISTINGS_INDEX.kind}"
    prepared = []
    for q, f in work:  # the same filter the portal builds, built outside the timing
        filters = _search_filters(
            f.get("category"), f.get("area"), None, f.get("price_min"), f.get("price_max"), None
        )
        clauses = [f"visibility = {quote('public')}", *filter_clauses(LISTINGS_INDEX, filters)]
        prepared.append(
            (q, {"filter": clauses, "facets": list(SEARCH_FACETS), "page": 1, "hitsPerPage": 20})
        )
    latencies: list[float] = []
    totals: list[int] = []

    def one(item: tuple[str, dict[str, Any]]) -> None:
        started = time.perf_counter()
        answer = client.index(uid).search(item[0], item[1])
        latencies.append((time.perf_counter() - started) * 1000)
        totals.append(int(answer.get("totalHits", 0)))

    started = time.perf_counter()
    with ThreadPoolExecutor(width) as pool:
        list(pool.map(one, prepared))
    elapsed = time.perf_counter() - started
    return {"rate": len(work) / elapsed, "latencies": latencies, "totals": totals}


async def index(url: str, key: str) -> float | None:
    from canal.marketplace.services.module import LISTINGS_INDEX
    from canal.platform.search.services import SearchService

    service = SearchService(url, key, prefix=PREFIX, indexes=[LISTINGS_INDEX])
    uid = await service.ensure_index(LISTINGS_INDEX.kind)
    stats = await service._run(lambda c: c.index(uid).get_stats())
    if "--rebuild" not in sys.argv and stats.number_of_documents == DOCS:
        print(f"reusing the {DOCS}-document index {uid} (--rebuild to rebuild)")
        return None
    await service.drop(LISTINGS_INDEX.kind)
    await service.ensure_index(LISTINGS_INDEX.kind)
    started = time.perf_counter()
    await service.upsert(LISTINGS_INDEX.kind, documents(), wait=True)
    seconds = round(time.perf_counter() - started, 1)
    print(f"indexed {DOCS} listings in {seconds} s")
    return seconds


def main() -> int:
    slug, token, meili_url, meili_key = asyncio.run(prepare_data())
    index_seconds = asyncio.run(index(meili_url, meili_key))
    work = queries()
    port = free_port()
    server = start_server(port)
    base = f"http://127.0.0.1:{port}/api/v1/t/{slug}/m/services"
    try:
        asyncio.run(run_portal(base, token, work[:50]))  # warm-up
        run_direct(meili_url, meili_key, work[:50])
        portal_runs, direct_runs = [], []
        for _ in range(ROUNDS):
            portal_runs.append(asyncio.run(run_portal(base, token, work)))
            direct_runs.append(run_direct(meili_url, meili_key, work))
        # Latency of one search on an otherwise idle server (no queueing behind the others).
        serial = work[:SERIAL]
        portal_one = asyncio.run(run_portal(base, token, serial, width=1))
        direct_one = run_direct(meili_url, meili_key, serial, width=1)
    finally:
        server.terminate()
        server.wait(timeout=10)
    if sorted(portal_runs[0]["totals"]) != sorted(direct_runs[0]["totals"]):
        raise RuntimeError("the portal and the direct search found different totals")
    portal_rate = statistics.median(r["rate"] for r in portal_runs)
    direct_rate = statistics.median(r["rate"] for r in direct_runs)
    portal_p99 = percentile(portal_one["latencies"], 99)
    direct_p99 = percentile(direct_one["latencies"], 99)
    ratio = portal_rate / direct_rate
    return benchkit.finish(
        {
            "bench": "service_search",
            "workload": f"{DOCS} listings, {QUERIES} faceted Chinese searches x {ROUNDS} rounds, "
            f"{WIDTH} at a time",
            "index_seconds": index_seconds,
            "portal_rate": round(portal_rate, 1),
            "portal_p50_ms": round(percentile(portal_one["latencies"], 50), 2),
            "portal_p99_ms": round(portal_p99, 2),
            "portal_p99_ms_loaded": round(
                statistics.median(percentile(r["latencies"], 99) for r in portal_runs), 2
            ),
            "direct_rate": round(direct_rate, 1),
            "direct_p50_ms": round(percentile(direct_one["latencies"], 50), 2),
            "direct_p99_ms": round(direct_p99, 2),
            "direct_p99_ms_loaded": round(
                statistics.median(percentile(r["latencies"], 99) for r in direct_runs), 2
            ),
            "ratio": round(ratio, 3),
            "goal": "portal rate >= 0.7 x direct, portal p99 <= 50 ms",
            "goal_met": ratio >= 0.7 and portal_p99 <= 50,
        }
    )


if __name__ == "__main__":
    sys.exit(main())

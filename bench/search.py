"""Filtered search over 100,000 listings: server-side latency, and tenant token vs master key.

Workload: 100,000 synthetic listings (Chinese titles and summaries from a fixed vocabulary,
200 owning tenants, 85 % public, 12 categories, 16 regions, prices 0-100,000 yuan) in a
``bench_listings`` index with the platform's listing settings (cmn-localized title/summary,
category/region/price facets). Queries: a one- or two-character Chinese word, a category IN
[2 values], a price range and a region, with category/region/price facets, as a random tenant.

1. ``SearchService.search`` (the server-side path: visibility rule, escaping, to_thread,
   the meilisearch client) — p50/p99 over 1,000 queries. Goal: p99 <= 50 ms.
2. The same filtered search straight over HTTP (one keep-alive connection) with a tenant token
   vs the master key with the identical visibility filter — interleaved, 1,000 each. Goal:
   token p50 <= 1.2x master p50.

Uses the embedded Meilisearch (or CANAL_MEILI_URL). The index is kept between runs and rebuilt
only when its document count differs (``--rebuild`` forces it). Ends with one JSON line.
``--smoke``: 2,000 documents and 50 queries in their own index.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import time
import uuid

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # noqa: S108

import benchkit
import requests

from canal.platform.http.context import TenantContext, TenantRef
from canal.platform.search.indexes import LISTINGS
from canal.platform.search.services import SearchService, filter_clauses, visibility_filter
from canal.platform.settings import get_settings

DOCS = benchkit.size(100_000, 2_000)
TENANTS = benchkit.size(200, 20)
QUERIES = benchkit.size(1_000, 50)
WARM_UP = benchkit.size(50, 5)
PREFIX = benchkit.scratch("bench")
SEED = 20261124

WORDS = [
    "政策",
    "补贴",
    "园区",
    "科技",
    "企业",
    "人才",
    "创新",
    "孵化",
    "厂房",
    "办公",
    "出租",
    "服务",
    "申报",
    "认定",
    "资金",
    "税收",
    "人工智能",
    "数据",
    "平台",
    "物流",
    "仓储",
    "检测",
    "认证",
    "知识产权",
    "法律",
    "咨询",
    "培训",
    "招聘",
    "融资",
    "投资",
    "新能源",
    "智能制造",
    "生物医药",
    "电子",
    "软件",
    "设计",
    "营销",
    "会议室",
    "食堂",
    "停车",
    "绿化",
    "安保",
    "保洁",
    "高新",
    "技术",
    "研发",
    "实验室",
    "中试",
    "共享",
    "设备",
    "加工",
    "定制",
    "跨境",
    "电商",
    "外贸",
    "供应链",
    "金融",
]
CATEGORIES = [f"cat{i:02d}" for i in range(12)]
REGIONS = [
    "苏州",
    "无锡",
    "常州",
    "南京",
    "杭州",
    "宁波",
    "上海",
    "合肥",
    "扬州",
    "镇江",
    "南通",
    "嘉兴",
    "湖州",
    "绍兴",
    "泰州",
    "盐城",
]
QUERY_WORDS = ["园", "政策", "补贴", "科技", "厂房", "人才", "数据", "物流", "服务", "资金"]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def context(tenant_id: uuid.UUID) -> TenantContext:
    ref = TenantRef(id=tenant_id, slug="bench", name="bench", kind="enterprise", status="active")
    return TenantContext(tenant=ref, user_id=tenant_id)


def documents(tenants: list[uuid.UUID]) -> list[dict]:
    rng = random.Random(SEED)
    docs = []
    for n in range(DOCS):
        title = "".join(rng.sample(WORDS, rng.randint(2, 4)))
        summary = ",".join("".join(rng.sample(WORDS, 3)) for _ in range(3))
        docs.append(
            {
                "id": f"l{n}",
                "tenant_id": str(rng.choice(tenants)),
                "visibility": "public" if rng.random() < 0.85 else "tenant",
                "title": title,
                "summary": summary,
                "tags": rng.sample(WORDS, 2),
                "category": rng.choice(CATEGORIES),
                "region": rng.choice(REGIONS),
                "price": rng.randint(0, 100_000),
                "published_at": 1_700_000_000 + n,
            }
        )
    return docs


def random_search(rng: random.Random, tenants: list[uuid.UUID]) -> tuple[str, dict, TenantContext]:
    low = rng.randint(0, 60_000)
    filters = {
        "category": rng.sample(CATEGORIES, 2),
        "price": {"gte": low, "lte": low + rng.randint(10_000, 40_000)},
        "region": rng.choice(REGIONS),
    }
    return rng.choice(QUERY_WORDS), filters, context(rng.choice(tenants))


async def main() -> int:
    settings = get_settings()
    if settings.meili_url:
        url, master_key = settings.meili_url, settings.meili_master_key
    else:
        from canal.platform.search.local import EmbeddedMeilisearch

        url, master_key = EmbeddedMeilisearch(
            settings.var_dir, settings.embedded_meili_port
        ).start()
    service = SearchService(url, master_key, prefix=PREFIX, indexes=[LISTINGS])
    tenants = [uuid.UUID(int=random.Random(SEED + i).getrandbits(128)) for i in range(TENANTS)]
    uid = await service.ensure_index("listings")
    stats = await service._run(lambda c: c.index(uid).get_stats())
    index_seconds = None
    if "--rebuild" in sys.argv or stats.number_of_documents != DOCS:
        await service.drop("listings")
        await service.ensure_index("listings")
        started = time.perf_counter()
        await service.upsert("listings", documents(tenants), wait=True)
        index_seconds = round(time.perf_counter() - started, 1)
        print(f"indexed {DOCS} documents in {index_seconds} s")
    else:
        print(f"reusing the {DOCS}-document index {uid} (--rebuild to rebuild)")

    rng = random.Random(SEED)
    facets = ["category", "region", "price"]
    # 1. Server-side path.
    for _ in range(WARM_UP):
        q, f, who = random_search(rng, tenants)
        await service.search("listings", q, caller=who, filters=f, facets=facets)
    server_ms, totals = [], []
    for _ in range(QUERIES):
        q, f, who = random_search(rng, tenants)
        started = time.perf_counter()
        result = await service.search("listings", q, caller=who, filters=f, facets=facets)
        server_ms.append((time.perf_counter() - started) * 1000)
        totals.append(result.total)

    # 2. Tenant token vs master key over the same HTTP connection, same queries, interleaved.
    tokens = {t: (await service.tenant_token("listings", context(t))).token for t in tenants}
    token_ms: list[float] = []
    master_ms: list[float] = []
    # A fresh connection per request, as the meilisearch client does: on keep-alive
    # connections Meilisearch's answers wait ~40 ms for a delayed ACK on loopback.

    def timed(key: str, body: dict) -> float:
        started = time.perf_counter()
        answer = requests.post(
            f"{url}/indexes/{uid}/search",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        elapsed = (time.perf_counter() - started) * 1000
        answer.raise_for_status()
        return elapsed

    for n in range(QUERIES + WARM_UP):
        q, f, who = random_search(rng, tenants)
        user = filter_clauses(LISTINGS, f)
        body = {"q": q, "facets": facets, "hitsPerPage": 20, "page": 1}
        master_body = {**body, "filter": [visibility_filter(who), *user]}
        token_body = {**body, "filter": user}  # the token adds the visibility rule
        pair = [
            ("token", tokens[who.tenant_id], token_body),
            ("master", master_key, master_body),
        ]
        rng.shuffle(pair)
        for name, key, payload in pair:
            elapsed = timed(key, payload)
            if n >= WARM_UP:
                (token_ms if name == "token" else master_ms).append(elapsed)

    p50, p99 = statistics.median(server_ms), percentile(server_ms, 99)
    ratio = statistics.median(token_ms) / statistics.median(master_ms)
    print(
        f"workload: {DOCS} listings, {TENANTS} tenants, {QUERIES} filtered queries "
        f"(1-2 char Chinese word + category IN 2 + price range + region, 3 facets); "
        f"median hits {statistics.median(totals):.0f}"
    )
    print(f"server-side search: p50 {p50:.2f} ms, p99 {p99:.2f} ms (goal p99 <= 50 ms)")
    print(
        f"direct HTTP: tenant token p50 {statistics.median(token_ms):.2f} ms / p99 "
        f"{percentile(token_ms, 99):.2f} ms; master key p50 {statistics.median(master_ms):.2f} ms"
        f" / p99 {percentile(master_ms, 99):.2f} ms; ratio {ratio:.2f} (goal <= 1.2)"
    )
    goal_met = p99 <= 50 and ratio <= 1.2
    return benchkit.finish(
        {
            "bench": "search",
            "docs": DOCS,
            "queries": QUERIES,
            "index_seconds": index_seconds,
            "p50_ms": round(p50, 2),
            "p99_ms": round(p99, 2),
            "token_p50_ms": round(statistics.median(token_ms), 2),
            "token_p99_ms": round(percentile(token_ms, 99), 2),
            "master_p50_ms": round(statistics.median(master_ms), 2),
            "master_p99_ms": round(percentile(master_ms, 99), 2),
            "token_vs_master": round(ratio, 3),
            "goal_met": goal_met,
        }
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

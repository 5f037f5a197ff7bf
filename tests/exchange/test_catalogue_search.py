"""Full-text catalogue search is not cut short by a page of hits PostgreSQL then drops.

Meilisearch answers at most 100 hits a page. Documents no listing answers any more (a run's
left-overs, a listing withdrawn before its index update) and listings another filter excludes
must not hide a matching listing ranked after them: the catalogue reads further pages."""

from __future__ import annotations

import uuid

from canal.exchange.search import KIND
from canal.platform.search.indexes import VISIBILITY_PUBLIC
from canal.platform.search.services import get_service
from tests.exchange.helpers import approved_provider, make_org, published_dataset

STALE = 150


def _stale(title: str, category: str) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "tenant_id": str(uuid.uuid4()),
        "visibility": VISIBILITY_PUBLIC,
        "title": title,
        "description": "早已下架的数据集。",
        "tags": [],
        "provider_name": "旧数据公司",
        "category": category,
        "sensitivity": "internal",
        "price_model": "free",
    }


async def test_search_reads_past_hits_without_a_listing(client, op):
    title = "茌平区企业季度用水量"
    # Indexed before the real one: equally relevant, so Meilisearch ranks them first.
    stale = [_stale(title, "energy") for _ in range(STALE)]
    await get_service().upsert(KIND, stale, wait=True)
    try:
        provider = await approved_provider("水务数据")
        dataset_id = await published_dataset(
            client, provider, op, title=title, category="environment"
        )
        buyer = await make_org("查水公司")
        from tests.factories import sign_in

        await sign_in(client, buyer.owner)
        for params in (
            {"q": "用水量"},
            {"q": "用水量", "provider": "水务数据"},
            {"q": "用水量", "category": "environment"},
        ):
            api = await client.get(f"{buyer.api}/catalogue", params=params)
            assert api.status_code == 200, api.text
            assert dataset_id in {r["id"] for r in api.json()}, params
        page = await client.get(f"{buyer.web}/catalogue", params={"q": "用水量"})
        assert f"/catalogue/{dataset_id}" in page.text
        # A filter still excludes it.
        other = await client.get(
            f"{buyer.api}/catalogue", params={"q": "用水量", "category": "energy"}
        )
        assert dataset_id not in {r["id"] for r in other.json()}
    finally:
        await get_service().delete(KIND, [d["id"] for d in stale], wait=True)

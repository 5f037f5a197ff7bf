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


async def test_price_range_filter_in_the_page_and_the_api(client, op):
    from tests.factories import sign_in

    provider = await approved_provider("价格数据")
    cheap = await published_dataset(client, provider, op, price_model="one_off", price_yuan="80")
    dear = await published_dataset(client, provider, op, price_model="one_off", price_yuan="500")
    buyer = await make_org("比价公司")
    await sign_in(client, buyer.owner)
    base = {"provider": "价格数据"}

    async def found(**params: str) -> set[str]:
        api = await client.get(f"{buyer.api}/catalogue", params={**base, **params})
        assert api.status_code == 200, api.text
        return {r["id"] for r in api.json()} & {cheap, dear}

    assert await found() == {cheap, dear}
    assert await found(price_max="100") == {cheap}
    assert await found(price_min="80.00", price_max="500") == {cheap, dear}
    assert await found(price_min="100.5") == {dear}
    assert await found(q="用电", price_max="80") == {cheap}
    public = await client.get("/api/v1/exchange/catalogue", params={**base, "price_min": "81"})
    assert {r["id"] for r in public.json()} & {cheap, dear} == {dear}
    page = await client.get(f"{buyer.web}/catalogue", params={**base, "price_max": "100"})
    assert f"/catalogue/{cheap}" in page.text and f"/catalogue/{dear}" not in page.text

    # Bad input: a clear reason per field, in both languages, nothing searched.
    bad = await client.get(f"{buyer.api}/catalogue", params={"price_min": "abc"})
    assert bad.status_code == 422 and "price_filter_invalid" in bad.text
    reversed_ = await client.get(
        f"{buyer.api}/catalogue", params={"price_min": "9", "price_max": "1"}
    )
    assert reversed_.status_code == 422 and "price_range_reversed" in reversed_.text
    form = await client.get(
        f"{buyer.web}/catalogue", params={"price_min": "-1", "price_max": "1.234"}
    )
    assert form.status_code == 422
    assert 'id="f-price_min-error"' in form.text and 'id="f-price_max-error"' in form.text
    assert "价格须为不小于 0 的金额" in form.text and 'value="-1"' in form.text
    english = await client.get(
        # ?lang= (the signed-in person's own zh-CN choice outranks Accept-Language)
        f"{buyer.api}/catalogue",
        params={"price_min": "x", "lang": "en"},
    )
    assert "at most two decimals" in english.text and "不小于" not in english.text

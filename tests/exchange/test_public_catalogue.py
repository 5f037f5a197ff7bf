"""Residents without an organisation browse the catalogue read-only (issue 5: "Buyers search
and filter the catalogue … and see a masked sample, the schema, the profile and the terms");
buying needs an organisation, and the pages say so."""

from __future__ import annotations

import uuid

from canal.platform import db
from tests.exchange.helpers import approved_provider, published_dataset
from tests.factories import make_user, sign_in


async def test_a_resident_browses_and_filters_but_cannot_request(client, op):
    from canal.exchange.tables import UsageEvent

    provider = await approved_provider("公开目录")
    dataset_id = await published_dataset(client, provider, op)
    resident = await make_user("居民张三")
    client.cookies.clear()
    anonymous = await client.get("/api/v1/exchange/catalogue")
    assert anonymous.status_code in (401, 403)
    await sign_in(client, resident)

    page = await client.get("/exchange/catalogue", params={"category": "energy"})
    assert page.status_code == 200
    assert f"/exchange/catalogue/{dataset_id}" in page.text and 'id="join-to-buy"' in page.text
    assert "/m/exchange/provider" not in page.text  # no organisation navigation
    api = await client.get("/api/v1/exchange/catalogue", params={"category": "energy"})
    assert dataset_id in {r["id"] for r in api.json()}
    assert "sample" not in api.json()[0]
    other = await client.get("/api/v1/exchange/catalogue", params={"category": "transport"})
    assert dataset_id not in {r["id"] for r in other.json()}

    listing = await client.get(f"/exchange/catalogue/{dataset_id}")
    assert listing.status_code == 200
    assert "购买数据需要以单位身份进行" in listing.text and 'href="/orgs/new"' in listing.text
    assert "/request" not in listing.text and "****" in listing.text  # masked sample
    twin = await client.get(f"/api/v1/exchange/catalogue/{dataset_id}")
    assert twin.status_code == 200 and twin.json()["sample"]
    assert (await client.get(f"/api/v1/exchange/catalogue/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/exchange/catalogue/not-a-uuid")).status_code == 404
    refused = await client.post(f"/api/v1/exchange/catalogue/{dataset_id}/request", json={})
    assert refused.status_code in (404, 405)

    # Both views are in the provider's usage audit, as the person who looked.
    async with db.tenant_scope(provider.tenant.id):
        seen = await UsageEvent.select().where(
            (UsageEvent.dataset_id == uuid.UUID(dataset_id))
            & (UsageEvent.user_id == resident.user_id)
        )
    assert len(seen) == 2 and {s["side"] for s in seen} == {"viewer"}
    assert all(s["buyer_tenant_id"] is None and s["action"] == "sample" for s in seen)


async def test_the_shell_links_the_catalogue_for_a_person_without_an_organisation(client):
    resident = await make_user("居民王五")
    await sign_in(client, resident)
    for path in ("/", "/account"):
        page = await client.get(path)
        assert page.status_code == 200, page.text
        assert 'class="site-nav__links"' in page.text and 'href="/exchange/catalogue"' in page.text
    here = await client.get("/exchange/catalogue")
    assert '<a href="/exchange/catalogue" aria-current="page">数据目录</a>' in here.text

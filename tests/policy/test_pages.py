"""The browser side: forms re-render with errors next to fields (422, nothing saved), the live
count, import/export round trip, the demo policies, and the public catalogue via Meilisearch."""

from __future__ import annotations

import datetime as dt
import json

from canal.park.policy import services
from canal.park.policy.demo_data import load_policies
from canal.park.policy.tables import Fact
from canal.platform import clock, db
from tests.factories import csrf_from, sign_in, unique
from tests.policy.helpers import CRITERIA, org, policy_json


def _form(data: dict, csrf: str) -> dict[str, str]:
    out = {
        k: (
            json.dumps(v, ensure_ascii=False)
            if k == "criteria"
            else "\n".join(v)
            if isinstance(v, list)
            else str(v)
        )
        for k, v in data.items()
    }
    return out | {"_csrf": csrf}


async def test_policy_form_shows_rule_error_at_its_path(client):
    owner, gov, _ = await org("government")
    await sign_in(client, owner)
    base = f"/t/{gov.slug}/m/policy"
    page = await client.get(f"{base}/policies/new")
    assert page.status_code == 200
    csrf = csrf_from(page.text)
    bad = policy_json(
        {"all": [{"fact": "employees", "op": "range", "min": "many"}]},
        window_opens="2026-02-30",
        amount_max_yuan=-1,
    )
    r = await client.post(f"{base}/policies", data=_form(bad, csrf))
    assert r.status_code == 422
    assert 'id="f-criteria-error"' in r.text and "$.all[0].min" in r.text
    assert 'id="f-window_opens-error"' in r.text and "2026-02-30" in r.text
    assert 'id="f-amount_max_yuan-error"' in r.text
    assert await services.list_policies(services_ctx(gov, owner)) == []
    # Fixed, it is saved and published (the checkbox) and shows up in the catalogue row.
    good = policy_json(CRITERIA)
    r = await client.post(f"{base}/policies", data=_form(good, csrf) | {"publish": "1"})
    assert r.status_code == 303, r.text
    detail = await client.get(r.headers["location"])
    assert good["title"] in detail.text
    assert "已发布" in detail.text


def services_ctx(tenant, person):
    from tests.policy.helpers import ctx_of

    return ctx_of(tenant, person)


async def test_portrait_form_refuses_bad_facts_and_saves_good_ones(client):
    owner, ent, ctx = await org("enterprise")
    await sign_in(client, owner)
    base = f"/t/{ent.slug}/m/policy"
    csrf = csrf_from((await client.get(f"{base}/portrait")).text)
    tomorrow = (clock.today() + dt.timedelta(days=1)).isoformat()
    r = await client.post(
        f"{base}/portrait",
        data={
            "_csrf": csrf,
            "employees": "-3",
            "established_on": tomorrow,
            "certifications": "高新技术企业,2025-01-01,2024-01-01",
        },
    )
    assert r.status_code == 422
    for field in ("employees", "established_on", "certifications"):
        assert f'id="f-{field}-error"' in r.text
    async with db.tenant_scope(ent.id):
        assert await Fact.count().where(Fact.tenant_id == ent.id) == 0
    r = await client.post(
        f"{base}/portrait",
        data={
            "_csrf": csrf,
            "employees": "35",
            "region_code": "371502",
            "certifications": "高新技术企业,2024-01-01,2027-01-01",
        },
    )
    assert r.status_code == 303
    rows = await services.portrait_rows(ctx)
    assert rows["employees"]["value"] == 35 and rows["employees"]["source"] == "self"
    assert rows["certifications"]["value"][0]["valid_to"] == "2027-01-01"
    page = await client.get(f"{base}/portrait")
    assert "企业自报" in page.text


async def test_live_count_counts_subscribed_enterprises(client):
    owner, gov, _ = await org("government")
    _, _ent, ectx = await org("enterprise")
    marker = unique("X")
    await services.set_facts(ectx, {"region_code": marker})
    await sign_in(client, owner)
    api = f"/api/v1/t/{gov.slug}/m/policy/criteria/count"
    rule = json.dumps({"fact": "region_code", "op": "eq", "value": marker})
    r = await client.get(api, params={"criteria": rule})
    # One enterprise: reported only as "fewer than 5" (decision 0012).
    assert r.json()["valid"] and r.json()["eligible"] is None and r.json()["enterprises"] >= 1
    r = await client.get(api, params={"criteria": '{"all": []}'})
    assert not r.json()["valid"] and "$.all" in r.json()["errors"][0]["message"]
    frag = await client.get(
        f"/t/{gov.slug}/m/policy/criteria/count",
        params={"criteria": rule},
        headers={"HX-Request": "true"},
    )
    assert frag.status_code == 200 and 'id="live-count"' in frag.text and "<html" not in frag.text


async def test_import_export_round_trip_and_all_or_nothing(client):
    owner, gov, ctx = await org("government")
    await sign_in(client, owner)
    api = f"/api/v1/t/{gov.slug}/m/policy"
    items = load_policies()["dc-kjj"]
    broken = [items[0], dict(items[1], window_closes="2020-01-01")]
    r = await client.post(f"{api}/policies/import", json=broken)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "[1].window_closes"
    # The message names the policy, for the page (which shows messages, not paths).
    assert r.json()["errors"][0]["message"].startswith(f"第 2 条政策「{items[1]['title'][:40]}」")
    assert await services.list_policies(ctx) == []
    page = await client.get(f"/t/{gov.slug}/m/policy/policies")
    r = await client.post(
        f"/t/{gov.slug}/m/policy/policies/import",
        data={"_csrf": csrf_from(page.text)},
        files={"file": ("policies.json", json.dumps(broken).encode(), "application/json")},
    )
    assert r.status_code == 422 and "第 2 条政策" in r.text
    r = await client.post(
        f"/t/{gov.slug}/m/policy/policies/import",
        data={"_csrf": csrf_from(page.text)},
        files={"file": ("policies.json", b"{not json", "application/json")},
    )
    assert r.status_code == 422 and "文件不是有效的 JSON" in r.text
    assert await services.list_policies(ctx) == []
    r = await client.post(f"{api}/policies/import", json=items)
    assert r.status_code == 201 and len(r.json()["ids"]) == len(items)
    exported = (await client.get(f"{api}/policies/export")).json()
    assert sorted(p["title"] for p in exported) == sorted(p["title"] for p in items)
    assert {json.dumps(p["criteria"], sort_keys=True) for p in exported} == {
        json.dumps(p["criteria"], sort_keys=True) for p in items
    }


def test_demo_ships_at_least_twenty_valid_policies_at_three_levels():
    data = load_policies()
    policies = [p for items in data.values() for p in items]
    assert len(policies) >= 20
    assert {p["level"] for p in policies} >= {"district", "city", "provincial"}
    for p in policies:
        services.parse_policy(p)  # raises on any invalid one


async def test_catalogue_search_in_chinese_with_filters(client):
    from canal.platform.search.services import get_service

    _owner, _gov, ctx = await org("government")
    # A Latin token unique to this run (Chinese words would also find earlier runs' policies).
    word = unique("zc")
    today = clock.today()
    open_id = await services.create_policy(
        ctx,
        services.parse_policy(
            policy_json(CRITERIA, title=f"轴承产业升级补贴 {word}", level="city")
        ),
        publish=True,
    )
    later_id = await services.create_policy(
        ctx,
        services.parse_policy(
            policy_json(
                CRITERIA,
                title=f"轴承人才奖励 {word}",
                support_type="talent",
                window_opens=(today + dt.timedelta(days=40)).isoformat(),
                window_closes=(today + dt.timedelta(days=90)).isoformat(),
            )
        ),
        publish=True,
    )
    draft_id = await services.create_policy(
        ctx, services.parse_policy(policy_json(CRITERIA, title=f"轴承草稿 {word}"))
    )
    # The outbox's search job, run here: index what was published.
    docs = [d async for d in services.load_search_documents()]
    await get_service().upsert("policies", docs, wait=True)
    r = await client.get("/api/v1/policies", params={"q": word})
    ids = {h["id"] for h in r.json()["hits"]}
    assert ids == {str(open_id), str(later_id)}  # never the draft
    r = await client.get("/api/v1/policies", params={"q": word, "open": "1"})
    assert {h["id"] for h in r.json()["hits"]} == {str(open_id)}
    r = await client.get("/api/v1/policies", params={"q": word, "support_type": "talent"})
    assert {h["id"] for h in r.json()["hits"]} == {str(later_id)}
    r = await client.get("/api/v1/policies", params={"q": f"产业升级 {word}"})
    assert r.json()["hits"][0]["id"] == str(open_id)  # the Chinese words rank it first
    page = await client.get("/policies", params={"q": word, "level": "city"})
    assert page.status_code == 200 and f"轴承产业升级补贴 {word}" in page.text
    assert f"轴承人才奖励 {word}" not in page.text
    assert (await client.get(f"/policies/{open_id}")).status_code == 200
    assert (await client.get(f"/policies/{draft_id}")).status_code == 404

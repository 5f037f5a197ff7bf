"""Input no handler should see: refused once, centrally, with a bilingual 4xx — never a 500.

Each case was a 500 (or a silent acceptance) before ``canal.platform.http.input`` and the
shared text rule ``canal.platform.text``; each checks that nothing was written.
"""

from __future__ import annotations

import uuid

from canal.platform import db
from tests.factories import make_tenant, make_user, sign_in, unique
from tests.policy.helpers import CRITERIA, org, policy_json


def _problem(answer, status: int, code: str) -> dict:
    assert answer.status_code == status, answer.text[:500]
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = answer.json()
    assert body["code"] == code, body
    assert body["detail_zh"] and body["detail_en"] and body["detail_zh"] != body["detail_en"]
    return body


async def _org_count(user_id: uuid.UUID) -> int:
    from canal.tenants.tables import Membership

    async with db.user_scope(user_id):
        return await Membership.count().where(Membership.user_id == user_id)


async def test_json_nested_a_thousand_deep_is_400(client):
    person = await make_user()
    await sign_in(client, person)
    deep = '{"name": ' + "[" * 1000 + "]" * 1000 + ', "kind": "enterprise"}'
    answer = await client.post(
        "/api/v1/orgs", content=deep, headers={"Content-Type": "application/json"}
    )
    body = _problem(answer, 400, "json_too_deep")
    assert "64" in body["detail_en"]
    # Deep but well within Python's own limit (what a recursive walker would choke on later).
    deep = '{"name": ' + "[" * 70 + "]" * 70 + ', "kind": "enterprise"}'
    answer = await client.post(
        "/api/v1/orgs", content=deep, headers={"Content-Type": "application/json"}
    )
    _problem(answer, 400, "json_too_deep")
    assert await _org_count(person.user_id) == 0


async def test_a_nul_byte_in_a_json_field_is_422_naming_the_field(client):
    person = await make_user()
    await sign_in(client, person)
    answer = await client.post(
        "/api/v1/orgs", json={"name": "甲\x00乙有限公司", "kind": "enterprise"}
    )
    body = _problem(answer, 422, "nul_character")
    assert [e["field"] for e in body["errors"]] == ["name"]
    nested = {"name": "甲乙有限公司", "kind": "enterprise", "x": {"y": ["ok", "bad\x00"]}}
    body = _problem(await client.post("/api/v1/orgs", json=nested), 422, "nul_character")
    assert [e["field"] for e in body["errors"]] == ["x.y[1]"]
    assert await _org_count(person.user_id) == 0


async def test_a_nul_byte_in_a_form_field_is_422(client):
    person = await make_user()
    csrf = await sign_in(client, person)
    answer = await client.post(
        "/orgs",
        data={
            "_csrf": csrf,
            "name": "甲\x00乙有限公司",
            "kind": "enterprise",
            "slug": unique("o-"),
        },
        headers={"Accept": "text/html"},
    )
    assert answer.status_code == 422
    assert "text/html" in answer.headers["content-type"]
    assert "nul_character" in answer.text and "U+0000" in answer.text
    # Also when the CSRF token travels in the form (the middleware reads the form first).
    client.headers.pop("X-CSRF-Token")
    answer = await client.post(
        "/orgs", data={"_csrf": csrf, "name": "甲乙", "kind": "enterprise\x00"}
    )
    assert answer.status_code == 422
    assert await _org_count(person.user_id) == 0


async def test_a_nul_byte_in_the_query_or_the_path_is_400(client):
    person = await make_user()
    tenant = await make_tenant(person)
    await sign_in(client, person)
    _problem(await client.get("/api/v1/notifications?before=a%00b"), 400, "nul_character")
    _problem(await client.get(f"/api/v1/t/{tenant.slug}%00/members"), 400, "nul_character")
    page = await client.get(f"/t/{tenant.slug}/audit?action=a%00", headers={"Accept": "text/html"})
    assert page.status_code == 400 and "text/html" in page.headers["content-type"]


async def test_json_routes_accept_only_application_json(client):
    person = await make_user()
    await sign_in(client, person)
    body = '{"name": "甲乙有限公司", "kind": "enterprise"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": content_type} if content_type else {}
        answer = await client.post("/api/v1/orgs", content=body, headers=headers)
        _problem(answer, 415, "unsupported_media_type")
    ok = await client.post(
        "/api/v1/orgs",
        content=body,
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert ok.status_code == 422  # past the media type: the credit code is missing
    assert await _org_count(person.user_id) == 0


async def test_amount_text_over_200_characters_is_a_field_error_not_a_500(client):
    from canal.park.policy.tables import Policy

    owner, tenant, _ = await org("government")
    await sign_in(client, owner)
    api = f"/api/v1/t/{tenant.slug}/m/policy"
    over = policy_json(CRITERIA, amount_text="元" * 201, summary="摘" * 2001)
    body = _problem(await client.post(f"{api}/policies", json=over), 422, "invalid_input")
    assert {e["field"]: e["code"] for e in body["errors"]} == {
        "amount_text": "too_long",
        "summary": "too_long",  # was cut to 2,000 without a word
    }
    # The page's form says the same next to the field, in a 422 re-render.
    form = {k: v for k, v in over.items() if isinstance(v, str)}
    form["criteria"] = '{"fact": "employees", "op": "range", "min": 1}'
    page = await client.post(
        f"/t/{tenant.slug}/m/policy/policies", data=form, headers={"Accept": "text/html"}
    )
    assert page.status_code == 422
    assert "<form" in page.text and "最多 200 个字符" in page.text
    async with db.tenant_scope(tenant.id):
        assert await Policy.count().where(Policy.tenant_id == tenant.id) == 0


async def test_direction_controls_are_refused_in_public_catalogue_titles(client):
    owner, tenant, _ = await org("government")
    await sign_in(client, owner)
    api = f"/api/v1/t/{tenant.slug}/m/policy"
    for mark in ("\u202e", "\u2066", "\u200f"):
        spoof = policy_json(CRITERIA, title=f"高新技术企业{mark}金奖励")
        body = _problem(await client.post(f"{api}/policies", json=spoof), 422, "invalid_input")
        assert {e["field"]: e["code"] for e in body["errors"]} == {"title": "bidi_characters"}
    # Catalogue text has a ceiling: a megabyte of full text is refused, not stored.
    huge = policy_json(CRITERIA, full_text="文" * 1_000_000)
    body = _problem(await client.post(f"{api}/policies", json=huge), 422, "invalid_input")
    assert body["errors"][0]["field"] == "full_text"


async def test_listing_and_dataset_titles_refuse_direction_controls():
    from canal.exchange import services as exchange
    from canal.marketplace import market
    from canal.platform.http.errors import CanalError
    from tests.policy.helpers import ctx_of

    owner = await make_user()
    tenant = await make_tenant(owner)
    ctx = ctx_of(tenant, owner)
    listing = {
        "category": "tax",
        "title": "代理记账\u202e",
        "description": "每月记账",
        "area": "online",
        "delivery_days": 5,
        "price_model": "fixed",
        "price": "100",
        "packages": [{"name": "基础\u2067版", "price": "100"}],
    }
    try:
        market.validate_listing(listing)
    except CanalError as exc:
        found = {e.field: e.code for e in exc.errors}
    else:
        raise AssertionError("a listing title with U+202E was accepted")
    assert found == {"title": "bidi_characters", "packages": "bad_package"}
    data = exchange.DatasetInput(
        title="园区用电\u202d",
        description="园区企业每月用电量。" * 600,  # 6,000 > 5,000
        category="energy",
        update_frequency="monthly",
        source_statement="园区能耗监测系统自动采集。",
        sensitivity="internal",
        licence_purpose="用于节能研究。" * 400,  # 2,800 > 2,000
        delivery_modes=["compute"],
    )
    try:
        await exchange.create_dataset(ctx, data)
    except CanalError as exc:
        found = {e.field: e.code for e in exc.errors}
    else:
        raise AssertionError("a dataset title with U+202D was accepted")
    assert found == {
        "title": "bidi_characters",
        "description": "too_long",
        "licence_purpose": "too_long",
    }

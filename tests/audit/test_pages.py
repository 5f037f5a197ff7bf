"""Who sees which trail: a tenant's admins their own, the operator everything; members
without audit:read are refused; pages page with htmx and without."""

from __future__ import annotations

import re
from datetime import timedelta

from canal.platform import clock, db
from canal.platform.access.services import access
from canal.platform.audit.services import record
from tests.factories import make_tenant, make_user, sign_in, unique


async def _event(tenant, actor, action: str = "module.enabled", target: str | None = None) -> str:
    target = target or unique("evt-")
    async with db.tenant_scope(tenant.id, actor.user_id):
        await record(
            action,
            actor_id=actor.user_id,
            tenant_id=tenant.id,
            target=target,
            ip="203.0.113.5",
            data={"module": "policy"},
        )
    return target


async def test_a_tenant_admin_sees_only_its_own_trail(client):
    alice, bob = await make_user("甲管理员"), await make_user("乙管理员")
    tenant_a, tenant_b = await make_tenant(alice), await make_tenant(bob)
    secret_a = await _event(tenant_a, alice)
    mine_b = await _event(tenant_b, bob)
    await sign_in(client, bob)

    page = await client.get(f"/t/{tenant_b.slug}/audit")
    assert page.status_code == 200, page.text
    assert mine_b in page.text and secret_a not in page.text
    assert "乙管理员" in page.text and "开通模块" in page.text  # actor name, zh label
    assert "table-scroll" in page.text

    api = await client.get(f"/api/v1/t/{tenant_b.slug}/audit")
    assert api.status_code == 200
    events = api.json()["events"]
    assert mine_b in {e["target"] for e in events}
    assert secret_a not in api.text
    assert all(e["tenant_id"] is None for e in events)  # no other tenant's ids leak anyway
    assert {e["action"] for e in events} >= {"tenant.created", "module.enabled"}
    assert events[0]["seq"] > events[-1]["seq"]  # newest first
    assert events[0]["created_at"].endswith("+08:00")

    # Another tenant's trail answers like a missing page.
    assert (await client.get(f"/t/{tenant_a.slug}/audit")).status_code == 404
    assert (await client.get(f"/api/v1/t/{tenant_a.slug}/audit")).status_code == 404


async def test_a_member_without_audit_read_is_refused(client):
    owner, member = await make_user(), await make_user("普通成员")
    tenant = await make_tenant(owner)
    from canal.tenants.tables import Membership

    async with db.tenant_scope(tenant.id, owner.user_id):
        await Membership.insert(Membership(tenant_id=tenant.id, user_id=member.user_id))
        await access().assign_role(member.user_id, "member", tenant.id)
    await sign_in(client, member)
    assert (await client.get(f"/t/{tenant.slug}/audit")).status_code == 403
    assert (await client.get(f"/api/v1/t/{tenant.slug}/audit")).status_code == 403
    assert (await client.get("/operator/audit")).status_code == 404


async def test_signed_out_visitors_are_sent_away(client):
    owner = await make_user()
    tenant = await make_tenant(owner)
    assert (await client.get(f"/api/v1/t/{tenant.slug}/audit")).status_code in (401, 302, 303)
    assert (await client.get("/api/v1/operator/audit")).status_code in (401, 302, 303)


async def test_the_operator_sees_every_tenant_and_sign_ins(client, operator):
    alice, bob = await make_user(), await make_user()
    tenant_a = await make_tenant(alice, name="甲方测试有限公司")
    tenant_b = await make_tenant(bob, name="乙方测试有限公司")
    target_a, target_b = await _event(tenant_a, alice), await _event(tenant_b, bob)
    login = unique("login-")
    await record("auth.login", actor_id=alice.user_id, target=login, ip="198.51.100.1")

    # A tenant owner is not operator staff.
    await sign_in(client, alice)
    assert (await client.get("/operator/audit")).status_code == 404

    await sign_in(client, operator)
    page = await client.get("/operator/audit")
    assert page.status_code == 200, page.text
    for text in (target_a, target_b, login, "甲方测试有限公司", "乙方测试有限公司"):
        assert text in page.text
    assert "/operator/audit/verify" in page.text

    api = (await client.get("/api/v1/operator/audit", params={"limit": 200})).json()
    by_target = {e["target"]: e for e in api["events"]}
    assert by_target[target_a]["tenant_name"] == "甲方测试有限公司"
    assert by_target[login]["tenant_id"] is None
    assert by_target[login]["action_label"] == "登录"

    only_logins = (
        await client.get("/api/v1/operator/audit", params={"action": "auth.", "limit": 200})
    ).json()
    assert {e["action"][:5] for e in only_logins["events"]} == {"auth."}


async def test_operator_pages_need_two_factor(client, operator):
    await sign_in(client, operator, mfa=False)
    page = await client.get("/operator/audit")
    # The page sends the person to the two-factor step (or its set-up) instead.
    assert page.status_code == 303
    assert page.headers["location"].startswith(("/login/totp", "/account/security"))
    api = await client.get("/api/v1/operator/audit")
    assert api.status_code == 403
    assert api.json()["code"] == "mfa_required"


async def test_the_operator_verifies_the_chain(client, operator):
    await sign_in(client, operator)
    fragment = await client.post("/operator/audit/verify", headers={"HX-Request": "true"})
    assert fragment.status_code == 200, fragment.text
    assert "审计链完整" in fragment.text and "<html" not in fragment.text

    full = await client.post("/operator/audit/verify", data={})
    assert full.status_code == 200 and "审计链完整" in full.text and "<html" in full.text

    api = (await client.post("/api/v1/operator/audit/verify")).json()
    assert api["ok"] is True and api["broken_seq"] is None and api["checked"] >= 1
    # Verifying is itself an audited action.
    events = (await client.get("/api/v1/operator/audit", params={"action": "audit."})).json()
    assert events["events"][0]["action"] == "audit.verified"


async def test_pages_with_a_cursor_api_and_htmx(client):
    owner = await make_user()
    tenant = await make_tenant(owner)
    action = f"test.{unique('p')}"
    targets = [await _event(tenant, owner, action=action) for _ in range(5)]
    await sign_in(client, owner)

    seen: list[str] = []
    before = None
    while True:
        params = {"action": action, "limit": 2} | ({"before": before} if before else {})
        body = (await client.get(f"/api/v1/t/{tenant.slug}/audit", params=params)).json()
        seen += [e["target"] for e in body["events"]]
        before = body["next_before"]
        if before is None:
            break
    assert seen == list(reversed(targets))

    # The page: 50 a page, so make a long trail and follow "load more" as htmx would.
    for _ in range(50):
        await _event(tenant, owner, action=action)
    first = await client.get(f"/t/{tenant.slug}/audit", params={"action": action})
    match = re.search(r'hx-get="([^"]+)"\s+hx-target="#audit-rows"', first.text)
    assert match, "no load-more link"
    url = match.group(1).replace("&amp;", "&")
    assert "before=" in url and f"action={action}" in url
    more = await client.get(url, headers={"HX-Request": "true", "HX-Target": "audit-rows"})
    assert more.status_code == 200
    assert more.text.lstrip().startswith("<tr>") and "<html" not in more.text
    assert 'hx-swap-oob="true"' in more.text
    assert targets[0] in more.text  # the oldest five are on the second page
    # Without htmx the same link is a whole page.
    plain = await client.get(url)
    assert "<html" in plain.text and targets[0] in plain.text


async def test_date_filters(client):
    owner = await make_user()
    tenant = await make_tenant(owner)
    target = await _event(tenant, owner)
    await sign_in(client, owner)
    today = clock.today()
    url = f"/api/v1/t/{tenant.slug}/audit"
    around = {
        "date_from": (today - timedelta(days=1)).isoformat(),
        "date_to": (today + timedelta(days=1)).isoformat(),
    }
    assert target in (await client.get(url, params=around)).text
    later = {"date_from": (today + timedelta(days=2)).isoformat()}
    assert (await client.get(url, params=later)).json()["events"] == []

    bad = await client.get(url, params={"date_from": "2026-13-45"})
    assert bad.status_code == 422
    page = await client.get(f"/t/{tenant.slug}/audit", params={"date_from": "yesterday"})
    assert page.status_code == 422 and "YYYY-MM-DD" in page.text


async def test_operator_console_has_its_navigation(client, operator):
    await sign_in(client, operator)
    page = await client.get("/operator/audit")
    assert page.status_code == 200
    nav = page.text.split("<main", 1)[0]  # the header, before the page's own content
    for href in ("/operator/tenants", "/operator/audit", "/operator/jobs"):
        assert f'href="{href}"' in nav
    assert "全平台审计日志" in nav


async def test_out_of_range_filters_are_refused_not_500(client, operator):
    """Dates at the ends of what datetime holds, cursors beyond bigint: a 422 naming the
    field, in both languages, from every trail route — never a server error."""
    owner = await make_user()
    tenant = await make_tenant(owner)
    await _event(tenant, owner)
    cases = [
        ({"date_to": "9999-12-31"}, "date_to"),
        ({"date_from": "0001-01-01"}, "date_from"),
        ({"date_from": "9999-12-31"}, "date_from"),
        ({"before": str(10**20)}, "before"),
        ({"before": str(2**63)}, "before"),
        ({"before": "-5"}, "before"),
    ]
    await sign_in(client, owner)
    for params, field in cases:
        api = await client.get(f"/api/v1/t/{tenant.slug}/audit", params=params)
        assert api.status_code == 422, (params, api.text)
        [error] = api.json()["errors"]
        assert error["field"] == field, api.text
        page = await client.get(f"/t/{tenant.slug}/audit", params=params)
        assert page.status_code == 422, (params, page.status_code)
    # The largest cursor that fits is fine.
    ok = await client.get(f"/api/v1/t/{tenant.slug}/audit", params={"before": str(2**63 - 1)})
    assert ok.status_code == 200 and ok.json()["events"]
    await sign_in(client, operator)
    for params, _field in cases:
        api = await client.get("/api/v1/operator/audit", params=params)
        assert api.status_code == 422, (params, api.text)
        page = await client.get("/operator/audit", params=params)
        assert page.status_code == 422, (params, page.status_code)

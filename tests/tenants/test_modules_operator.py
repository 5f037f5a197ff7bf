"""Module subscriptions and the operator console."""

from __future__ import annotations

from canal.platform import db
from canal.platform.modules import registry
from canal.tenants.tables import ModuleSubscription, Tenant
from tests.factories import make_tenant, make_user, sign_in
from tests.tenants.helpers import audit_actions, audit_rows


async def test_catalogue_lists_every_module_with_kind_rules(client):
    owner = await make_user()
    community = await make_tenant(owner, kind="community", name="光明社区")
    await sign_in(client, owner)
    catalogue = (await client.get(f"/api/v1/t/{community.slug}/modules")).json()
    assert {m["key"] for m in catalogue} == set(registry())
    assert len(catalogue) == 7
    by_key = {m["key"]: m for m in catalogue}
    for key, spec in registry().items():
        assert by_key[key]["allowed"] == ("community" in spec.tenant_kinds)
        assert by_key[key]["enabled"] is False and by_key[key]["plans"] == ["free"]
    page = await client.get(f"/t/{community.slug}/modules?lang=zh_CN")
    assert page.status_code == 200
    assert all(spec.name_zh in page.text for spec in registry().values())
    assert "即将上线" in page.text
    refused_key = next(k for k, s in registry().items() if "community" not in s.tenant_kinds)
    refused = await client.post(
        f"/api/v1/t/{community.slug}/modules/{refused_key}", json={"enabled": True}
    )
    assert refused.status_code == 422 and refused.json()["code"] == "module_not_for_kind"


async def test_switch_on_and_off(client):
    owner = await make_user()
    tenant = await make_tenant(owner)
    await sign_in(client, owner)
    home = f"/t/{tenant.slug}/m/policy"
    off = await client.get(f"{home}?lang=en")
    assert off.status_code == 403
    assert "has not switched on" in off.text
    assert (await client.get(f"/api/v1{home}")).json()["code"] == "module_not_enabled"

    switched = await client.post(f"/t/{tenant.slug}/modules/policy", data={"enabled": "1"})
    assert switched.status_code == 303
    page = await client.get(f"{home}?lang=zh_CN")
    assert page.status_code == 200 and "惠企政策" in page.text
    assert (await client.get(f"/api/v1{home}")).json()["enabled"] is True
    overview = (await client.get(f"/api/v1/t/{tenant.slug}")).json()
    assert [m["key"] for m in overview["modules"]] == ["policy"]
    async with db.tenant_scope(tenant.id):
        row = (
            await ModuleSubscription.select()
            .where(ModuleSubscription.tenant_id == tenant.id)
            .first()
        )
    assert (row["module_key"], row["status"], row["plan"]) == ("policy", "active", "free")
    # Switching on twice changes nothing and records nothing more.
    again = await client.post(f"/api/v1/t/{tenant.slug}/modules/policy", json={"enabled": True})
    assert again.json()["changed"] is False

    off_again = await client.post(
        f"/api/v1/t/{tenant.slug}/modules/policy", json={"enabled": False}
    )
    assert off_again.json()["changed"] is True
    assert (await client.get(home)).status_code == 403
    async with db.tenant_scope(tenant.id):
        status = (
            await ModuleSubscription.select(ModuleSubscription.status)
            .where(ModuleSubscription.tenant_id == tenant.id)
            .first()
        )
    assert status["status"] == "cancelled"
    assert [a for a in await audit_actions(tenant.id) if a.startswith("module.")] == [
        "module.enabled",
        "module.disabled",
    ]


async def test_unknown_module_and_plan(client):
    owner = await make_user()
    tenant = await make_tenant(owner)
    await sign_in(client, owner)
    assert (await client.get(f"/t/{tenant.slug}/m/nosuchmodule")).status_code == 404
    assert (await client.get(f"/api/v1/t/{tenant.slug}/m/nosuchmodule")).status_code == 404
    unknown = await client.post(
        f"/api/v1/t/{tenant.slug}/modules/nosuchmodule", json={"enabled": True}
    )
    assert unknown.status_code == 404
    plan = await client.post(
        f"/api/v1/t/{tenant.slug}/modules/policy", json={"enabled": True, "plan": "platinum"}
    )
    assert plan.status_code == 422 and plan.json()["errors"][0]["code"] == "plan_unknown"
    async with db.tenant_scope(tenant.id):
        assert (
            await ModuleSubscription.count().where(ModuleSubscription.tenant_id == tenant.id) == 0
        )


async def test_members_may_look_but_not_switch(client):
    from tests.tenants.test_members_roles import _join

    owner = await make_user()
    tenant = await make_tenant(owner)
    member = await make_user()
    await _join(client, owner, tenant, member)
    page = await client.get(f"/t/{tenant.slug}/modules")
    assert page.status_code == 200 and "/modules/policy" not in page.text  # no switch shown
    refused = await client.post(f"/api/v1/t/{tenant.slug}/modules/policy", json={"enabled": True})
    assert refused.status_code == 403


async def test_operator_lists_suspends_and_reactivates(client, operator_staff):
    owner = await make_user()
    tenant = await make_tenant(owner, name="被停用测试公司")
    await sign_in(client, owner)
    await client.post(f"/api/v1/t/{tenant.slug}/modules/policy", json={"enabled": True})
    assert (await client.get(f"/t/{tenant.slug}")).status_code == 200

    # An ordinary owner sees no operator console at all.
    assert (await client.get("/operator/tenants")).status_code == 404
    assert (await client.post(f"/api/v1/operator/tenants/{tenant.id}/suspend")).status_code == 404

    staff = operator_staff["admin"]
    await sign_in(client, staff)
    listing = (await client.get("/api/v1/operator/tenants", params={"q": "被停用"})).json()
    [row] = [r for r in listing if r["id"] == str(tenant.id)]
    assert (row["member_count"], row["modules_on"], row["kind"]) == (1, 1, "enterprise")
    assert row["credit_code"] and row["status"] == "active"
    page = await client.get("/operator/tenants?lang=zh_CN")
    assert page.status_code == 200 and "被停用测试公司" in page.text and "停用" in page.text

    suspended = await client.post(f"/operator/tenants/{tenant.id}/suspend")
    assert suspended.status_code == 303
    assert (await Tenant.select(Tenant.status).where(Tenant.id == tenant.id).first())[
        "status"
    ] == "suspended"
    await sign_in(client, owner)
    assert (await client.get(f"/t/{tenant.slug}")).status_code == 404
    assert (await client.get(f"/api/v1/t/{tenant.slug}/members")).status_code == 404
    assert tenant.slug not in [t["slug"] for t in (await client.get("/api/v1/orgs")).json()]

    await sign_in(client, staff)
    back = await client.post(f"/api/v1/operator/tenants/{tenant.id}/reactivate")
    assert back.json() == {"ok": True, "changed": True}
    await sign_in(client, owner)
    assert (await client.get(f"/t/{tenant.slug}")).status_code == 200
    assert [a for a in await audit_actions(tenant.id) if a.startswith("tenant.")] == [
        "tenant.created",
        "tenant.suspended",
        "tenant.reactivated",
    ]
    [event] = await audit_rows(tenant.id, "tenant.suspended")
    assert event["actor_id"] == staff.user_id


async def test_operator_rules(client, operator_staff):
    auditor = operator_staff["auditor"]
    owner = await make_user()
    tenant = await make_tenant(owner)
    await sign_in(client, auditor)
    listing = await client.get("/api/v1/operator/tenants")
    assert listing.status_code == 200 and str(tenant.id) in listing.text
    assert "/suspend" not in (await client.get("/operator/tenants")).text
    refused = await client.post(f"/api/v1/operator/tenants/{tenant.id}/suspend")
    assert refused.status_code == 404  # read-only staff: the manage route does not exist
    await sign_in(client, operator_staff["admin"])
    own = await client.post(f"/api/v1/operator/tenants/{operator_staff['operator_id']}/suspend")
    assert own.status_code == 409 and own.json()["code"] == "operator_tenant"
    missing = await client.post(
        "/api/v1/operator/tenants/00000000-0000-0000-0000-000000000000/suspend"
    )
    assert missing.status_code == 404
    assert (await client.post("/api/v1/operator/tenants/nope/suspend")).status_code == 404
    # Without a passed second factor, staff get nothing.
    await sign_in(client, operator_staff["admin"], mfa=False)
    assert (await client.get("/api/v1/operator/tenants")).status_code == 403

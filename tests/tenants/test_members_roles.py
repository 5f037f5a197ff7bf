"""Members and roles: changes take effect at once, owners stay, and the rules hold."""

from __future__ import annotations

from httpx import ASGITransport, AsyncClient

from canal.platform import db
from canal.platform.access.services import access, subject
from canal.platform.access.tables import CasbinRule
from canal.tenants.tables import Membership
from tests.factories import Person, make_user, sign_in
from tests.tenants.helpers import audit_actions, audit_rows, count_members, token_from


async def _join(client, owner: Person, tenant, person: Person, role: str = "member") -> None:
    """Bring ``person`` in the real way: an invitation they accept."""
    await sign_in(client, owner)
    created = await client.post(
        f"/api/v1/t/{tenant.slug}/invitations", json={"recipient": person.login, "role": role}
    )
    assert created.status_code == 201, created.text
    tenant_id, token = token_from(created.json()["link"])
    await sign_in(client, person)
    accepted = await client.post(f"/api/v1/invite/{tenant_id}/{token}")
    assert accepted.status_code == 200, accepted.text


async def _stored_lines(user_id, tenant_id) -> set[str]:
    rows = await CasbinRule.select(CasbinRule.v1).where(
        (CasbinRule.ptype == "g")
        & (CasbinRule.v0 == subject(user_id))
        & (CasbinRule.v2 == str(tenant_id))
    )
    return {r["v1"] for r in rows}


async def test_members_page_lists_masked_contacts_and_roles(client, owner_and_tenant):
    owner, tenant = owner_and_tenant
    member = await make_user("周成员", login="13912345678")
    await _join(client, owner, tenant, member)
    page = await client.get(f"/t/{tenant.slug}/members")
    assert page.status_code == 200
    assert "周成员" in page.text and "139****5678" in page.text and "13912345678" not in page.text
    api = (await client.get(f"/api/v1/t/{tenant.slug}/members")).json()
    by_name = {m["display_name"]: m for m in api}
    assert by_name["周成员"]["roles"] == ["member"]
    assert by_name["王所有者"]["roles"] == ["owner"]
    assert "***@example.cn" in by_name["王所有者"]["contact"]
    # A plain member may read members but not manage roles.
    assert (await client.get(f"/t/{tenant.slug}/roles")).status_code == 403
    forbidden = await client.post(
        f"/api/v1/t/{tenant.slug}/roles/{owner.user_id}/revoke", json={"role": "owner"}
    )
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "forbidden"


async def test_granting_a_role_takes_effect_at_once(client, owner_and_tenant, app):
    owner, tenant = owner_and_tenant
    member = await make_user("吴晋升")
    await _join(client, owner, tenant, member)
    async with AsyncClient(
        transport=ASGITransport(app=app), base_url="https://testserver.local"
    ) as theirs:
        await sign_in(theirs, member)
        assert (await theirs.get(f"/t/{tenant.slug}/roles")).status_code == 403
        await sign_in(client, owner)
        granted = await client.post(
            f"/t/{tenant.slug}/roles/{member.user_id}/grant", data={"role": "admin"}
        )
        assert granted.status_code == 303
        assert (await theirs.get(f"/t/{tenant.slug}/roles")).status_code == 200
        assert await _stored_lines(member.user_id, tenant.id) == {"role:member", "role:admin"}
        revoked = await client.post(
            f"/api/v1/t/{tenant.slug}/roles/{member.user_id}/revoke", json={"role": "admin"}
        )
        assert revoked.json() == {"ok": True, "changed": True}
        assert (await theirs.get(f"/t/{tenant.slug}/roles")).status_code == 403
    rows = await audit_rows(tenant.id, "role.granted") + await audit_rows(tenant.id, "role.revoked")
    assert {r["action"] for r in rows} == {"role.granted", "role.revoked"}
    assert all(r["target"] == str(member.user_id) for r in rows)


async def test_role_rules(client, owner_and_tenant):
    owner, tenant = owner_and_tenant
    admin = await make_user("郑管理")
    await _join(client, owner, tenant, admin, role="admin")
    await sign_in(client, owner)
    base = f"/api/v1/t/{tenant.slug}/roles"
    # Unknown role, another tenant's role catalogue, a malformed id, a non-member.
    unknown = await client.post(f"{base}/{admin.user_id}/grant", json={"role": "emperor"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["code"] == "role_unknown"
    operator_role = await client.post(
        f"{base}/{admin.user_id}/grant", json={"role": "platform_admin"}
    )
    assert operator_role.status_code == 422
    assert (
        await client.post(f"{base}/not-a-uuid/grant", json={"role": "admin"})
    ).status_code == 404
    outsider = await make_user()
    stranger = await client.post(f"{base}/{outsider.user_id}/grant", json={"role": "member"})
    assert stranger.status_code == 404
    assert await _stored_lines(outsider.user_id, tenant.id) == set()
    # The last owner cannot lose the role; a member keeps at least one role.
    last = await client.post(f"{base}/{owner.user_id}/revoke", json={"role": "owner"})
    assert last.status_code == 409 and last.json()["code"] == "last_owner"
    only = await client.post(f"{base}/{admin.user_id}/revoke", json={"role": "admin"})
    assert only.status_code == 409 and only.json()["code"] == "last_role"
    page = await client.post(
        f"/t/{tenant.slug}/roles/{owner.user_id}/revoke", data={"role": "owner"}
    )
    assert page.status_code == 409 and "组织至少需要一位所有者" in page.text
    # Only owners grant owner: the admin may not, the owner may.
    await sign_in(client, admin)
    by_admin = await client.post(f"{base}/{admin.user_id}/grant", json={"role": "owner"})
    assert by_admin.status_code == 403 and by_admin.json()["code"] == "owner_only"
    assert "owner" not in access().roles_in(admin.user_id, tenant.id)
    removes_owner = await client.post(f"/api/v1/t/{tenant.slug}/members/{owner.user_id}/remove")
    assert removes_owner.status_code == 403
    await sign_in(client, owner)
    ok = await client.post(f"{base}/{admin.user_id}/grant", json={"role": "owner"})
    assert ok.json()["changed"] is True
    # With two owners, one may step down (keeping another role, as every member must).
    down = await client.post(f"{base}/{owner.user_id}/revoke", json={"role": "owner"})
    assert down.status_code == 409 and down.json()["code"] == "last_role"
    await client.post(f"{base}/{owner.user_id}/grant", json={"role": "member"})
    down = await client.post(f"{base}/{owner.user_id}/revoke", json={"role": "owner"})
    assert down.json() == {"ok": True, "changed": True}
    assert access().roles_in(owner.user_id, tenant.id) == ["member"]
    assert await _stored_lines(owner.user_id, tenant.id) == {"role:member"}
    assert (await client.get(f"/t/{tenant.slug}/roles")).status_code == 403


async def test_remove_member_drops_roles_and_membership(client, owner_and_tenant):
    owner, tenant = owner_and_tenant
    member = await make_user("冯移除")
    await _join(client, owner, tenant, member, role="admin")
    await sign_in(client, owner)
    await client.post(
        f"/api/v1/t/{tenant.slug}/roles/{member.user_id}/grant", json={"role": "member"}
    )
    assert await count_members(tenant.id) == 2
    removed = await client.post(f"/t/{tenant.slug}/members/{member.user_id}/remove")
    assert removed.status_code == 303
    assert await count_members(tenant.id) == 1
    assert await _stored_lines(member.user_id, tenant.id) == set()
    assert access().roles_in(member.user_id, tenant.id) == []
    [event] = await audit_rows(tenant.id, "member.removed")
    assert event["target"] == str(member.user_id)
    await sign_in(client, member)
    assert (await client.get(f"/t/{tenant.slug}")).status_code == 404
    # Removing them again: they are no longer a member, so there is nothing to find.
    await sign_in(client, owner)
    again = await client.post(f"/api/v1/t/{tenant.slug}/members/{member.user_id}/remove")
    assert again.status_code == 404


async def test_leave_and_last_owner(client, owner_and_tenant):
    owner, tenant = owner_and_tenant
    member = await make_user("陈离开")
    await _join(client, owner, tenant, member)
    left = await client.post(f"/t/{tenant.slug}/leave")
    assert left.status_code == 303 and left.headers["location"] == "/orgs"
    assert access().roles_in(member.user_id, tenant.id) == []
    async with db.tenant_scope(tenant.id):
        assert not await Membership.exists().where(
            (Membership.tenant_id == tenant.id) & (Membership.user_id == member.user_id)
        )
    assert (await client.get(f"/t/{tenant.slug}")).status_code == 404
    await sign_in(client, owner)
    refused = await client.post(f"/api/v1/t/{tenant.slug}/leave?lang=en")
    assert refused.status_code == 409 and "at least one owner" in refused.json()["detail"]
    page = await client.post(f"/t/{tenant.slug}/leave?lang=zh_CN")
    assert page.status_code == 409 and "组织至少需要一位所有者" in page.text
    assert access().roles_in(owner.user_id, tenant.id) == ["owner"]
    assert "member.left" in await audit_actions(tenant.id)


async def test_switcher_lists_my_organisations(client, owner_and_tenant):
    owner, tenant = owner_and_tenant
    from tests.factories import make_tenant

    second = await make_tenant(owner, name="第二家公司")
    await sign_in(client, owner)
    orgs = await client.get("/orgs")
    assert f"/t/{tenant.slug}" in orgs.text and f"/t/{second.slug}" in orgs.text

"""Platform roles (``platform_admin``, ``platform_auditor``) in the operator organisation: like
``owner``, only an owner hands them out, takes them away or invites with them."""

from __future__ import annotations

import uuid

from canal.platform import db
from canal.platform.access.services import access
from canal.platform.identity.tables import OutboxMessage, User
from canal.tenants.tables import Invitation, Membership, Tenant
from tests.factories import Person, make_user, sign_in, unique
from tests.tenants.helpers import audit_rows


async def _staff(operator_id: uuid.UUID, role: str, name: str) -> Person:
    """A member of the operator tenant with ``role`` and TOTP on (operator staff need it)."""
    person = await make_user(name)
    await User.update({User.totp_enabled: True}).where(User.id == person.user_id)
    async with db.tenant_scope(operator_id):
        await Membership.insert(Membership(tenant_id=operator_id, user_id=person.user_id))
        await access().assign_role(person.user_id, role, operator_id)
    return person


async def _operator_slug(operator_id: uuid.UUID) -> str:
    row = await Tenant.select(Tenant.slug).where(Tenant.id == operator_id).first()
    assert row is not None
    return row["slug"]


async def test_operator_admin_cannot_grant_platform_roles(client, operator_staff):
    operator_id = operator_staff["operator_id"]
    slug = await _operator_slug(operator_id)
    admin = await _staff(operator_id, "admin", "运营方管理员")
    colleague = await _staff(operator_id, "member", "运营方成员")
    base = f"/api/v1/t/{slug}/roles"

    await sign_in(client, admin)
    for role in ("platform_admin", "platform_auditor"):
        for target in (admin, colleague):
            refused = await client.post(f"{base}/{target.user_id}/grant", json={"role": role})
            assert refused.status_code == 403, refused.text
            body = refused.json()
            assert body["code"] == "platform_role_owner_only"
            assert role not in access().roles_in(target.user_id, operator_id)
    refused_en = await client.post(
        f"{base}/{admin.user_id}/grant",
        json={"role": "platform_admin"},
        headers={"Accept-Language": "en"},
    )
    assert "Only an owner of the operator organisation" in refused_en.text
    assert access().roles_in(admin.user_id, operator_id) == ["admin"]
    granted = [
        r for r in await audit_rows(operator_id, "role.granted") if r["actor_id"] == admin.user_id
    ]
    assert granted == []

    # An owner may grant it; the admin may then not take it away again.
    owner = await _staff(operator_id, "owner", "运营方所有者")
    await sign_in(client, owner)
    ok = await client.post(f"{base}/{colleague.user_id}/grant", json={"role": "platform_auditor"})
    assert ok.status_code == 200, ok.text
    assert "platform_auditor" in access().roles_in(colleague.user_id, operator_id)
    await sign_in(client, admin)
    revoke = await client.post(
        f"{base}/{colleague.user_id}/revoke", json={"role": "platform_auditor"}
    )
    assert revoke.status_code == 403 and revoke.json()["code"] == "platform_role_owner_only"
    assert "platform_auditor" in access().roles_in(colleague.user_id, operator_id)
    remove = await client.post(f"/api/v1/t/{slug}/members/{colleague.user_id}/remove")
    assert remove.status_code == 403 and remove.json()["code"] == "platform_role_owner_only"
    assert "platform_auditor" in access().roles_in(colleague.user_id, operator_id)
    # The owner may revoke it.
    await sign_in(client, owner)
    done = await client.post(
        f"{base}/{colleague.user_id}/revoke", json={"role": "platform_auditor"}
    )
    assert done.status_code == 200, done.text
    assert access().roles_in(colleague.user_id, operator_id) == ["member"]


async def test_operator_admin_cannot_invite_with_platform_roles(client, operator_staff):
    operator_id = operator_staff["operator_id"]
    slug = await _operator_slug(operator_id)
    admin = await _staff(operator_id, "admin", "运营方管理员")
    await sign_in(client, admin)
    for role in ("platform_admin", "platform_auditor"):
        recipient = f"{unique()}@example.cn"
        refused = await client.post(
            f"/api/v1/t/{slug}/invitations", json={"recipient": recipient, "role": role}
        )
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "platform_role_owner_only"
        async with db.tenant_scope(operator_id):
            assert not await Invitation.exists().where(Invitation.recipient == recipient)
        assert not await OutboxMessage.exists().where(OutboxMessage.recipient == recipient)
    # Ordinary roles still work for an admin; an owner may invite with a platform role.
    plain = await client.post(
        f"/api/v1/t/{slug}/invitations",
        json={"recipient": f"{unique()}@example.cn", "role": "member"},
    )
    assert plain.status_code == 201, plain.text
    owner = await _staff(operator_id, "owner", "运营方所有者")
    await sign_in(client, owner)
    ok = await client.post(
        f"/api/v1/t/{slug}/invitations",
        json={"recipient": f"{unique()}@example.cn", "role": "platform_auditor"},
    )
    assert ok.status_code == 201, ok.text

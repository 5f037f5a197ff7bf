"""Invitations: sent through the outbox, accepted once, by the right account only."""

from __future__ import annotations

import datetime as dt

from canal.platform import clock, db
from canal.platform.access.services import access
from canal.platform.identity.tables import OutboxMessage
from canal.tenants.tables import Invitation
from tests.factories import make_tenant, make_user, sign_in, unique
from tests.tenants.helpers import (
    audit_actions,
    audit_rows,
    count_members,
    make_phone_user,
    phone_number,
    token_from,
)


async def _invite(client, slug: str, recipient: str, role: str = "member"):
    response = await client.post(
        f"/api/v1/t/{slug}/invitations", json={"recipient": recipient, "role": role}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_email_invitation_end_to_end(client, owner_and_tenant, app):
    owner, tenant = owner_and_tenant
    invitee = await make_user("赵受邀")
    await sign_in(client, owner)
    created = await _invite(client, tenant.slug, invitee.login.upper(), "admin")
    assert created["channel"] == "email"
    assert created["invitation"]["recipient"].endswith("@example.cn")
    assert "***" in created["invitation"]["recipient"]
    # The message is in the outbox (the delivery job reads it) and carries the same link.
    message = await OutboxMessage.select().where(OutboxMessage.recipient == invitee.login).first()
    assert message is not None and message["channel"] == "email"
    assert created["link"] in message["body"] and "7 天" in message["body"]
    tenant_id, token = token_from(message["body"])
    assert tenant_id == str(tenant.id)
    # Only the token's hash is stored.
    async with db.tenant_scope(tenant.id):
        stored = await Invitation.select().where(Invitation.tenant_id == tenant.id).first()
    assert token not in str(stored.values()) and len(stored["token_hash"]) == 64
    # The delivery job was queued after commit.
    queued = await app.state.redis.zrange("arq:queue", 0, -1)
    assert queued, "no delivery job was queued"
    pending = (await client.get(f"/api/v1/t/{tenant.slug}/invitations")).json()
    assert [p["id"] for p in pending] == [created["invitation"]["id"]]

    client.cookies.clear()
    del client.headers["X-CSRF-Token"]
    anonymous = await client.get(f"/invite/{tenant_id}/{token}")
    assert anonymous.status_code == 200
    assert tenant.name in anonymous.text and "管理员" in anonymous.text
    assert f"/login?next=/invite/{tenant_id}/{token}" in anonymous.text

    await sign_in(client, invitee)
    accepted = await client.post(f"/invite/{tenant_id}/{token}")
    assert accepted.status_code == 303 and accepted.headers["location"] == f"/t/{tenant.slug}"
    assert access().roles_in(invitee.user_id, tenant.id) == ["admin"]
    assert (await client.get(f"/t/{tenant.slug}/roles")).status_code == 200
    assert await count_members(tenant.id) == 2
    actions = await audit_actions(tenant.id)
    assert actions[-2:] == ["member.invited", "invitation.accepted"]
    # The link works once.
    again = await client.post(f"/api/v1/invite/{tenant_id}/{token}")
    assert again.status_code == 410 and again.json()["code"] == "invitation_used"


async def test_phone_invitation_goes_by_sms_and_needs_that_phone(client, owner_and_tenant):
    owner, tenant = owner_and_tenant
    invitee = await make_phone_user("钱手机")
    stranger = await make_phone_user("孙陌生")
    await sign_in(client, owner)
    created = await _invite(client, tenant.slug, invitee.login)
    assert created["channel"] == "sms"
    assert created["invitation"]["recipient"] == invitee.login[:3] + "****" + invitee.login[-4:]
    sms = (
        await OutboxMessage.select().where(OutboxMessage.recipient == f"+86{invitee.login}").first()
    )
    assert sms["channel"] == "sms" and created["link"] in sms["body"]
    tenant_id, token = token_from(created["link"])

    await sign_in(client, stranger)
    refused = await client.post(f"/api/v1/invite/{tenant_id}/{token}?lang=en")
    assert refused.status_code == 403 and refused.json()["code"] == "invitation_wrong_account"
    assert "different phone number or e-mail" in refused.json()["detail"]
    page = await client.post(f"/invite/{tenant_id}/{token}?lang=zh_CN")
    assert page.status_code == 403 and "这份邀请发给了另一个手机号或邮箱" in page.text
    assert access().roles_in(stranger.user_id, tenant.id) == []
    assert await count_members(tenant.id) == 1

    await sign_in(client, invitee)
    accepted = await client.post(f"/api/v1/invite/{tenant_id}/{token}")
    assert accepted.status_code == 200 and accepted.json()["slug"] == tenant.slug
    assert access().roles_in(invitee.user_id, tenant.id) == ["member"]


async def test_revoked_invitation_is_refused_and_changes_nothing(client, owner_and_tenant):
    owner, tenant = owner_and_tenant
    invitee = await make_user()
    await sign_in(client, owner)
    created = await _invite(client, tenant.slug, invitee.login)
    invitation_id = created["invitation"]["id"]
    revoked = await client.post(f"/t/{tenant.slug}/invitations/{invitation_id}/revoke")
    assert revoked.status_code == 303
    assert (await client.get(f"/api/v1/t/{tenant.slug}/invitations")).json() == []
    twice = await client.post(f"/api/v1/t/{tenant.slug}/invitations/{invitation_id}/revoke")
    assert twice.status_code == 410 and twice.json()["code"] == "invitation_revoked"
    assert len(await audit_rows(tenant.id, "invitation.revoked")) == 1

    tenant_id, token = token_from(created["link"])
    await sign_in(client, invitee)
    preview = await client.get(f"/api/v1/invite/{tenant_id}/{token}")
    assert preview.json()["status"] == "revoked"
    for lang, text in (("zh_CN", "已被组织撤销"), ("en", "has revoked this invitation")):
        refused = await client.post(f"/api/v1/invite/{tenant_id}/{token}?lang={lang}")
        assert refused.status_code == 410 and text in refused.json()["detail"]
    assert await count_members(tenant.id) == 1


async def test_expired_invitation_is_refused(client, owner_and_tenant):
    owner, tenant = owner_and_tenant
    invitee = await make_user()
    await sign_in(client, owner)
    created = await _invite(client, tenant.slug, invitee.login)
    async with db.tenant_scope(tenant.id):
        await Invitation.update(
            {Invitation.expires_at: clock.now() - dt.timedelta(minutes=1)}
        ).where(Invitation.id == created["invitation"]["id"])
    tenant_id, token = token_from(created["link"])
    await sign_in(client, invitee)
    page = await client.get(f"/invite/{tenant_id}/{token}")
    assert page.status_code == 200 and "已过期" in page.text and "接受并加入" not in page.text
    refused = await client.post(f"/api/v1/invite/{tenant_id}/{token}")
    assert refused.status_code == 410 and refused.json()["code"] == "invitation_expired"
    assert access().roles_in(invitee.user_id, tenant.id) == []
    assert "invitation.accepted" not in await audit_actions(tenant.id)


async def test_bad_invitation_input(client, owner_and_tenant):
    owner, tenant = owner_and_tenant
    member = await make_user()
    await sign_in(client, owner)
    for recipient, role, code in (
        ("not-a-contact", "member", "recipient_invalid"),
        ("12345", "member", "recipient_invalid"),
        (f"{unique()}@example.cn", "emperor", "role_unknown"),
        (f"{unique()}@example.cn", "platform_admin", "role_unknown"),
        (owner.login, "member", "already_member"),
    ):
        response = await client.post(
            f"/api/v1/t/{tenant.slug}/invitations", json={"recipient": recipient, "role": role}
        )
        assert response.status_code == 422, (recipient, response.text)
        assert code in [e["code"] for e in response.json()["errors"]]
    await _invite(client, tenant.slug, member.login)
    duplicate = await client.post(
        f"/api/v1/t/{tenant.slug}/invitations", json={"recipient": member.login, "role": "member"}
    )
    assert [e["code"] for e in duplicate.json()["errors"]] == ["invitation_pending"]
    form = await client.post(
        f"/t/{tenant.slug}/invitations", data={"recipient": "nobody", "role": "member"}
    )
    assert form.status_code == 422 and "请输入有效的手机号" in form.text
    assert len((await client.get(f"/api/v1/t/{tenant.slug}/invitations")).json()) == 1


async def test_form_invitation_shows_the_link_once(client, owner_and_tenant):
    owner, tenant = owner_and_tenant
    await sign_in(client, owner)
    phone = phone_number()
    page = await client.post(
        f"/t/{tenant.slug}/invitations", data={"recipient": phone, "role": "member"}
    )
    assert page.status_code == 201
    assert f"/invite/{tenant.id}/" in page.text and phone[:3] + "****" in page.text
    listing = await client.get(f"/t/{tenant.slug}/invitations")
    assert f"/invite/{tenant.id}/" not in listing.text  # only the hash is kept


async def test_only_owners_invite_owners(client, owner_and_tenant):
    owner, tenant = owner_and_tenant
    admin = await make_user()
    await sign_in(client, owner)
    created = await _invite(client, tenant.slug, admin.login, "admin")
    await sign_in(client, admin)
    await client.post(f"/api/v1/invite/{tenant.id}/{token_from(created['link'])[1]}")
    refused = await client.post(
        f"/api/v1/t/{tenant.slug}/invitations",
        json={"recipient": f"{unique()}@example.cn", "role": "owner"},
    )
    assert refused.status_code == 403 and refused.json()["code"] == "owner_only"


async def test_invitation_links_are_scoped(client, owner_and_tenant):
    """A token is looked up inside the tenant named in the link: another tenant's id finds
    nothing, and another tenant's invitation id answers 404."""
    owner, tenant = owner_and_tenant
    other_owner = await make_user()
    other = await make_tenant(other_owner)
    await sign_in(client, owner)
    created = await _invite(client, tenant.slug, f"{unique()}@example.cn")
    _, token = token_from(created["link"])
    assert (await client.get(f"/invite/{other.id}/{token}")).status_code == 404
    assert (await client.get(f"/invite/not-a-uuid/{token}")).status_code == 404
    assert (await client.get(f"/invite/{tenant.id}/wrong-token")).status_code == 404
    await sign_in(client, other_owner)
    foreign = await client.post(
        f"/api/v1/t/{other.slug}/invitations/{created['invitation']['id']}/revoke"
    )
    assert foreign.status_code == 404
    assert (await client.post(f"/t/{other.slug}/invitations/zzz/revoke")).status_code == 404


async def test_long_organisation_name_still_invites(client):
    """The subject names the organisation twice; a 100-character name must still fit."""
    owner = await make_user("长名所有者")
    name = ("聊城" + unique("") + "数字城市综合服务科技发展集团有限责任公司" * 5)[:100]
    assert len(name) == 100
    tenant = await make_tenant(owner, name=name)
    invitee = await make_user("长名受邀")
    await sign_in(client, owner)
    created = await _invite(client, tenant.slug, invitee.login, "member")
    message = await OutboxMessage.select().where(OutboxMessage.recipient == invitee.login).first()
    assert message is not None
    assert len(message["subject"]) <= 200
    assert message["subject"].startswith("邀请您加入「聊城") and "…" in message["subject"]
    assert name in message["body"]  # the body keeps the full name
    assert created["link"] in message["body"]

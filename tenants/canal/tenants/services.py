"""Organisations: creation, membership, invitations, roles, module subscriptions, suspension.

Every function takes plain values (or a TenantContext) — callable from a controller, a job,
the CLI or a test alike. Callers have passed the access guard for the route's permission;
the finer rules (only owners touch ``owner`` and the ``platform_*`` roles, the last owner
stays) are enforced here, inside the transaction that makes the change, with the tenant row
locked so two concurrent requests cannot both remove "the other" owner.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from asyncpg.exceptions import UniqueViolationError

from canal.platform import clock, db
from canal.platform.access.roles import RoleDef, role_catalog
from canal.platform.access.services import access, role_subject, subject
from canal.platform.access.tables import CasbinRule
from canal.platform.audit.services import record
from canal.platform.http.context import TenantContext
from canal.platform.http.errors import CanalError, FieldError, invalid, not_found
from canal.platform.identity import validators as identity_validators
from canal.platform.identity.secrets import new_token, token_hash
from canal.platform.identity.tables import OutboxMessage, User
from canal.platform.invalidation import register as register_invalidation
from canal.platform.jobs.outbox import enqueue_after_commit
from canal.platform.modules import ModuleSpec, get_module, registry
from canal.tenants import validators
from canal.tenants.tables import TENANT_KINDS, Invitation, Membership, ModuleSubscription, Tenant

log = logging.getLogger("canal.tenants")

NAME_MAX = validators.NAME_MAX
INVITATION_DAYS = 7
CREATABLE_KINDS = tuple(k for k in TENANT_KINDS if k != "operator")
KIND_NAMES = {
    "operator": ("运营方", "Operator"),
    "enterprise": ("企业", "Enterprise"),
    "park": ("园区", "Park"),
    "community": ("社区", "Community"),
    "government": ("政府部门", "Government department"),
}


def kind_name(kind: str, locale: str) -> str:
    zh, en = KIND_NAMES.get(kind, (kind, kind))
    return zh if locale.startswith("zh") else en


@dataclass(frozen=True)
class TenantSummary:
    id: uuid.UUID
    slug: str
    name: str
    kind: str


# --- creating organisations ---------------------------------------------------------------


async def create_tenant(
    *,
    creator_id: uuid.UUID,
    name: str,
    slug: str,
    kind: str,
    credit_code: str | None = None,
    ip: str = "",
) -> TenantSummary:
    """Create an organisation with its creator as owner, all in one transaction.

    Every field is checked before anything is written, so one answer lists every problem.
    """
    errors: list[FieldError] = []
    clean_name = ""
    try:
        clean_name = validators.parse_org_name(name)
    except ValueError as exc:
        errors.append(exc.args[0])
    if kind not in CREATABLE_KINDS:
        errors.append(
            FieldError(
                "kind",
                "kind_invalid",
                "请选择组织类型:企业、园区、社区或政府部门。",
                "Choose the kind of organisation: enterprise, park, community "
                "or government department.",
            )
        )
    clean_slug = ""
    slug = (slug or "").strip() or validators.suggest_slug(clean_name or name)
    if not slug:
        errors.append(
            FieldError(
                "slug",
                "slug_required",
                "请填写网址标识(3–40 位小写字母、数字或连字符)。",
                "Choose a web address name (3–40 lowercase letters, digits or hyphens).",
            )
        )
    else:
        try:
            clean_slug = validators.parse_slug(slug)
        except ValueError as exc:
            errors.append(exc.args[0])
    code = None
    if credit_code and credit_code.strip():
        try:
            code = validators.parse_credit_code(credit_code)
        except ValueError as exc:
            errors.append(exc.args[0])
    elif kind in {"enterprise", "park"}:
        errors.append(
            FieldError(
                "credit_code",
                "credit_code_required",
                "企业与园区须填写统一社会信用代码。",
                "Enterprises and parks must give their unified social credit code.",
            )
        )
    if errors:
        raise invalid(errors)
    return await _insert_tenant(creator_id, clean_name, clean_slug, kind, code, ip)


def _taken(field_name: str) -> CanalError:
    if field_name == "credit_code":
        return invalid(
            [
                FieldError(
                    "credit_code",
                    "credit_code_taken",
                    "该统一社会信用代码已被其他组织使用。",
                    "Another organisation already uses this credit code.",
                )
            ]
        )
    return invalid(
        [
            FieldError(
                "slug",
                "slug_taken",
                "该网址标识已被占用,请换一个。",
                "That web address name is taken; choose another.",
            )
        ]
    )


async def _insert_tenant(
    creator_id: uuid.UUID, name: str, slug: str, kind: str, code: str | None, ip: str
) -> TenantSummary:
    tenant = Tenant(name=name, slug=slug, kind=kind, credit_code=code, created_by=creator_id)
    try:
        async with db.transaction():
            await tenant.save()
            async with db.tenant_scope(tenant.id, creator_id):
                await Membership.insert(Membership(tenant_id=tenant.id, user_id=creator_id))
                await access().install_tenant_roles(tenant.id, kind)
                await access().assign_role(creator_id, "owner", tenant.id)
                await record(
                    "tenant.created",
                    actor_id=creator_id,
                    tenant_id=tenant.id,
                    target=slug,
                    ip=ip,
                    data={"name": name, "kind": kind, "credit_code": code},
                )
    except UniqueViolationError as exc:
        # Name the field from the violated constraint; anything else is not the user's doing.
        constraint = getattr(exc, "constraint_name", "") or ""
        if constraint.startswith("tenants_credit_code"):
            raise _taken("credit_code") from None
        if constraint.startswith("tenants_slug"):
            raise _taken("slug") from None
        raise
    return TenantSummary(tenant.id, slug, name, kind)


async def create_operator_tenant(
    *, creator_id: uuid.UUID, name: str, slug: str, credit_code: str | None
) -> TenantSummary:
    """The operating company's own tenant (set-up and demo only; never from a form)."""
    code = validators.parse_credit_code(credit_code) if credit_code else None
    return await _insert_tenant(creator_id, name, slug, "operator", code, "")


async def my_tenants(user_id: uuid.UUID) -> list[TenantSummary]:
    """The active organisations a person belongs to (one query; for the switcher)."""
    async with db.user_scope(user_id):
        rows = (
            await Membership.select(
                Membership.tenant_id.id,
                Membership.tenant_id.slug,
                Membership.tenant_id.name,
                Membership.tenant_id.kind,
            )
            .where((Membership.user_id == user_id) & (Membership.tenant_id.status == "active"))
            .order_by(Membership.tenant_id.name)
        )
    return [
        TenantSummary(
            r["tenant_id.id"], r["tenant_id.slug"], r["tenant_id.name"], r["tenant_id.kind"]
        )
        for r in rows
    ]


# --- the organisation's home ----------------------------------------------------------------


@dataclass
class TenantOverview:
    id: uuid.UUID
    slug: str
    name: str
    kind: str
    credit_code: str | None
    status: str
    created_at: dt.datetime
    my_roles: list[str]
    enabled_modules: list[str]
    member_count: int


async def tenant_overview(ctx: TenantContext) -> TenantOverview:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = await Tenant.select().where(Tenant.id == ctx.tenant_id).first()
        members = await Membership.count().where(Membership.tenant_id == ctx.tenant_id)
        modules = await ModuleSubscription.select(ModuleSubscription.module_key).where(
            (ModuleSubscription.tenant_id == ctx.tenant_id) & _entitled()
        )
    if row is None:
        raise not_found()
    return TenantOverview(
        id=row["id"],
        slug=row["slug"],
        name=row["name"],
        kind=row["kind"],
        credit_code=row["credit_code"],
        status=row["status"],
        created_at=row["created_at"],
        my_roles=access().roles_in(ctx.user_id, ctx.tenant_id),
        enabled_modules=sorted(m["module_key"] for m in modules if m["module_key"] in registry()),
        member_count=members,
    )


# --- members ----------------------------------------------------------------------------------


def mask_email(email: str) -> str:
    """z***@example.cn: the first character and the domain stay."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else email


def mask_contact(email: str | None, phone: str | None) -> str:
    if phone:
        return identity_validators.mask_phone(phone)
    if email:
        return mask_email(email)
    return ""


@dataclass
class MemberView:
    user_id: uuid.UUID
    display_name: str
    contact: str  # masked
    roles: list[str]
    joined_at: dt.datetime


async def list_members(ctx: TenantContext) -> list[MemberView]:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        rows = (
            await Membership.select(
                Membership.user_id.id,
                Membership.user_id.display_name,
                Membership.user_id.email,
                Membership.user_id.phone,
                Membership.created_at,
            )
            .where(Membership.tenant_id == ctx.tenant_id)
            .order_by(Membership.created_at)
        )
    roles = access().users_in(ctx.tenant_id)
    return [
        MemberView(
            user_id=r["user_id.id"],
            display_name=r["user_id.display_name"],
            contact=mask_contact(r["user_id.email"], r["user_id.phone"]),
            roles=sorted(roles.get(str(r["user_id.id"]), [])),
            joined_at=r["created_at"],
        )
        for r in rows
    ]


async def _lock_tenant(tenant_id: uuid.UUID) -> None:
    """Serialise membership and role changes of one tenant (the last-owner rule needs it)."""
    await Tenant.raw("SELECT id FROM tenants WHERE id = {} FOR UPDATE", tenant_id)


async def _stored_roles(user_id: uuid.UUID, tenant_id: uuid.UUID) -> set[str]:
    """A member's roles as stored (not as cached in memory), inside the caller's transaction."""
    rows = await CasbinRule.select(CasbinRule.v1).where(
        (CasbinRule.ptype == "g")
        & (CasbinRule.v0 == subject(user_id))
        & (CasbinRule.v2 == str(tenant_id))
    )
    return {r["v1"].removeprefix("role:") for r in rows}


async def _owner_count(tenant_id: uuid.UUID) -> int:
    return await CasbinRule.count().where(
        (CasbinRule.ptype == "g")
        & (CasbinRule.v1 == role_subject("owner"))
        & (CasbinRule.v2 == str(tenant_id))
    )


async def _require_member(ctx: TenantContext, user_id: uuid.UUID) -> None:
    """Another tenant's user, or nobody, answers like a missing object."""
    found = await Membership.exists().where(
        (Membership.tenant_id == ctx.tenant_id) & (Membership.user_id == user_id)
    )
    if not found:
        raise not_found()


def last_owner() -> CanalError:
    return CanalError(
        "last_owner",
        "组织至少需要一位所有者:请先将所有者角色授予另一位成员。",
        "An organisation needs at least one owner: grant the owner role to another member first.",
        status=409,
    )


def owner_only() -> CanalError:
    return CanalError(
        "owner_only",
        "只有所有者可以授予或撤销所有者角色,或移除所有者。",
        "Only an owner may grant or revoke the owner role, or remove an owner.",
        status=403,
    )


def platform_role_owner_only() -> CanalError:
    return CanalError(
        "platform_role_owner_only",
        "只有运营方的所有者可以授予、撤销或邀请平台角色(平台管理员、平台审计员)。",
        "Only an owner of the operator organisation may grant, revoke or invite with a "
        "platform role (platform administrator, platform auditor).",
        status=403,
    )


def _is_platform_role(role: str) -> bool:
    return role.startswith("platform_")


async def _require_owner_for(ctx: TenantContext, role: str) -> None:
    """``owner`` and every ``platform_*`` role: only an owner of this tenant hands them out.

    Checked against the stored roles inside the caller's transaction (after the tenant lock),
    so a role taken away a moment ago no longer counts.
    """
    if role != "owner" and not _is_platform_role(role):
        return
    if "owner" in await _stored_roles(ctx.user_id, ctx.tenant_id):
        return
    raise owner_only() if role == "owner" else platform_role_owner_only()


def _unknown_role(field_name: str = "role") -> CanalError:
    return invalid(
        [
            FieldError(
                field_name,
                "role_unknown",
                "本组织没有这个角色,请从列表中选择。",
                "This organisation has no such role; choose one from the list.",
            )
        ]
    )


def _role_def(ctx: TenantContext, role: str, field_name: str = "role") -> RoleDef:
    found = role_catalog(ctx.tenant.kind).get(role)
    if found is None:
        raise _unknown_role(field_name)
    return found


async def grant_role(ctx: TenantContext, user_id: uuid.UUID, role: str, *, ip: str = "") -> bool:
    """Give a member one more role; True if it was new. Takes effect after commit."""
    _role_def(ctx, role)
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await _lock_tenant(ctx.tenant_id)
        await _require_member(ctx, user_id)
        await _require_owner_for(ctx, role)
        added = await access().assign_role(user_id, role, ctx.tenant_id)
        if added:
            await record(
                "role.granted",
                actor_id=ctx.user_id,
                tenant_id=ctx.tenant_id,
                target=str(user_id),
                ip=ip,
                data={"role": role},
            )
    return added


async def revoke_role(ctx: TenantContext, user_id: uuid.UUID, role: str, *, ip: str = "") -> bool:
    """Take one role from a member; a member keeps at least one role, a tenant one owner."""
    _role_def(ctx, role)
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await _lock_tenant(ctx.tenant_id)
        await _require_member(ctx, user_id)
        held = await _stored_roles(user_id, ctx.tenant_id)
        if role not in held:
            return False
        await _require_owner_for(ctx, role)
        if role == "owner" and await _owner_count(ctx.tenant_id) <= 1:
            raise last_owner()
        if held == {role}:
            raise CanalError(
                "last_role",
                "成员至少要保留一个角色;如需让其离开组织,请使用“移除成员”。",
                "A member keeps at least one role; to take someone out of the organisation, "
                "use Remove member.",
                status=409,
            )
        await access().revoke_role(user_id, role, ctx.tenant_id)
        await record(
            "role.revoked",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(user_id),
            ip=ip,
            data={"role": role},
        )
    return True


async def _drop_membership(ctx: TenantContext, user_id: uuid.UUID, action: str, ip: str) -> None:
    held = await _stored_roles(user_id, ctx.tenant_id)
    if "owner" in held and await _owner_count(ctx.tenant_id) <= 1:
        raise last_owner()
    await access().revoke_all(user_id, ctx.tenant_id)
    await Membership.delete().where(
        (Membership.tenant_id == ctx.tenant_id) & (Membership.user_id == user_id)
    )
    await record(
        action,
        actor_id=ctx.user_id,
        tenant_id=ctx.tenant_id,
        target=str(user_id),
        ip=ip,
        data={"roles": sorted(held)},
    )


async def remove_member(ctx: TenantContext, user_id: uuid.UUID, *, ip: str = "") -> None:
    """Take a member out: every role in this tenant goes, then the membership."""
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await _lock_tenant(ctx.tenant_id)
        await _require_member(ctx, user_id)
        held = await _stored_roles(user_id, ctx.tenant_id)
        # Removing a member takes every role: the same people may do it as may revoke them.
        for role in sorted(held, key=lambda r: r != "owner"):
            await _require_owner_for(ctx, role)
        await _drop_membership(ctx, user_id, "member.removed", ip)


async def leave_tenant(ctx: TenantContext, *, ip: str = "") -> None:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await _lock_tenant(ctx.tenant_id)
        await _require_member(ctx, ctx.user_id)
        await _drop_membership(ctx, ctx.user_id, "member.left", ip)


# --- invitations -----------------------------------------------------------------------------


@dataclass
class InvitationView:
    id: uuid.UUID
    recipient: str  # masked
    role: str
    created_at: dt.datetime
    expires_at: dt.datetime
    status: str  # pending | accepted | revoked | expired


@dataclass
class NewInvitation:
    invitation: InvitationView
    link: str  # shown once to the inviter; only the token's hash is stored
    message_id: uuid.UUID
    channel: str


def _status(row: dict[str, Any], now: dt.datetime) -> str:
    if row["accepted_at"] is not None:
        return "accepted"
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] <= now:
        return "expired"
    return "pending"


def _invitation_view(row: dict[str, Any], now: dt.datetime) -> InvitationView:
    kind = "email" if "@" in row["recipient"] else "phone"
    recipient = (
        mask_email(row["recipient"])
        if kind == "email"
        else identity_validators.mask_phone(row["recipient"])
    )
    return InvitationView(
        id=row["id"],
        recipient=recipient,
        role=row["role"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        status=_status(row, now),
    )


def invitation_link(base_url: str, tenant_id: uuid.UUID, token: str) -> str:
    return f"{base_url.rstrip('/')}/invite/{tenant_id}/{token}"


SUBJECT_MAX = 200  # OutboxMessage.subject is Varchar(200)


def _shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def invitation_subject(tenant_name: str) -> str:
    """The subject names the organisation twice (zh, en); a long name is shortened in it so
    the line fits the outbox column (the body always carries the full name)."""
    fixed = len("邀请您加入「」 · Invitation to join ")
    name = _shorten(tenant_name, (SUBJECT_MAX - fixed) // 2)
    return f"邀请您加入「{name}」 · Invitation to join {name}"


def _invitation_message(
    tenant_name: str, inviter: str, role: RoleDef, link: str, channel: str
) -> tuple[str, str]:
    subject_line = invitation_subject(tenant_name)
    if channel == "sms":
        body = (
            f"【数字东昌】{inviter}邀请您以“{role.zh}”身份加入「{tenant_name}」,7 天内有效:{link}"
        )
    else:
        body = (
            f"{inviter} 邀请您以“{role.zh}”身份加入「{tenant_name}」。\n"
            f"请在 7 天内打开以下链接,用本邮箱对应的账号登录后接受邀请:\n{link}\n\n"
            f"{inviter} invited you to join {tenant_name} as {role.en}.\n"
            f"Open this link within 7 days and accept while signed in with the account "
            f"that uses this e-mail address:\n{link}\n"
        )
    return subject_line, body


async def invite_member(
    ctx: TenantContext,
    *,
    recipient: str,
    role: str,
    base_url: str,
    ip: str = "",
) -> NewInvitation:
    """Invite a phone number or e-mail address with a role.

    The message and its delivery job go to the outbox in the same transaction (pushed to the
    worker after commit), so a rolled-back invitation never sends anything.
    """
    errors: list[FieldError] = []
    contact = identity_validators.classify_login(recipient or "")
    if contact is None:
        errors.append(
            FieldError(
                "recipient",
                "recipient_invalid",
                "请输入有效的手机号(11 位)或电子邮箱。",
                "Enter a valid mobile number (11 digits) or e-mail address.",
            )
        )
    role_def = role_catalog(ctx.tenant.kind).get(role)
    if role_def is None:
        errors.append(
            FieldError(
                "role",
                "role_unknown",
                "本组织没有这个角色,请从列表中选择。",
                "This organisation has no such role; choose one from the list.",
            )
        )
    if errors:
        raise invalid(errors)
    assert contact is not None and role_def is not None
    channel, address = ("email", contact[1]) if contact[0] == "email" else ("sms", contact[1])
    now = clock.now()
    token = new_token()
    link = invitation_link(base_url, ctx.tenant_id, token)
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        await _require_owner_for(ctx, role)
        column = User.email if channel == "email" else User.phone
        existing = await User.select(User.id).where(column == address).first()
        if existing and await Membership.exists().where(
            (Membership.tenant_id == ctx.tenant_id) & (Membership.user_id == existing["id"])
        ):
            raise invalid(
                [
                    FieldError(
                        "recipient",
                        "already_member",
                        "此手机号或邮箱对应的账号已是本组织成员。",
                        "The account with this phone number or e-mail is already a member.",
                    )
                ]
            )
        if await Invitation.exists().where(
            (Invitation.tenant_id == ctx.tenant_id)
            & (Invitation.recipient == address)
            & Invitation.accepted_at.is_null()
            & Invitation.revoked_at.is_null()
            & (Invitation.expires_at > now)
        ):
            raise invalid(
                [
                    FieldError(
                        "recipient",
                        "invitation_pending",
                        "已向此手机号或邮箱发出邀请且尚未处理;如需重发,请先撤销原邀请。",
                        "An invitation to this recipient is still pending; revoke "
                        "it first to send a new one.",
                    )
                ]
            )
        tenant_row = await Tenant.select(Tenant.name).where(Tenant.id == ctx.tenant_id).first()
        inviter = await User.select(User.display_name).where(User.id == ctx.user_id).first()
        invitation = Invitation(
            tenant_id=ctx.tenant_id,
            recipient=address,
            role=role,
            token_hash=token_hash(token),
            invited_by=ctx.user_id,
            created_at=now,
            expires_at=now + dt.timedelta(days=INVITATION_DAYS),
        )
        await invitation.save()
        subject_line, body = _invitation_message(
            tenant_row["name"] if tenant_row else ctx.tenant.name,
            inviter["display_name"] if inviter else "",
            role_def,
            link,
            channel,
        )
        message = OutboxMessage(channel=channel, recipient=address, subject=subject_line, body=body)
        await message.save()
        masked = _invitation_view(invitation.to_dict(), now).recipient
        await record(
            "member.invited",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(invitation.id),
            ip=ip,
            data={"role": role, "channel": channel, "recipient": masked},
        )
        await enqueue_after_commit("deliver_message", str(message.id), key=f"deliver:{message.id}")
    return NewInvitation(
        invitation=_invitation_view(invitation.to_dict(), now),
        link=link,
        message_id=message.id,
        channel=channel,
    )


async def pending_invitations(ctx: TenantContext) -> list[InvitationView]:
    now = clock.now()
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        rows = (
            await Invitation.select()
            .where(
                (Invitation.tenant_id == ctx.tenant_id)
                & Invitation.accepted_at.is_null()
                & Invitation.revoked_at.is_null()
                & (Invitation.expires_at > now)
            )
            .order_by(Invitation.created_at, ascending=False)
        )
    return [_invitation_view(r, now) for r in rows]


async def revoke_invitation(ctx: TenantContext, invitation_id: uuid.UUID, *, ip: str = "") -> None:
    now = clock.now()
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = (
            await Invitation.select()
            .where((Invitation.tenant_id == ctx.tenant_id) & (Invitation.id == invitation_id))
            .first()
        )
        if row is None:
            raise not_found()
        status = _status(row, now)
        if status != "pending":
            raise _invitation_refusal(status)
        await Invitation.update({Invitation.revoked_at: now}).where(Invitation.id == invitation_id)
        await record(
            "invitation.revoked",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=str(invitation_id),
            ip=ip,
            data={"role": row["role"]},
        )


def _invitation_refusal(status: str) -> CanalError:
    if status == "accepted":
        return CanalError(
            "invitation_used",
            "这份邀请已被使用过,每份邀请只能使用一次。",
            "This invitation has already been used; each invitation works once.",
            status=410,
        )
    if status == "revoked":
        return CanalError(
            "invitation_revoked",
            "这份邀请已被组织撤销,请联系邀请人重新邀请。",
            "The organisation has revoked this invitation; ask for a new one.",
            status=410,
        )
    return CanalError(
        "invitation_expired",
        "这份邀请已过期(有效期 7 天),请联系邀请人重新邀请。",
        "This invitation has expired (they last 7 days); ask for a new one.",
        status=410,
    )


@dataclass
class InvitationPreview:
    tenant: TenantSummary
    role: str
    role_zh: str
    role_en: str
    recipient: str  # masked
    status: str
    expires_at: dt.datetime


async def _invitation_by_token(tenant_id: uuid.UUID, token: str) -> dict[str, Any] | None:
    if not token or len(token) > 128:
        return None
    return (
        await Invitation.select()
        .where((Invitation.tenant_id == tenant_id) & (Invitation.token_hash == token_hash(token)))
        .first()
    )


async def _active_tenant(tenant_id: uuid.UUID) -> dict[str, Any]:
    row = (
        await Tenant.select(Tenant.id, Tenant.slug, Tenant.name, Tenant.kind)
        .where((Tenant.id == tenant_id) & (Tenant.status == "active"))
        .first()
    )
    if row is None:
        raise not_found()
    return row


async def preview_invitation(tenant_id: uuid.UUID, token: str) -> InvitationPreview:
    """What the invite page shows; an unknown token or tenant answers 404."""
    now = clock.now()
    async with db.tenant_scope(tenant_id):
        tenant = await _active_tenant(tenant_id)
        row = await _invitation_by_token(tenant_id, token)
    if row is None:
        raise not_found()
    role = role_catalog(tenant["kind"]).get(row["role"])
    view = _invitation_view(row, now)
    return InvitationPreview(
        tenant=TenantSummary(tenant["id"], tenant["slug"], tenant["name"], tenant["kind"]),
        role=row["role"],
        role_zh=role.zh if role else row["role"],
        role_en=role.en if role else row["role"],
        recipient=view.recipient,
        status=view.status,
        expires_at=row["expires_at"],
    )


async def accept_invitation(
    tenant_id: uuid.UUID, token: str, user_id: uuid.UUID, *, ip: str = ""
) -> TenantSummary:
    """Join the tenant with the invitation's role. Single use, and only by the recipient.

    The invitation is marked used by a conditional UPDATE, so two simultaneous acceptances
    of one link cannot both succeed.
    """
    now = clock.now()
    async with db.tenant_scope(tenant_id, user_id):
        tenant = await _active_tenant(tenant_id)
        row = await _invitation_by_token(tenant_id, token)
        if row is None:
            raise not_found()
        status = _status(row, now)
        if status != "pending":
            raise _invitation_refusal(status)
        person = await User.select(User.email, User.phone).where(User.id == user_id).first()
        if person is None or row["recipient"] not in {person["email"], person["phone"]}:
            raise CanalError(
                "invitation_wrong_account",
                "这份邀请发给了另一个手机号或邮箱。请使用收到邀请的手机号或邮箱对应的账号登录后再接受。",
                "This invitation was sent to a different phone number or e-mail address. Sign "
                "in with the account that uses it, then accept.",
                status=403,
            )
        if await Membership.exists().where(
            (Membership.tenant_id == tenant_id) & (Membership.user_id == user_id)
        ):
            raise CanalError(
                "already_member",
                "您已是该组织成员,无需再次接受邀请。",
                "You are already a member of this organisation.",
                status=409,
            )
        role = role_catalog(tenant["kind"]).get(row["role"])
        if role is None:  # the module that defined the role is gone
            raise _invitation_refusal("revoked")
        used = (
            await Invitation.update({Invitation.accepted_at: now, Invitation.accepted_by: user_id})
            .where(
                (Invitation.id == row["id"])
                & Invitation.accepted_at.is_null()
                & Invitation.revoked_at.is_null()
            )
            .returning(Invitation.id)
        )
        if not used:
            raise _invitation_refusal("accepted")
        await _lock_tenant(tenant_id)
        await Membership.insert(Membership(tenant_id=tenant_id, user_id=user_id))
        await access().assign_role(user_id, role.key, tenant_id)
        await record(
            "invitation.accepted",
            actor_id=user_id,
            tenant_id=tenant_id,
            target=str(row["id"]),
            ip=ip,
            data={"role": role.key},
        )
    return TenantSummary(tenant["id"], tenant["slug"], tenant["name"], tenant["kind"])


# --- modules ---------------------------------------------------------------------------------


# A subscription row written by billing carries this prefix in ``note``: its state follows
# Stripe (webhooks, reconciliation), so the catalogue's switch does not touch it.
BILLING_NOTE_PREFIX = "billing:"


def _entitled() -> Any:
    """Active, and — for paid plans — not past the end of the paid (or grace) period."""
    return (ModuleSubscription.status == "active") & (
        ModuleSubscription.active_until.is_null() | (ModuleSubscription.active_until > clock.now())
    )


def _row_entitled(row: dict[str, Any], now: dt.datetime) -> bool:
    until = row.get("active_until")
    return row["status"] == "active" and (until is None or until > now)


# --- which modules a tenant has on: cached per process ------------------------------------
#
# The guard asks on every module request and the page shell on every tenant page, so each
# process keeps every tenant's subscription rows (key, status, paid-until) and decides "on" at
# read time (a paid period runs out without any write). A change forgets the tenant after
# commit here and, over ``canal:invalidate``, in every other process; the TTL only bounds the
# damage of a lost notice. A load that started before a change finished must not store what it
# read: the generation counter tells (docs/decisions/0003).

_MODULES_TTL = 60.0
_MODULES_SQL = (
    "SELECT module_key, status, active_until FROM module_subscriptions WHERE tenant_id = {}"
)
_modules_cache: dict[uuid.UUID, tuple[float, tuple[tuple[str, str, dt.datetime | None], ...]]] = {}
_modules_generation = 0


def forget_modules(tenant_id: uuid.UUID | None = None, *, broadcast_change: bool = True) -> None:
    """Drop cached subscriptions (one tenant's, or all) here and in the other processes."""
    global _modules_generation
    _modules_generation += 1
    if tenant_id is None:
        _modules_cache.clear()
    else:
        _modules_cache.pop(tenant_id, None)
    if broadcast_change:
        from canal.platform.invalidation import broadcast

        broadcast("modules", str(tenant_id) if tenant_id else "")


def _forget_after_commit(tenant_id: uuid.UUID) -> None:
    db.on_commit(lambda: forget_modules(tenant_id))


def _on_modules_notice(argument: str) -> None:
    forget_modules(uuid.UUID(argument) if argument else None, broadcast_change=False)


register_invalidation("modules", _on_modules_notice)


async def _subscriptions(tenant_id: uuid.UUID) -> tuple[tuple[str, str, dt.datetime | None], ...]:
    now = time.monotonic()
    cached = _modules_cache.get(tenant_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    generation = _modules_generation
    async with db.tenant_scope(tenant_id):
        rows = await ModuleSubscription.raw(_MODULES_SQL, tenant_id)
    found = tuple((r["module_key"], r["status"], r["active_until"]) for r in rows)
    if generation == _modules_generation:
        if len(_modules_cache) > 50_000:
            _modules_cache.clear()
        _modules_cache[tenant_id] = (now + _MODULES_TTL, found)
    return found


async def module_enabled(tenant_id: uuid.UUID, module_key: str) -> bool:
    now = clock.now()
    return any(
        key == module_key and (status == "active" and (until is None or until > now))
        for key, status, until in await _subscriptions(tenant_id)
    )


async def enabled_modules(tenant_id: uuid.UUID) -> set[str]:
    now = clock.now()
    return {
        key
        for key, status, until in await _subscriptions(tenant_id)
        if status == "active" and (until is None or until > now)
    }


async def apply_billed_entitlement(
    tenant_id: uuid.UUID,
    module_key: str,
    *,
    plan: str,
    active: bool,
    active_until: dt.datetime | None,
    note: str,
) -> bool:
    """Set a module's entitlement from billing (Stripe's subscription state, a no-charge grant,
    a prepaid term); True if the row changed. Called by ``canal.platform.billing`` only, inside
    its own transaction; the audit event is billing's (``billing.subscribed`` …)."""
    if get_module(module_key) is None:
        raise not_found()
    status = "active" if active else "cancelled"
    note = note if note.startswith(BILLING_NOTE_PREFIX) else BILLING_NOTE_PREFIX + note
    async with db.tenant_scope(tenant_id):
        row = (
            await ModuleSubscription.select()
            .where(
                (ModuleSubscription.tenant_id == tenant_id)
                & (ModuleSubscription.module_key == module_key)
            )
            .first()
        )
        _forget_after_commit(tenant_id)
        if row is None:
            # Inactive too: the row records that billing ended it, whatever order Stripe's
            # events arrived in.
            await ModuleSubscription.insert(
                ModuleSubscription(
                    tenant_id=tenant_id,
                    module_key=module_key,
                    plan=plan,
                    status=status,
                    active_until=active_until,
                    note=note,
                )
            )
            return True
        if not active and not row["note"].startswith(BILLING_NOTE_PREFIX):
            # A free plan switched on by hand is not billing's to cancel.
            return False
        values = {
            "plan": plan if active else row["plan"],
            "status": status,
            "active_until": active_until if active else row["active_until"],
            "note": note,
        }
        if all(row[k] == v for k, v in values.items()):
            return False
        await ModuleSubscription.update(
            {
                ModuleSubscription.plan: values["plan"],
                ModuleSubscription.status: values["status"],
                ModuleSubscription.active_until: values["active_until"],
                ModuleSubscription.note: values["note"],
            }
        ).where(ModuleSubscription.id == row["id"])
    return True


@dataclass
class ModuleEntry:
    spec: ModuleSpec
    allowed: bool  # this tenant's kind may use it
    enabled: bool
    plan: str | None
    plans: list[str] = field(default_factory=list)
    # Paid plans from the billing catalogue (canal.platform.billing.catalogue), and whether the
    # current subscription is billing's (then the portal, not the switch, changes it).
    paid_plans: list[Any] = field(default_factory=list)
    billed: bool = False
    active_until: dt.datetime | None = None


async def module_catalogue(ctx: TenantContext) -> list[ModuleEntry]:
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        rows = await ModuleSubscription.select(
            ModuleSubscription.module_key,
            ModuleSubscription.plan,
            ModuleSubscription.status,
            ModuleSubscription.active_until,
            ModuleSubscription.note,
        ).where(ModuleSubscription.tenant_id == ctx.tenant_id)
    from canal.platform.billing.catalogue import paid_plans

    subs = {r["module_key"]: r for r in rows}
    now = clock.now()
    entries = []
    for key, spec in registry().items():
        sub = subs.get(key)
        enabled = bool(sub and _row_entitled(sub, now))
        entries.append(
            ModuleEntry(
                spec=spec,
                allowed=ctx.tenant.kind in spec.tenant_kinds,
                enabled=enabled,
                plan=sub["plan"] if enabled and sub else None,
                plans=[p.key for p in spec.plans],
                paid_plans=list(paid_plans(key)),
                billed=bool(enabled and sub and sub["note"].startswith(BILLING_NOTE_PREFIX)),
                active_until=sub["active_until"] if enabled and sub else None,
            )
        )
    return entries


def module_or_404(module_key: str) -> ModuleSpec:
    spec = get_module(module_key)
    if spec is None:
        raise not_found()
    return spec


async def set_module(
    ctx: TenantContext, module_key: str, *, enabled: bool, plan: str = "free", ip: str = ""
) -> bool:
    """Switch a module on (subscription active, plan) or off (cancelled); True if changed."""
    spec = module_or_404(module_key)
    if enabled and ctx.tenant.kind not in spec.tenant_kinds:
        raise CanalError(
            "module_not_for_kind",
            f"「{spec.name_zh}」模块不向{kind_name(ctx.tenant.kind, 'zh_CN')}类组织开放。",
            f"The {spec.name_en} module is not offered to organisations of kind "
            f"{kind_name(ctx.tenant.kind, 'en').lower()}.",
            status=422,
        )
    if enabled and plan not in {p.key for p in spec.plans}:
        raise invalid(
            [
                FieldError(
                    "plan", "plan_unknown", "该模块没有这个套餐。", "This module has no such plan."
                )
            ]
        )
    async with db.tenant_scope(ctx.tenant_id, ctx.user_id):
        row = (
            await ModuleSubscription.select()
            .where(
                (ModuleSubscription.tenant_id == ctx.tenant_id)
                & (ModuleSubscription.module_key == module_key)
            )
            .first()
        )
        if (
            row is not None
            and row["note"].startswith(BILLING_NOTE_PREFIX)
            and _row_entitled(row, clock.now())
        ):
            raise CanalError(
                "billing_managed",
                f"「{spec.name_zh}」是付费订阅,请在“账单与订阅”中通过账户门户变更或取消。",
                f"{spec.name_en} is a paid subscription; change or cancel it from Billing "
                "through the customer portal.",
                status=409,
            )
        _forget_after_commit(ctx.tenant_id)
        if enabled:
            if row is None:
                await ModuleSubscription.insert(
                    ModuleSubscription(
                        tenant_id=ctx.tenant_id, module_key=module_key, plan=plan, status="active"
                    )
                )
            elif row["status"] == "active" and row["plan"] == plan:
                return False
            else:
                # A lapsed paid subscription switched back to a free plan: no end date, no
                # billing note.
                await ModuleSubscription.update(
                    {
                        ModuleSubscription.status: "active",
                        ModuleSubscription.plan: plan,
                        ModuleSubscription.active_until: None,
                        ModuleSubscription.note: "",
                    }
                ).where(ModuleSubscription.id == row["id"])
        else:
            if row is None or row["status"] != "active":
                return False
            await ModuleSubscription.update({ModuleSubscription.status: "cancelled"}).where(
                ModuleSubscription.id == row["id"]
            )
        await record(
            "module.enabled" if enabled else "module.disabled",
            actor_id=ctx.user_id,
            tenant_id=ctx.tenant_id,
            target=module_key,
            ip=ip,
            data={"plan": plan} if enabled else {},
        )
    return True


# --- operator console --------------------------------------------------------------------------


@dataclass
class OperatorTenantRow:
    id: uuid.UUID
    slug: str
    name: str
    kind: str
    credit_code: str | None
    status: str
    created_at: dt.datetime
    member_count: int
    modules_on: int


OPERATOR_LIST_LIMIT = 500


async def operator_list_tenants(actor_id: uuid.UUID, query: str = "") -> list[OperatorTenantRow]:
    """Every organisation with its member and module counts (call after a platform check)."""
    needle = f"%{query.strip()[:100]}%" if query.strip() else "%"
    async with db.platform_scope(actor_id):
        rows = await Tenant.raw(
            "SELECT t.id, t.slug, t.name, t.kind, t.credit_code, t.status, t.created_at, "
            "(SELECT count(*) FROM memberships m WHERE m.tenant_id = t.id) AS member_count, "
            "(SELECT count(*) FROM module_subscriptions s WHERE s.tenant_id = t.id "
            " AND s.status = 'active') AS modules_on "
            "FROM tenants t WHERE t.name ILIKE {} OR t.slug ILIKE {} "
            f"ORDER BY t.created_at DESC LIMIT {OPERATOR_LIST_LIMIT}",
            needle,
            needle,
        )
    return [OperatorTenantRow(**r) for r in rows]


async def set_tenant_status(
    actor_id: uuid.UUID, tenant_id: uuid.UUID, *, suspended: bool, ip: str = ""
) -> bool:
    """Suspend (its routes answer 404) or reactivate an organisation; True if changed."""
    from canal.platform.http.tenancy import forget_tenant

    async with db.platform_scope(actor_id):
        row = (
            await Tenant.select(Tenant.slug, Tenant.kind, Tenant.status)
            .where(Tenant.id == tenant_id)
            .first()
        )
        if row is None:
            raise not_found()
        if row["kind"] == "operator":
            raise CanalError(
                "operator_tenant",
                "运营方自身的组织不能被停用。",
                "The operator's own organisation cannot be suspended.",
                status=409,
            )
        wanted = "suspended" if suspended else "active"
        if row["status"] == wanted:
            return False
        await Tenant.update({Tenant.status: wanted}).where(Tenant.id == tenant_id)
        await record(
            "tenant.suspended" if suspended else "tenant.reactivated",
            actor_id=actor_id,
            tenant_id=tenant_id,
            target=row["slug"],
            ip=ip,
            data={},
        )
        slug = row["slug"]
        db.on_commit(lambda: forget_tenant(slug))
    return True

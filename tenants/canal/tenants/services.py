"""Organisations: create, list one's own, and module subscriptions.

Every function takes plain values (or a TenantContext) — callable from a controller, a job,
the CLI or a test alike.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from asyncpg.exceptions import UniqueViolationError

from canal.platform import db
from canal.platform.access.services import access
from canal.platform.audit.services import record
from canal.platform.http.errors import FieldError, invalid
from canal.tenants import validators
from canal.tenants.tables import TENANT_KINDS, Membership, ModuleSubscription, Tenant

NAME_MAX = 100


@dataclass(frozen=True)
class TenantSummary:
    id: uuid.UUID
    slug: str
    name: str
    kind: str


async def create_tenant(*, creator_id: uuid.UUID, name: str, slug: str, kind: str,
                        credit_code: str | None = None, ip: str = "") -> TenantSummary:
    """Create an organisation with its creator as owner, all in one transaction."""
    errors: list[FieldError] = []
    clean_name = name.strip()
    if not clean_name or len(clean_name) > NAME_MAX:
        errors.append(FieldError("name", "name_length", f"组织名称须为 1–{NAME_MAX} 个字符。",
                                 f"The organisation name must be 1–{NAME_MAX} characters."))
    if kind not in TENANT_KINDS or kind == "operator":
        errors.append(FieldError("kind", "kind_invalid", "请选择组织类型。",
                                 "Choose the kind of organisation."))
    clean_slug = ""
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
        errors.append(FieldError("credit_code", "credit_code_required",
                                 "企业与园区须填写统一社会信用代码。",
                                 "Enterprises and parks must give their unified social credit code."))
    if errors:
        raise invalid(errors)
    return await _insert_tenant(creator_id, clean_name, clean_slug, kind, code, ip)


async def _insert_tenant(creator_id: uuid.UUID, name: str, slug: str, kind: str,
                         code: str | None, ip: str) -> TenantSummary:
    tenant = Tenant(name=name, slug=slug, kind=kind, credit_code=code, created_by=creator_id)
    try:
        async with db.transaction():
            await tenant.save()
            async with db.tenant_scope(tenant.id, creator_id):
                await Membership.insert(Membership(tenant_id=tenant.id, user_id=creator_id))
                await access().install_tenant_roles(tenant.id, kind)
                await access().assign_role(creator_id, "owner", tenant.id)
                await record("tenant.created", actor_id=creator_id, tenant_id=tenant.id,
                             target=slug, ip=ip, data={"name": name, "kind": kind})
    except UniqueViolationError as exc:
        field = "credit_code" if "credit_code" in str(exc) else "slug"
        raise invalid([FieldError(
            field, f"{field}_taken",
            "该统一社会信用代码已被其他组织使用。" if field == "credit_code" else "该网址标识已被占用,请换一个。",
            "Another organisation already uses this credit code." if field == "credit_code"
            else "That web address name is taken; choose another.",
        )]) from None
    return TenantSummary(tenant.id, slug, name, kind)


async def create_operator_tenant(*, creator_id: uuid.UUID, name: str, slug: str,
                                 credit_code: str | None) -> TenantSummary:
    """The operating company's own tenant (set-up and demo only; never from a form)."""
    code = validators.parse_credit_code(credit_code) if credit_code else None
    return await _insert_tenant(creator_id, name, slug, "operator", code, "")


async def my_tenants(user_id: uuid.UUID) -> list[TenantSummary]:
    async with db.user_scope(user_id):
        rows = await Membership.select(
            Membership.tenant_id.id, Membership.tenant_id.slug, Membership.tenant_id.name,
            Membership.tenant_id.kind,
        ).where(Membership.user_id == user_id).order_by(Membership.tenant_id.name)
    return [TenantSummary(r["tenant_id.id"], r["tenant_id.slug"], r["tenant_id.name"],
                          r["tenant_id.kind"]) for r in rows]


async def module_enabled(tenant_id: uuid.UUID, module_key: str) -> bool:
    async with db.tenant_scope(tenant_id):
        return await ModuleSubscription.exists().where(
            (ModuleSubscription.tenant_id == tenant_id)
            & (ModuleSubscription.module_key == module_key)
            & (ModuleSubscription.status == "active")
        )


async def enabled_modules(tenant_id: uuid.UUID) -> set[str]:
    async with db.tenant_scope(tenant_id):
        rows = await ModuleSubscription.select(ModuleSubscription.module_key).where(
            (ModuleSubscription.tenant_id == tenant_id) & (ModuleSubscription.status == "active")
        )
    return {r["module_key"] for r in rows}



"""Helpers for the organisation tests: people with phones, invitations, audit and operator."""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

import pytest

from canal.platform import db
from tests.factories import Person, make_tenant, make_user, unique


def phone_number() -> str:
    return "139" + "".join(random.choice("0123456789") for _ in range(8))


async def make_phone_user(name: str = "手机用户") -> Person:
    return await make_user(name, login=phone_number())


async def audit_actions(tenant_id: uuid.UUID) -> list[str]:
    """The audit actions recorded for one tenant, oldest first."""
    from canal.platform.audit.tables import AuditEvent

    async with db.platform_scope():
        rows = (
            await AuditEvent.select(AuditEvent.action)
            .where(AuditEvent.tenant_id == tenant_id)
            .order_by(AuditEvent.seq)
        )
    return [r["action"] for r in rows]


async def audit_rows(tenant_id: uuid.UUID, action: str) -> list[dict[str, Any]]:
    from canal.platform.audit.tables import AuditEvent

    async with db.platform_scope():
        return await AuditEvent.select().where(
            (AuditEvent.tenant_id == tenant_id) & (AuditEvent.action == action)
        )


def token_from(link: str) -> tuple[str, str]:
    """(tenant id, token) from an invitation link."""
    match = re.search(r"/invite/([0-9a-f-]{36})/([A-Za-z0-9_-]+)", link)
    assert match, f"no invitation link in {link!r}"
    return match.group(1), match.group(2)


async def count_members(tenant_id: uuid.UUID) -> int:
    from canal.tenants.tables import Membership

    async with db.tenant_scope(tenant_id):
        return await Membership.count().where(Membership.tenant_id == tenant_id)


@pytest.fixture(scope="session")
async def operator_staff(app) -> dict[str, Any]:
    """The operator tenant (set-up only) with an owner and a read-only platform auditor."""
    from canal.platform.access.services import access
    from canal.platform.http.tenancy import forget_tenant
    from canal.tenants.services import create_operator_tenant
    from canal.tenants.tables import Membership, Tenant
    from tests.factories import credit_code

    existing = await Tenant.select(Tenant.id, Tenant.slug).where(Tenant.kind == "operator").first()
    admin = await make_user("运营管理员")
    auditor = await make_user("平台审计员")
    if existing is None:
        operator = await create_operator_tenant(
            creator_id=admin.user_id,
            name="数字东昌测试运营公司",
            slug=unique("op-"),
            credit_code=credit_code(),
        )
        operator_id = operator.id
    else:
        operator_id = existing["id"]
        async with db.tenant_scope(operator_id):
            await Membership.insert(Membership(tenant_id=operator_id, user_id=admin.user_id))
            await access().assign_role(admin.user_id, "owner", operator_id)
    async with db.tenant_scope(operator_id):
        await Membership.insert(Membership(tenant_id=operator_id, user_id=auditor.user_id))
        await access().assign_role(auditor.user_id, "platform_auditor", operator_id)
    forget_tenant()
    return {"admin": admin, "auditor": auditor, "operator_id": operator_id}


@pytest.fixture
async def owner_and_tenant() -> tuple[Person, Any]:
    owner = await make_user("王所有者")
    tenant = await make_tenant(owner, name=f"聊城{unique('')}科技有限公司")
    return owner, tenant

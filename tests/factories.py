"""Building test data through the real services (no shortcuts past validation)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from httpx import AsyncClient

PASSWORD = "correct-horse-battery"


@dataclass
class Person:
    user_id: uuid.UUID
    login: str
    password: str


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def make_user(name: str = "测试用户", login: str | None = None) -> Person:
    from canal.platform.identity.services import create_user

    login = login or f"{unique('u')}@example.cn"
    user_id = await create_user(login, PASSWORD, name)
    return Person(user_id, login, PASSWORD)


def credit_code() -> str:
    """A random, valid GB 32100 code: a Shandong county's region (GB/T 2260) and an
    organisation code with its GB 11714 check character."""
    import random

    from canal.platform.regions import county_codes
    from canal.tenants.validators import (
        CREDIT_CODE_CHARSET,
        credit_code_check_char,
        org_code_check_char,
    )

    org = "".join(random.choice(CREDIT_CODE_CHARSET) for _ in range(8))
    body = "91" + random.choice(county_codes("37")) + org + org_code_check_char(org)
    return body + credit_code_check_char(body)


async def make_tenant(owner: Person, kind: str = "enterprise", name: str = "测试企业有限公司"):
    from canal.tenants.services import create_tenant

    return await create_tenant(
        creator_id=owner.user_id,
        name=name,
        slug=unique("org-"),
        kind=kind,
        credit_code=credit_code(),
    )


async def sign_in(client: AsyncClient, person: Person, *, mfa: bool = True) -> str:
    """Give ``client`` a real server-side session for ``person``; returns its CSRF token."""
    from canal.platform.identity.services import start_session
    from canal.platform.settings import get_settings

    session = await start_session(get_settings(), person.user_id, mfa_passed=mfa)
    client.cookies.set("__Host-canal_session", session.token, domain="testserver.local")
    client.headers["X-CSRF-Token"] = session.csrf_token
    return session.csrf_token


def csrf_from(html: str) -> str:
    match = re.search(r'name="_csrf" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


async def make_operator_staff() -> dict:
    """The operator tenant (made if missing: one per database) with a fresh owner ("admin",
    who may manage) and a fresh platform auditor (read only)."""
    from canal.platform import db
    from canal.platform.access.services import access
    from canal.platform.http.tenancy import forget_tenant
    from canal.tenants.services import create_operator_tenant
    from canal.tenants.tables import Membership, Tenant

    existing = await Tenant.select(Tenant.id).where(Tenant.kind == "operator").first()
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

"""Helpers for the organisation tests: people with phones, invitation links, audit rows."""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

from canal.platform import db
from tests.factories import Person, make_user


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

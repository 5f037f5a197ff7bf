"""Storage test helpers: an organisation with its owner, its object rows and S3 keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from canal.platform.http.context import TenantContext, TenantRef
from tests.factories import Person, make_tenant, make_user


@dataclass
class Org:
    owner: Person
    slug: str
    ctx: TenantContext

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.ctx.tenant_id


async def make_org(name: str = "存储测试企业") -> Org:
    owner = await make_user("存储管理员")
    summary = await make_tenant(owner, name=name)
    ref = TenantRef(summary.id, summary.slug, summary.name, summary.kind, "active")
    return Org(owner, summary.slug, TenantContext(ref, owner.user_id, ("owner",)))


async def rows_for(tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    from canal.platform import db
    from canal.platform.storage.tables import StoredObject

    async with db.platform_scope():
        return await StoredObject.select().where(StoredObject.tenant_id == tenant_id)


async def keys_for(store, tenant_id: uuid.UUID) -> list[str]:
    """Every object under the tenant's prefix, in every purpose's bucket."""
    from canal.platform.storage.services import PURPOSES

    found: list[str] = []
    for key in PURPOSES:
        found += await store.list_keys(key, f"tenants/{tenant_id}/")
    return found

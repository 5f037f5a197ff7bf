"""Data bank test helpers: an organisation with its owner, a (verified) resident."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from canal.platform.http.context import TenantContext, TenantRef
from tests.factories import Person, make_tenant, make_user
from tests.identity.helpers import id_number


@dataclass
class Org:
    owner: Person
    slug: str
    ctx: TenantContext

    @property
    def base(self) -> str:
        return f"/t/{self.slug}/bank"


async def make_org() -> Org:
    owner = await make_user("银行管理员")
    tenant = await make_tenant(owner)
    ref = TenantRef(tenant.id, tenant.slug, tenant.name, tenant.kind, "active")
    return Org(owner, tenant.slug, TenantContext(ref, owner.user_id, ("owner",)))


async def make_resident(*, verified: bool = True) -> Person:
    from canal.platform.identity import realname
    from canal.platform.settings import get_settings

    person = await make_user("孙秀英")
    if verified:
        await realname.grant_consent(person.user_id)
        await realname.verify(
            get_settings(), person.user_id, "孙秀英", id_number(dt.date(1968, 5, 4), female=True)
        )
    return person

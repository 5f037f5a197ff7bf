"""The exchange's own sub-menu (on every exchange page) shows only what the viewer may use:
a data analyst (read, no publishing) has no provider centre, an ordinary organisation no
review queue, the operator has it."""

from __future__ import annotations

import re

from canal.platform import db
from canal.platform.access.services import access
from canal.tenants.tables import Membership
from tests.exchange.helpers import make_org
from tests.factories import make_user, sign_in


async def _subnav(client, web: str, path: str = "/grants") -> list[str]:
    page = await client.get(web + path)
    assert page.status_code == 200, page.text
    (nav,) = re.findall(r'<nav aria-label="[^"]*" class="subnav">(.*?)</nav>', page.text, re.S)
    return [href.removeprefix(web) for href in re.findall(r'<a href="([^"]+)"', nav)]


async def test_subnav_follows_permissions_and_kind(client, op):
    org = await make_org("菜单测试")
    await sign_in(client, org.owner)
    assert await _subnav(client, org.web) == ["/catalogue", "/provider", "/grants", "/usage"]
    page = await client.get(org.web + "/grants")
    assert f'<a href="{org.web}/grants" aria-current="page">' in page.text
    assert "申请与授权" in page.text  # the module's Chinese labels

    analyst = await make_user("数据分析员")
    async with db.tenant_scope(org.tenant.id, org.owner.user_id):
        await Membership.insert(Membership(tenant_id=org.tenant.id, user_id=analyst.user_id))
        await access().assign_role(analyst.user_id, "member", org.tenant.id)
        await access().assign_role(analyst.user_id, "data_analyst", org.tenant.id)
    client.cookies.clear()
    await sign_in(client, analyst)
    assert await _subnav(client, org.web) == ["/catalogue", "/grants", "/usage"]

    client.cookies.clear()
    await sign_in(client, op.owner)
    assert "/review" in await _subnav(client, op.web, "/review")

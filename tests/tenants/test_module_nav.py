"""A module's menu shows each organisation kind and each person only the entries they can use
(``NavEntry.permission`` / ``NavEntry.kinds``), on the module's page and in its API twin."""

from __future__ import annotations

import re

from canal.platform import db
from canal.platform.access.services import access
from canal.platform.modules import get_module
from canal.tenants.tables import Membership, Tenant
from tests.factories import make_operator_staff, make_tenant, make_user, sign_in


async def _switch_on(client, slug: str, key: str) -> None:
    answer = await client.post(f"/api/v1/t/{slug}/modules/{key}", json={"enabled": True})
    assert answer.status_code == 200, answer.text


async def _menu(client, slug: str, key: str) -> tuple[set[str], set[str]]:
    """The module's own entries (paths under the module) in the menu API and in the page
    shell's menu on the module's page."""
    base = f"/t/{slug}/m/{key}"
    api = await client.get(f"/api/v1/t/{slug}/nav")
    assert api.status_code == 200, api.text
    (module,) = [e for e in api.json() if e["module"] == key]
    assert module["href"] == base and module["label_zh"] == get_module(key).name_zh
    from_api = {c["href"].removeprefix(base) for c in module["children"]}
    page = await client.get(base)
    assert page.status_code == 200, page.text
    shown = re.findall(r'<li class="site-nav__sub"><a href="([^"]+)"', page.text)
    # The module's home is its own entry in the menu; its children are the rest.
    return from_api - {""}, {href.removeprefix(base) for href in shown}


ENTERPRISE_POLICY = {"/matches", "/portrait", "/applications"}
AUTHORITY_POLICY = {"/policies", "/queue", "/stats"}


async def test_policy_menu_by_organisation_kind(client):
    owner = await make_user()
    await sign_in(client, owner)
    enterprise = await make_tenant(owner, kind="enterprise")
    authority = await make_tenant(owner, kind="government", name="东昌府区科技局")
    for tenant in (enterprise, authority):
        await _switch_on(client, tenant.slug, "policy")
    for menu in await _menu(client, enterprise.slug, "policy"):
        assert menu == ENTERPRISE_POLICY  # no policy writing or review queue
    for menu in await _menu(client, authority.slug, "policy"):
        assert menu == AUTHORITY_POLICY  # no "my matches" for an authority


async def test_service_menu_by_permission(client):
    owner, buyer = await make_user(), await make_user()
    tenant = await make_tenant(owner)
    await sign_in(client, owner)
    await _switch_on(client, tenant.slug, "services")
    everything = {"/quotes", "/orders", "/vouchers", "/provider"}
    for menu in await _menu(client, tenant.slug, "services"):
        assert menu == everything
    async with db.tenant_scope(tenant.id, owner.user_id):
        await Membership.insert(Membership(tenant_id=tenant.id, user_id=buyer.user_id))
        await access().assign_role(buyer.user_id, "member", tenant.id)
        await access().assign_role(buyer.user_id, "service_buyer", tenant.id)
    client.cookies.clear()
    await sign_in(client, buyer)
    api, page = await _menu(client, tenant.slug, "services")
    assert api == page == everything - {"/provider"}  # a buyer is no provider


async def test_exchange_review_only_for_the_operator(client):
    owner = await make_user()
    tenant = await make_tenant(owner)
    await sign_in(client, owner)
    await _switch_on(client, tenant.slug, "exchange")
    for menu in await _menu(client, tenant.slug, "exchange"):
        assert "/review" not in menu and {"/catalogue", "/provider", "/grants"} <= menu
    staff = await make_operator_staff()
    row = await Tenant.select(Tenant.slug).where(Tenant.id == staff["operator_id"]).first()
    client.cookies.clear()
    await sign_in(client, staff["admin"])
    await _switch_on(client, row["slug"], "exchange")
    for menu in await _menu(client, row["slug"], "exchange"):
        assert "/review" in menu


def test_an_entry_without_a_filter_shows_to_everyone():
    from canal.platform.modules import NavEntry

    entry = NavEntry("/x", "甲", "X")
    assert entry.shown_to("community", lambda *_: False)
    limited = NavEntry("/y", "乙", "Y", ("r", "a"), ("enterprise",))
    assert limited.shown_to("enterprise", lambda *p: p == ("r", "a"))
    assert not limited.shown_to("park", lambda *_: True)
    assert not limited.shown_to("enterprise", lambda *_: False)

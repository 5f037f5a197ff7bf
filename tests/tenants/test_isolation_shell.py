"""Outsiders find nothing, the shell knows my organisations, every string has its Chinese."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from litestar import Request

from canal.platform.http.context import Principal, TenantContext, TenantRef
from canal.tenants.shell import populate_shell
from tests.factories import make_tenant, make_user, sign_in

TENANT_PAGES = ["", "/members", "/invitations", "/roles", "/modules", "/m/policy"]


async def test_non_member_gets_404_on_every_tenant_page(client, owner_and_tenant):
    owner, tenant = owner_and_tenant
    await sign_in(client, owner)
    await client.post(f"/api/v1/t/{tenant.slug}/modules/policy", json={"enabled": True})
    for suffix in TENANT_PAGES:  # positive control: the owner sees each one
        assert (await client.get(f"/t/{tenant.slug}{suffix}")).status_code == 200, suffix
    outsider = await make_user()
    await make_tenant(outsider)
    await sign_in(client, outsider)
    for prefix in ("", "/api/v1"):
        for suffix in TENANT_PAGES:
            response = await client.get(f"{prefix}/t/{tenant.slug}{suffix}")
            assert response.status_code == 404, (prefix, suffix, response.status_code)
            assert tenant.name not in response.text
        for action in (
            f"/members/{owner.user_id}/remove",
            "/leave",
            "/modules/policy",
            f"/roles/{outsider.user_id}/grant",
        ):
            response = await client.post(
                f"{prefix}/t/{tenant.slug}{action}", json={"role": "owner", "enabled": False}
            )
            assert response.status_code == 404, (prefix, action)
    assert (await client.get("/t/no-such-org-here")).status_code == 404
    assert (await client.get("/t/no-such-org-here/members")).status_code == 404


def _request(path: str, principal: Principal | None, ctx: TenantContext | None) -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"lang=en",
        "headers": [(b"accept", b"text/html")],
        "scheme": "https",
        "server": ("testserver.local", 443),
        "root_path": "",
        "user": principal,
        "state": {"tenant_ctx": ctx} if ctx else {},
    }
    return Request(scope)  # type: ignore[arg-type]


async def test_populate_shell_fills_switcher_and_nav(app, owner_and_tenant):
    owner, tenant = owner_and_tenant
    second = await make_tenant(owner, name="第二家")
    from canal.tenants.services import set_module

    ref = TenantRef(
        id=tenant.id, slug=tenant.slug, name=tenant.name, kind=tenant.kind, status="active"
    )
    ctx = TenantContext(tenant=ref, user_id=owner.user_id, roles=("owner",))
    await set_module(ctx, "policy", enabled=True)
    principal = Principal(user_id=owner.user_id, display_name="x", via="session")

    request = _request(f"/t/{tenant.slug}/members", principal, ctx)
    await populate_shell(request)
    state = request.scope["state"]
    assert {t.slug for t in state["my_tenants"]} == {tenant.slug, second.slug}
    nav = state["nav"]
    assert [n["href"] for n in nav] == [
        f"/t/{tenant.slug}",
        f"/t/{tenant.slug}/members",
        f"/t/{tenant.slug}/roles",
        f"/t/{tenant.slug}/modules",
        f"/t/{tenant.slug}/storage",
        f"/t/{tenant.slug}/bank",
        f"/t/{tenant.slug}/billing",
        f"/t/{tenant.slug}/audit",
        f"/t/{tenant.slug}/m/policy",
    ]
    assert [n["label"] for n in nav][:2] == ["Overview", "Members"]
    assert [n["active"] for n in nav] == [False, True] + [False] * 7

    plain = _request("/", principal, None)
    await populate_shell(plain)
    assert len(plain.scope["state"]["my_tenants"]) == 2
    # Outside an organisation: only the person's own menu (modules' ``person_nav``).
    assert {n["href"] for n in plain.scope["state"]["nav"]} == {"/exchange/catalogue"}
    anonymous = _request("/", None, None)
    await populate_shell(anonymous)
    assert "my_tenants" not in anonymous.scope["state"]


TEMPLATES = Path(__file__).parents[2] / "tenants/canal/tenants/templates/tenants"
STRING = re.compile(r"""_\(\s*"((?:[^"\\]|\\.)*)"|_\(\s*'((?:[^'\\]|\\.)*)'""")


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_every_template_string_has_chinese(template):
    from canal.tenants.shell import _TENANT_PAGES
    from canal.web.i18n import catalog

    zh = catalog("zh_CN")
    strings = {
        m.group(1) or m.group(2) for m in STRING.finditer((TEMPLATES / template).read_text())
    }
    strings |= {label for _, label, _ in _TENANT_PAGES}
    missing = sorted(s for s in strings if not zh.get(s))
    assert strings and missing == []


async def test_api_twins_are_in_the_openapi_document(client):
    schema = await client.get("/api/schema/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/api/v1/orgs",
        "/api/v1/t/{tenant_slug}",
        "/api/v1/t/{tenant_slug}/members",
        "/api/v1/t/{tenant_slug}/invitations",
        "/api/v1/t/{tenant_slug}/roles",
        "/api/v1/t/{tenant_slug}/modules",
        "/api/v1/t/{tenant_slug}/m/{module_key}",
        "/api/v1/invite/{tenant_id}/{token}",
        "/api/v1/operator/tenants",
    ):
        assert path in paths, path
    assert "post" in paths["/api/v1/orgs"] and "get" in paths["/api/v1/orgs"]


async def test_owner_nav_leads_to_files_and_billing(client):
    from tests.factories import make_tenant, make_user, sign_in

    owner = await make_user()
    tenant = await make_tenant(owner)
    await sign_in(client, owner)
    page = (await client.get(f"/t/{tenant.slug}")).text
    nav = page.split("<main", 1)[0]
    assert f'href="/t/{tenant.slug}/storage"' in nav and f'href="/t/{tenant.slug}/billing"' in nav
    assert "文件存储" in nav and "文件数" not in nav  # the menu names the page, not a count

"""Regression tests for the security review of 2026-11-24 (guard and shell findings)."""

from __future__ import annotations

from canal.platform.identity.secrets import new_api_token, token_hash
from canal.platform.identity.tables import ApiToken, User
from tests.factories import make_tenant, make_user, sign_in


async def _token(person, tenant_id=None) -> str:
    token, prefix = new_api_token()
    await ApiToken.insert(
        ApiToken(
            user=person.user_id,
            tenant=tenant_id,
            name="review",
            prefix=prefix,
            token_hash=token_hash(token),
        )
    )
    return token


async def test_operator_token_needs_totp_on_the_account(client, operator):
    token = await _token(operator)
    headers = {"Authorization": f"Bearer {token}"}
    await User.update({User.totp_enabled: False}).where(User.id == operator.user_id)
    from canal.platform.http.auth import forget

    forget()
    refused = await client.get("/api/v1/operator/tenants", headers=headers)
    assert refused.status_code == 403 and refused.json()["code"] == "mfa_required"
    await User.update({User.totp_enabled: True}).where(User.id == operator.user_id)
    forget()
    allowed = await client.get("/api/v1/operator/tenants", headers=headers)
    assert allowed.status_code == 200


async def test_a_tenant_bound_token_works_only_in_its_tenant(client):
    owner = await make_user()
    tenant = await make_tenant(owner)
    token = await _token(owner, tenant.id)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get(f"/api/v1/t/{tenant.slug}", headers=headers)).status_code == 200
    for path in (
        "/api/v1/account",
        "/api/v1/orgs",
        "/api/v1/account/sessions",
        "/api/v1/operator/audit",
    ):
        assert (await client.get(path, headers=headers)).status_code == 404, path
    revoke = await client.post("/api/v1/account/sessions/revoke-others", headers=headers)
    assert revoke.status_code == 404


async def test_half_signed_in_session_sees_no_organisations(client):
    owner = await make_user("半登录")
    tenant = await make_tenant(owner, name="半登录测试组织有限公司")
    await User.update({User.totp_enabled: True}).where(User.id == owner.user_id)
    await sign_in(client, owner, mfa=False)
    for path in ("/", "/login/totp"):
        page = await client.get(path)
        assert "半登录测试组织有限公司" not in page.text, path
        assert tenant.slug not in page.text, path


async def test_language_links_never_leave_the_site(client):
    page = await client.get("//evil.example/x")
    assert 'href="//' not in page.text

"""API tokens: created once, stored hashed, authenticate /api/v1, revocable, tenant-bound."""

from __future__ import annotations

import datetime as dt
import re

from httpx import ASGITransport, AsyncClient

from canal.platform import clock
from canal.platform.http.auth import forget
from canal.platform.identity.secrets import token_hash
from canal.platform.identity.tables import ApiToken
from tests.factories import make_tenant, make_user, sign_in, unique
from tests.identity.helpers import audit_actions, page_csrf


def bearer_client(app, token: str) -> AsyncClient:
    return AsyncClient(
        transport=ASGITransport(app=app),
        base_url="https://testserver.local",
        headers={"Authorization": f"Bearer {token}"},
    )


async def _create(client, csrf: str, **body) -> dict:
    answer = await client.post(
        "/api/v1/account/tokens", json={"name": "导出", **body}, headers={"X-CSRF-Token": csrf}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


async def test_create_use_list_revoke(client, app):
    person = await make_user("Token User")
    csrf = await sign_in(client, person)
    created = await _create(client, csrf, name="energy export", expires_in_days=30)
    token = created["token"]
    assert token.startswith("cnl_") and created["info"]["prefix"] == token[:12]
    row = await ApiToken.select().where(ApiToken.id == created["info"]["id"]).first()
    assert row["token_hash"] == token_hash(token) and token not in str(row)
    async with bearer_client(app, token) as machine:
        me = await machine.get("/api/v1/account")
        assert me.status_code == 200 and me.json()["id"] == str(person.user_id)
        # A token cannot mint tokens (it would outlive its own revocation).
        mint = await machine.post("/api/v1/account/tokens", json={"name": "child"})
        assert mint.status_code == 403 and mint.json()["code"] == "session_required"
        listed = (await client.get("/api/v1/account/tokens")).json()
        assert [t["name"] for t in listed] == ["energy export"]
        assert listed[0]["last_used_at"] is not None
        assert "token" not in listed[0]
        revoked = await client.post(
            f"/api/v1/account/tokens/{created['info']['id']}/revoke", headers={"X-CSRF-Token": csrf}
        )
        assert revoked.status_code == 200
        after = await machine.get("/api/v1/account")
        assert after.status_code == 401
    actions = await audit_actions(person.user_id)
    assert "token.created" in actions and "token.revoked" in actions


async def test_page_shows_token_once(client):
    person = await make_user()
    await sign_in(client, person)
    csrf = await page_csrf(client, "/account/tokens")
    answer = await client.post(
        "/account/tokens",
        data={"_csrf": csrf, "name": "数据同步", "tenant_id": "", "expires_in_days": ""},
    )
    assert answer.status_code == 201
    token = re.search(r'class="new-token">(cnl_[^<]+)<', answer.text).group(1)
    again = await client.get("/account/tokens")
    assert "数据同步" in again.text and token not in again.text and token[:12] in again.text


async def test_token_form_rejects_bad_input(client):
    person = await make_user()
    await sign_in(client, person)
    csrf = await page_csrf(client, "/account/tokens")
    cases = [
        ({"name": ""}, "令牌名称须为"),
        ({"name": "x" * 65}, "令牌名称须为"),
        ({"name": "ok", "expires_in_days": "abc"}, "有效期须为"),
        ({"name": "ok", "expires_in_days": "999"}, "有效期须为"),
        ({"name": "ok", "tenant_id": "not-a-uuid"}, "只能绑定到您所属的组织"),
    ]
    for fields, message in cases:
        data = {"_csrf": csrf, "tenant_id": "", "expires_in_days": "", **fields}
        answer = await client.post("/account/tokens", data=data)
        assert answer.status_code == 422, fields
        assert message in answer.text
    assert await ApiToken.count().where(ApiToken.user == person.user_id) == 0


async def test_tenant_binding(client, app):
    person = await make_user()
    tenant_a = await make_tenant(person, name="甲公司")
    tenant_b = await make_tenant(person, name="乙公司")
    stranger = await make_tenant(await make_user(), name="丙公司")
    csrf = await sign_in(client, person)
    refused = await client.post(
        "/api/v1/account/tokens",
        headers={"X-CSRF-Token": csrf},
        json={"name": "x", "tenant_id": str(stranger.id)},
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["code"] == "token_tenant_invalid"
    bound = await _create(client, csrf, tenant_id=str(tenant_a.id))
    assert bound["info"]["tenant_name"] == "甲公司"
    free = await _create(client, csrf, name=unique("free"))
    async with bearer_client(app, bound["token"]) as machine:
        assert (await machine.get(f"/api/v1/t/{tenant_a.slug}")).status_code == 200
        other = await machine.get(f"/api/v1/t/{tenant_b.slug}")
        assert other.status_code == 404 and other.json()["code"] == "not_found"
    async with bearer_client(app, free["token"]) as machine:
        assert (await machine.get(f"/api/v1/t/{tenant_b.slug}")).status_code == 200
        assert (await machine.get(f"/api/v1/t/{stranger.slug}")).status_code == 404


async def test_expired_token_refused(client, app):
    person = await make_user()
    csrf = await sign_in(client, person)
    created = await _create(client, csrf, expires_in_days=1)
    await ApiToken.update({ApiToken.expires_at: clock.now() - dt.timedelta(seconds=1)}).where(
        ApiToken.id == created["info"]["id"]
    )
    forget()
    async with bearer_client(app, created["token"]) as machine:
        assert (await machine.get("/api/v1/account")).status_code == 401
    assert (await client.get("/api/v1/account/tokens")).json() == []

"""TOTP: set-up with a QR code, the second sign-in step, replay refusal, disabling, and
operator staff who must have it."""

from __future__ import annotations

import re

import pyotp

from canal.platform import clock
from canal.platform.identity.secrets import token_hash
from canal.platform.identity.tables import User, UserSession
from tests.factories import credit_code, make_user, sign_in, unique
from tests.identity.helpers import (
    SESSION_COOKIE,
    api_csrf,
    audit_actions,
    form_login,
    page_csrf,
    user_row,
)


async def _secret_from_page(client) -> str:
    page = await client.get("/account/security")
    assert page.status_code == 200, page.text
    assert "<svg" in page.text  # the QR code, inline
    match = re.search(r'class="totp-secret">([A-Z2-7]+)<', page.text)
    assert match
    return match.group(1)


async def _confirm(client, code: str):
    csrf = await page_csrf(client, "/account/security")
    return await client.post("/account/security/totp/confirm", data={"_csrf": csrf, "code": code})


async def _session(client) -> dict:
    token = client.cookies.get(SESSION_COOKIE)
    row = await UserSession.select().where(UserSession.token_hash == token_hash(token)).first()
    assert row is not None
    return row


async def test_setup_second_step_and_replay(client):
    person = await make_user()
    await form_login(client, person.login, person.password)
    secret = await _secret_from_page(client)
    totp = pyotp.TOTP(secret)
    wrong = await _confirm(client, "000000" if totp.now() != "000000" else "111111")
    assert wrong.status_code == 422 and "验证码不正确" in wrong.text
    assert (await user_row(person.user_id))["totp_enabled"] is False
    code = totp.now()
    ok = await _confirm(client, code)
    assert ok.status_code == 303, ok.text
    assert (await user_row(person.user_id))["totp_enabled"] is True
    assert "auth.totp_enabled" in await audit_actions(person.user_id)

    # Signing in again now needs the second step.
    client.cookies.clear()
    first = await form_login(client, person.login, person.password, next="/account/tokens")
    assert first.status_code == 303
    assert first.headers["location"].startswith("/login/totp?next=/account/tokens")
    assert (await _session(client))["mfa_passed"] is False
    # The password alone does not open the account pages or API.
    blocked = await client.get("/account")
    assert blocked.status_code in (302, 303) and blocked.headers["location"].startswith(
        "/login/totp"
    )
    api = await client.get("/api/v1/account/sessions")
    assert api.status_code == 403 and api.json()["code"] == "mfa_required"

    csrf = await page_csrf(client, "/login/totp")
    replay = await client.post(
        "/login/totp", data={"_csrf": csrf, "code": code, "next": "/account/tokens"}
    )
    assert replay.status_code == 422, replay.text
    assert "该验证码已使用过" in replay.text
    next_code = totp.at(clock.wall_timestamp() + 30)
    passed = await client.post(
        "/login/totp", data={"_csrf": csrf, "code": next_code, "next": "/account/tokens"}
    )
    assert passed.status_code == 303 and passed.headers["location"] == "/account/tokens"
    assert (await _session(client))["mfa_passed"] is True
    assert (await client.get("/account")).status_code == 200

    # The same code cannot finish another sign-in either.
    other = await form_login(client, person.login, person.password)
    assert other.status_code == 303
    again = await client.post(
        "/api/v1/auth/login/totp",
        json={"code": next_code},
        headers={"X-CSRF-Token": await api_csrf(client), "Accept-Language": "en"},
    )
    assert again.status_code == 422
    assert again.json()["errors"][0]["code"] == "totp_code_reused"


async def test_wrong_codes_count_towards_lockout(client):
    person = await make_user()
    secret = pyotp.random_base32()
    await User.update({User.totp_secret: secret, User.totp_enabled: True}).where(
        User.id == person.user_id
    )
    await form_login(client, person.login, person.password)
    session = await _session(client)
    csrf = await page_csrf(client, "/login/totp")
    wrong = "123456" if pyotp.TOTP(secret).now() != "123456" else "654321"
    statuses = [
        (await client.post("/login/totp", data={"_csrf": csrf, "code": wrong})).status_code
        for _ in range(5)
    ]
    assert statuses == [422, 422, 422, 422, 429]
    assert "auth.throttled" in await audit_actions(person.user_id)
    ended = await UserSession.select().where(UserSession.id == session["id"]).first()
    assert ended["revoked_at"] is not None


async def test_disable_requires_a_code(client):
    person = await make_user()
    await form_login(client, person.login, person.password)  # a browser's cookie handling
    secret = await _secret_from_page(client)
    totp = pyotp.TOTP(secret)
    assert (await _confirm(client, totp.at(clock.wall_timestamp() - 30))).status_code == 303
    csrf = await page_csrf(client, "/account/security")
    refused = await client.post(
        "/account/security/totp/disable", data={"_csrf": csrf, "code": "12345x"}
    )
    assert refused.status_code == 422
    assert (await user_row(person.user_id))["totp_enabled"] is True
    done = await client.post(
        "/account/security/totp/disable", data={"_csrf": csrf, "code": totp.now()}
    )
    assert done.status_code == 303
    row = await user_row(person.user_id)
    assert row["totp_enabled"] is False and row["totp_secret"] is None
    assert "auth.totp_disabled" in await audit_actions(person.user_id)


async def test_api_setup_and_confirm(client):
    person = await make_user()
    csrf = await sign_in(client, person)
    setup = await client.post("/api/v1/account/security/totp/setup", headers={"X-CSRF-Token": csrf})
    assert setup.status_code == 200
    body = setup.json()
    assert body["otpauth_uri"].startswith("otpauth://totp/") and body["qr_svg"].startswith("<svg")
    confirm = await client.post(
        "/api/v1/account/security/totp/confirm",
        json={"code": pyotp.TOTP(body["secret"]).now()},
        headers={"X-CSRF-Token": csrf},
    )
    assert confirm.status_code == 200 and confirm.json()["totp_enabled"] is True


async def _operator_staff():
    from canal.platform.http.tenancy import forget_tenant, operator_tenant
    from canal.tenants.services import create_operator_tenant

    staff = await make_user("运营人员")
    operator = await operator_tenant()
    if operator is None:
        await create_operator_tenant(
            creator_id=staff.user_id,
            name="东昌数字城市运营公司",
            slug=unique("op-"),
            credit_code=credit_code(),
        )
        forget_tenant()
        return staff
    from canal.platform import db
    from canal.platform.access.services import access

    async with db.tenant_scope(operator.id, staff.user_id):
        from canal.tenants.tables import Membership

        await Membership.insert(Membership(tenant_id=operator.id, user_id=staff.user_id))
        await access().assign_role(staff.user_id, "platform_auditor", operator.id)
    return staff


async def test_operator_staff_must_set_up_totp(client):
    staff = await _operator_staff()
    answer = await form_login(client, staff.login, staff.password, next="/operator/tenants")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/account/security?required=1"
    page = await client.get("/account/security?required=1")
    assert "运营方工作人员必须使用两步验证" in page.text
    # Until TOTP is set up, operator routes refuse with mfa_required.
    blocked = await client.get("/api/v1/operator/tenants")
    assert blocked.status_code == 403 and blocked.json()["code"] == "mfa_required"
    api = await client.post(
        "/api/v1/auth/login",
        json={"login": staff.login, "password": staff.password},
        headers={"X-CSRF-Token": await api_csrf(client)},
    )
    assert api.json()["mfa"] == "setup_required"
    secret = await _secret_from_page(client)
    assert (await _confirm(client, pyotp.TOTP(secret).now())).status_code == 303
    opened = await client.get("/api/v1/operator/tenants")
    assert opened.status_code == 200, opened.text
    # Staff cannot turn it off again.
    csrf = await page_csrf(client, "/account/security")
    refused = await client.post(
        "/api/v1/account/security/totp/disable",
        json={"code": pyotp.TOTP(secret).at(clock.wall_timestamp() + 30)},
        headers={"X-CSRF-Token": csrf},
    )
    assert refused.status_code == 403 and refused.json()["code"] == "totp_required_for_staff"


def _cookie_client(app, token: str):
    from httpx import ASGITransport, AsyncClient

    return AsyncClient(
        transport=ASGITransport(app=app),
        base_url="https://testserver.local",
        cookies={SESSION_COOKIE: token},
    )


async def _totp_user():
    person = await make_user()
    secret = pyotp.random_base32()
    await User.update({User.totp_secret: secret, User.totp_enabled: True}).where(
        User.id == person.user_id
    )
    return person, pyotp.TOTP(secret)


async def test_totp_step_rotates_the_session(client, app):
    person, totp = await _totp_user()
    await form_login(client, person.login, person.password)
    pending = client.cookies.get(SESSION_COOKIE)
    pending_row = await _session(client)
    csrf = await page_csrf(client, "/login/totp")
    passed = await client.post(
        "/login/totp", data={"_csrf": csrf, "code": totp.now(), "next": "/account"}
    )
    assert passed.status_code == 303, passed.text
    fresh = client.cookies.get(SESSION_COOKIE)
    assert fresh and fresh != pending
    new_row = await _session(client)
    assert new_row["id"] != pending_row["id"] and new_row["mfa_passed"] is True
    assert new_row["csrf_token"] != pending_row["csrf_token"]
    old = await UserSession.select().where(UserSession.id == pending_row["id"]).first()
    assert old["revoked_at"] is not None and old["mfa_passed"] is False
    # The cookie captured before the code is worth nothing now; the new one works.
    async with _cookie_client(app, pending) as thief:
        assert (await thief.get("/api/v1/account")).status_code == 401
    async with _cookie_client(app, fresh) as me:
        assert (await me.get("/api/v1/account")).status_code == 200
    assert (await client.get("/account")).status_code == 200


async def test_api_totp_step_rotates_the_session(client, app):
    person, totp = await _totp_user()
    csrf = await api_csrf(client)
    login = await client.post(
        "/api/v1/auth/login",
        json={"login": person.login, "password": person.password},
        headers={"X-CSRF-Token": csrf},
    )
    assert login.status_code == 200 and login.json()["mfa"] == "required"
    pending = client.cookies.get(SESSION_COOKIE)
    passed = await client.post(
        "/api/v1/auth/login/totp",
        json={"code": totp.now()},
        headers={"X-CSRF-Token": login.json()["csrf_token"]},
    )
    assert passed.status_code == 200, passed.text
    body = passed.json()
    assert body["code"] == "mfa_passed"
    fresh = client.cookies.get(SESSION_COOKIE)
    assert fresh and fresh != pending
    row = await _session(client)
    assert row["mfa_passed"] is True and body["csrf_token"] == row["csrf_token"]
    assert body["csrf_token"] != login.json()["csrf_token"]
    async with _cookie_client(app, pending) as thief:
        assert (await thief.get("/api/v1/account")).status_code == 401
    async with _cookie_client(app, fresh) as me:
        assert (await me.get("/api/v1/account")).status_code == 200
    # The new CSRF token works for the next unsafe request.
    sessions = await client.get("/api/v1/account/sessions")
    assert sessions.status_code == 200 and len(sessions.json()) == 1
    revoke = await client.post(
        "/api/v1/account/sessions/revoke-others", headers={"X-CSRF-Token": body["csrf_token"]}
    )
    assert revoke.status_code == 200, revoke.text


async def test_operator_staff_need_totp_for_api_tokens(client):
    from canal.platform.identity.tables import ApiToken

    staff = await _operator_staff()
    csrf = await sign_in(client, staff)
    refused = await client.post(
        "/api/v1/account/tokens",
        json={"name": "导出"},
        headers={"X-CSRF-Token": csrf},
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "totp_required_for_tokens"
    assert "两步验证" in refused.json()["detail_zh"]
    assert "two-factor" in refused.json()["detail_en"]
    page_csrf_token = await page_csrf(client, "/account/tokens")
    form = await client.post(
        "/account/tokens",
        data={"_csrf": page_csrf_token, "name": "导出", "tenant_id": "", "expires_in_days": ""},
    )
    assert form.status_code == 403 and "两步验证" in form.text
    assert await ApiToken.count().where(ApiToken.user == staff.user_id) == 0
    # With TOTP on, they may.
    await User.update({User.totp_enabled: True, User.totp_secret: pyotp.random_base32()}).where(
        User.id == staff.user_id
    )
    ok = await client.post(
        "/api/v1/account/tokens", json={"name": "导出"}, headers={"X-CSRF-Token": csrf}
    )
    assert ok.status_code == 201, ok.text


async def test_turning_totp_on_replaces_the_session(client):
    """A cookie captured before the code must not become fully privileged afterwards."""
    person = await make_user()
    await form_login(client, person.login, person.password)
    before = client.cookies.get(SESSION_COOKIE)
    secret = await _secret_from_page(client)
    ok = await _confirm(client, pyotp.TOTP(secret).now())
    assert ok.status_code == 303, ok.text
    after = client.cookies.get(SESSION_COOKIE)
    assert after and after != before
    old = await UserSession.select().where(UserSession.token_hash == token_hash(before)).first()
    new = await UserSession.select().where(UserSession.token_hash == token_hash(after)).first()
    assert old["revoked_at"] is not None
    assert new["mfa_passed"] is True and new["revoked_at"] is None
    assert (await client.get("/account")).status_code == 200

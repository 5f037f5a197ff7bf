"""Sign-in, session rotation, safe redirects, throttling and its end, sign-out."""

from __future__ import annotations

from canal.platform.identity.secrets import token_hash
from canal.platform.identity.tables import UserSession
from tests.factories import make_user
from tests.identity.helpers import (
    SESSION_COOKIE,
    api_csrf,
    audit_actions,
    form_login,
    page_csrf,
    pass_the_wait,
    user_row,
)


async def _session_of(client) -> dict | None:
    token = client.cookies.get(SESSION_COOKIE)
    return await UserSession.select().where(UserSession.token_hash == token_hash(token)).first()


async def test_login_success_redirects_to_safe_next(client):
    person = await make_user("周杰")
    answer = await form_login(client, person.login, person.password, next="/account/sessions")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/account/sessions"
    session = await _session_of(client)
    assert session["user"] == person.user_id and session["mfa_passed"] is False
    assert (await client.get("/account")).status_code == 200
    assert "auth.login" in await audit_actions(person.user_id)


async def test_login_open_redirect_refused(client):
    person = await make_user()
    for bad in ("//evil.example", "https://evil.example/a", "/\\evil", "javascript:alert(1)"):
        answer = await form_login(client, person.login, person.password, next=bad)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/", bad


async def test_login_rotates_session(client):
    person = await make_user()
    await form_login(client, person.login, person.password)
    first = await _session_of(client)
    await form_login(client, person.login, person.password)
    second = await _session_of(client)
    assert first["id"] != second["id"]
    old = await UserSession.select().where(UserSession.id == first["id"]).first()
    assert old["revoked_at"] is not None


async def test_login_failure_same_message_for_unknown_and_wrong(client):
    person = await make_user()
    wrong = await form_login(client, person.login, "not-the-password")
    unknown = await form_login(client, "nobody-here@example.cn", "not-the-password")
    assert wrong.status_code == unknown.status_code == 401
    assert "账号或密码不正确" in wrong.text and "账号或密码不正确" in unknown.text
    assert SESSION_COOKIE not in wrong.headers.get("set-cookie", "")
    en = await client.post(
        "/api/v1/auth/login",
        json={"login": person.login, "password": "x"},
        headers={"X-CSRF-Token": await api_csrf(client), "Accept-Language": "en"},
    )
    assert en.status_code == 401 and en.json()["code"] == "login_failed"
    assert en.json()["detail"] == "The account or password is incorrect."
    assert "auth.login_failed" in await audit_actions(person.user_id)


async def test_api_login_sets_cookie_and_returns_user(client):
    person = await make_user("Amy")
    csrf = await api_csrf(client)
    answer = await client.post(
        "/api/v1/auth/login",
        headers={"X-CSRF-Token": csrf},
        json={"login": person.login, "password": person.password},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["user"]["id"] == str(person.user_id) and body["mfa"] == "none"
    assert "httponly" in answer.headers["set-cookie"].lower()
    # The session's own CSRF token now protects state changes.
    me = await client.post(
        "/api/v1/account/profile",
        json={"display_name": "Amy Li", "locale": "en"},
        headers={"X-CSRF-Token": body["csrf_token"]},
    )
    assert me.status_code == 200 and me.json()["display_name"] == "Amy Li"


async def test_five_failures_make_this_address_wait_and_the_wait_ends(client):
    """No lock: the fifth failure from an address makes the next attempt there wait (429,
    even with the right password, which is not checked meanwhile); when the wait is over
    the right password works and the counts start again."""
    person = await make_user()
    for attempt in range(4):
        answer = await form_login(client, person.login, f"wrong-{attempt}")
        assert answer.status_code == 401
    fifth = await form_login(client, person.login, "wrong-5")
    assert fifth.status_code == 429
    assert "尝试次数过多,请 10 秒后再试" in fifth.text
    # While waiting even the right password is refused, in English too.
    waiting = await client.post(
        "/api/v1/auth/login",
        json={"login": person.login, "password": person.password},
        headers={"X-CSRF-Token": await api_csrf(client), "Accept-Language": "en"},
    )
    assert waiting.status_code == 429 and waiting.json()["code"] == "login_throttled"
    assert "try again in" in waiting.json()["detail"]
    actions = await audit_actions(person.user_id)
    assert actions.count("auth.login_failed") >= 6 and "auth.throttled" in actions
    assert (await user_row(person.user_id))["locked_until"] is None  # no account lock
    await pass_the_wait(person.user_id)
    ok = await form_login(client, person.login, person.password)
    assert ok.status_code == 303
    assert (await user_row(person.user_id))["failed_logins"] == 0


async def test_success_resets_failure_count(client):
    person = await make_user()
    for _ in range(3):
        await form_login(client, person.login, "bad-password")
    assert (await form_login(client, person.login, person.password)).status_code == 303
    for _ in range(4):
        assert (await form_login(client, person.login, "bad-password")).status_code == 401
    assert (await user_row(person.user_id))["locked_until"] is None


async def test_logout_revokes_session(client):
    person = await make_user()
    await form_login(client, person.login, person.password)
    session = await _session_of(client)
    stolen_cookie = client.cookies.get(SESSION_COOKIE)
    csrf = await page_csrf(client, "/account")
    answer = await client.post("/logout", data={"_csrf": csrf})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    assert "max-age=0" in answer.headers["set-cookie"].lower()
    row = await UserSession.select().where(UserSession.id == session["id"]).first()
    assert row["revoked_at"] is not None
    # The old cookie, replayed, no longer signs anybody in.
    client.cookies.set(SESSION_COOKIE, stolen_cookie, domain="testserver.local")
    api = await client.get("/api/v1/account")
    assert api.status_code == 401
    page = await client.get("/account")
    assert page.status_code in (302, 303) and page.headers["location"].startswith("/login")
    assert "auth.logout" in await audit_actions(person.user_id)

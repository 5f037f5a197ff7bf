"""Forgotten password: no enumeration, one-time 30-minute links, sessions ended."""

from __future__ import annotations

import datetime as dt
import re

from canal.platform import clock
from canal.platform.identity.tables import OutboxMessage, PasswordReset, UserSession
from tests.factories import make_user, sign_in
from tests.identity.helpers import api_csrf, audit_actions, form_login, page_csrf

NEW_PASSWORD = "a-brand-new-password"


async def _request(client, login: str):
    csrf = await page_csrf(client, "/password/forgot")
    return await client.post("/password/forgot", data={"_csrf": csrf, "login": login})


async def _link_for(recipient: str) -> str:
    row = (
        await OutboxMessage.select()
        .where(OutboxMessage.recipient == recipient)
        .order_by(OutboxMessage.created_at, ascending=False)
        .first()
    )
    assert row is not None, "no message in the outbox"
    match = re.search(r"/password/reset/([A-Za-z0-9_-]+)", row["body"])
    assert match
    return f"/password/reset/{match.group(1)}"


async def test_same_answer_whether_or_not_account_exists(client):
    person = await make_user()
    known = await _request(client, person.login)
    unknown = await _request(client, "nobody-at-all@example.cn")
    assert known.status_code == unknown.status_code == 200
    assert "如果该手机号或邮箱已注册" in known.text
    strip = lambda text: re.sub(r'value="[^"]+"', "", text)  # noqa: E731 - CSRF tokens differ
    assert strip(known.text) == strip(unknown.text)
    assert (
        await OutboxMessage.count().where(OutboxMessage.recipient == "nobody-at-all@example.cn")
        == 0
    )
    assert "auth.password_reset_requested" in await audit_actions(person.user_id)


async def test_reset_link_works_once_and_ends_sessions(client, app):
    person = await make_user()
    await sign_in(client, person)  # a session elsewhere, which the reset must end
    other = await UserSession.select().where(UserSession.user == person.user_id).first()
    client.cookies.clear()
    client.headers.pop("X-CSRF-Token", None)
    await _request(client, person.login)
    link = await _link_for(person.login)
    page = await client.get(link)
    assert page.status_code == 200 and 'name="password"' in page.text
    csrf = await page_csrf(client, link)
    weak = await client.post(link, data={"_csrf": csrf, "password": "short"})
    assert weak.status_code == 422 and "密码至少需要 10 个字符" in weak.text
    done = await client.post(link, data={"_csrf": csrf, "password": NEW_PASSWORD})
    assert done.status_code == 303 and done.headers["location"] == "/login?done=reset_done"
    ended = await UserSession.select().where(UserSession.id == other["id"]).first()
    assert ended["revoked_at"] is not None
    assert (await form_login(client, person.login, NEW_PASSWORD)).status_code == 303
    assert (await form_login(client, person.login, person.password)).status_code == 401
    # Reused: refused, and the password stays what the first use set.
    csrf = await page_csrf(client, "/password/forgot")
    again = await client.post(link, data={"_csrf": csrf, "password": "yet-another-password"})
    assert again.status_code == 400 and "该重置链接无效或已被使用" in again.text
    assert (await form_login(client, person.login, NEW_PASSWORD)).status_code == 303
    assert "auth.password_reset" in await audit_actions(person.user_id)


async def test_expired_link_refused_and_changes_nothing(client):
    person = await make_user()
    await _request(client, person.login)
    link = await _link_for(person.login)
    await PasswordReset.update(
        {PasswordReset.expires_at: clock.now() - dt.timedelta(minutes=1)}
    ).where(PasswordReset.user == person.user_id)
    page = await client.get(link, headers={"Accept-Language": "en"})
    assert page.status_code == 400 and "has expired" in page.text
    csrf = await page_csrf(client, "/password/forgot")
    answer = await client.post(link, data={"_csrf": csrf, "password": NEW_PASSWORD})
    assert answer.status_code == 400 and "该重置链接已过期" in answer.text
    assert (await form_login(client, person.login, person.password)).status_code == 303


async def test_reset_over_api_and_garbage_token(client):
    person = await make_user()
    csrf = await api_csrf(client)
    sent = await client.post(
        "/api/v1/password/forgot", json={"login": person.login}, headers={"X-CSRF-Token": csrf}
    )
    assert sent.status_code == 202 and sent.json()["code"] == "reset_sent"
    token = (await _link_for(person.login)).rsplit("/", 1)[1]
    bad = await client.post(
        "/api/v1/password/reset",
        headers={"X-CSRF-Token": csrf},
        json={"token": "x" * 5000, "password": NEW_PASSWORD},
    )
    assert bad.status_code == 400 and bad.json()["code"] == "reset_link_invalid"
    ok = await client.post(
        "/api/v1/password/reset",
        headers={"X-CSRF-Token": csrf},
        json={"token": token, "password": NEW_PASSWORD},
    )
    assert ok.status_code == 200, ok.text
    reused = await client.post(
        "/api/v1/password/reset",
        headers={"X-CSRF-Token": csrf},
        json={"token": token, "password": NEW_PASSWORD + "2"},
    )
    assert reused.status_code == 400 and reused.json()["code"] == "reset_link_invalid"


async def test_outbox_message_is_delivered_by_the_job(client):
    from canal.platform.jobs import deliver_message

    person = await make_user()
    await _request(client, person.login)
    row = await OutboxMessage.select().where(OutboxMessage.recipient == person.login).first()
    assert row["sent_at"] is None
    assert await deliver_message({}, str(row["id"])) == "sent"
    assert await deliver_message({}, str(row["id"])) == "skipped"  # idempotent

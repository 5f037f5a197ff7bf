"""Credential changes end what the old credentials started: a password reset or change revokes
the API tokens too, and the resolved-principal cache is cleared only once the change is
committed (a concurrent request cannot re-cache a session that is about to be revoked)."""

from __future__ import annotations

import asyncio
import contextvars
import re

from canal.platform import db
from canal.platform.http.auth import resolve_principal
from canal.platform.identity import services
from canal.platform.identity.tables import ApiToken, OutboxMessage
from canal.platform.settings import get_settings
from tests.factories import make_user, sign_in
from tests.identity.helpers import audit_actions, page_csrf
from tests.identity.test_tokens import bearer_client

NEW_PASSWORD = "a-brand-new-password"


def _elsewhere(coro):
    """Run ``coro`` as another request would: its own context, so its own pool connection
    (not the open transaction of the caller)."""
    return asyncio.create_task(coro, context=contextvars.Context())


async def _make_token(client, csrf: str) -> str:
    answer = await client.post(
        "/api/v1/account/tokens", json={"name": "导出"}, headers={"X-CSRF-Token": csrf}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["token"]


async def _reset_link(recipient: str) -> str:
    row = (
        await OutboxMessage.select()
        .where(OutboxMessage.recipient == recipient)
        .order_by(OutboxMessage.created_at, ascending=False)
        .first()
    )
    assert row is not None
    match = re.search(r"/password/reset/([A-Za-z0-9_-]+)", row["body"])
    assert match
    return f"/password/reset/{match.group(1)}"


async def test_password_reset_revokes_api_tokens(client, app):
    person = await make_user()
    csrf = await sign_in(client, person)
    token = await _make_token(client, csrf)
    async with bearer_client(app, token) as machine:
        assert (await machine.get("/api/v1/account")).status_code == 200  # now cached
        client.cookies.clear()
        client.headers.pop("X-CSRF-Token", None)
        csrf = await page_csrf(client, "/password/forgot")
        await client.post("/password/forgot", data={"_csrf": csrf, "login": person.login})
        link = await _reset_link(person.login)
        csrf = await page_csrf(client, link)
        done = await client.post(link, data={"_csrf": csrf, "password": NEW_PASSWORD})
        assert done.status_code == 303, done.text
        after = await machine.get("/api/v1/account")
        assert after.status_code == 401
    rows = await ApiToken.select(ApiToken.revoked_at).where(ApiToken.user == person.user_id)
    assert rows and all(r["revoked_at"] is not None for r in rows)
    assert "token.revoked" in await audit_actions(person.user_id)


async def test_password_change_revokes_api_tokens(client, app):
    person = await make_user()
    csrf = await sign_in(client, person)
    token = await _make_token(client, csrf)
    async with bearer_client(app, token) as machine:
        assert (await machine.get("/api/v1/account")).status_code == 200
        changed = await client.post(
            "/api/v1/account/password",
            json={"current_password": person.password, "new_password": NEW_PASSWORD},
            headers={"X-CSRF-Token": csrf},
        )
        assert changed.status_code == 200, changed.text
        assert (await machine.get("/api/v1/account")).status_code == 401
    assert (await client.get("/api/v1/account")).status_code == 200  # this session stays
    # New tokens can be made again from the browser that changed the password.
    await _make_token(client, csrf)


async def test_session_cache_is_cleared_after_commit(app):
    person = await make_user()
    session = await services.start_session(get_settings(), person.user_id, mfa_passed=True)
    assert await resolve_principal(session.token, None) is not None  # cached
    async with db.transaction():
        assert await services.revoke_other_sessions(person.user_id, None) == 1
        # A concurrent request still sees the committed (unrevoked) row and caches it again.
        seen = await _elsewhere(resolve_principal(session.token, None))
        assert seen is not None
    # Once committed, the cache is cleared: the revocation holds at once.
    assert await resolve_principal(session.token, None) is None


async def test_token_cache_is_cleared_after_commit(client, app):
    person = await make_user()
    csrf = await sign_in(client, person)
    token = await _make_token(client, csrf)
    assert await resolve_principal(None, token) is not None
    async with db.transaction():
        assert await services.revoke_all_tokens(person.user_id) == 1
        assert await _elsewhere(resolve_principal(None, token)) is not None
    assert await resolve_principal(None, token) is None

"""The sessions page and API: list, revoke one, revoke the others; others' ids answer 404."""

from __future__ import annotations

import uuid

from canal.platform.identity.services import start_session
from canal.platform.identity.tables import UserSession
from canal.platform.settings import get_settings
from tests.factories import make_user, sign_in
from tests.identity.helpers import audit_actions, form_login, page_csrf


async def _active(user_id: uuid.UUID) -> set[uuid.UUID]:
    rows = await UserSession.select(UserSession.id).where(
        (UserSession.user == user_id) & UserSession.revoked_at.is_null()
    )
    return {r["id"] for r in rows}


async def test_list_and_revoke_own_sessions(client):
    person = await make_user()
    await form_login(client, person.login, person.password)
    phone = await start_session(
        get_settings(),
        person.user_id,
        ip="10.1.2.3",
        user_agent="Mozilla/5.0 (iPhone) Safari/604.1",
    )
    laptop = await start_session(
        get_settings(),
        person.user_id,
        ip="10.9.9.9",
        user_agent="Mozilla/5.0 (Windows NT 10.0) Chrome/130.0",
    )
    listed = (await client.get("/api/v1/account/sessions")).json()
    assert {s["id"] for s in listed} == {str(i) for i in await _active(person.user_id)}
    assert sum(1 for s in listed if s["current"]) == 1
    page = await client.get("/account/sessions")
    assert "Safari · iPhone" in page.text and "10.1.2.3" in page.text and "本会话" in page.text

    csrf = await page_csrf(client, "/account/sessions")
    answer = await client.post(f"/account/sessions/{phone.session_id}/revoke", data={"_csrf": csrf})
    assert answer.status_code == 303
    assert phone.session_id not in await _active(person.user_id)
    assert laptop.session_id in await _active(person.user_id)
    assert "session.revoked" in await audit_actions(person.user_id)

    others = await client.post(
        "/api/v1/account/sessions/revoke-others", headers={"X-CSRF-Token": csrf}
    )
    assert others.status_code == 200
    remaining = await _active(person.user_id)
    assert len(remaining) == 1 and laptop.session_id not in remaining
    assert (await client.get("/api/v1/account")).status_code == 200  # this one survives


async def test_another_users_session_is_404_and_untouched(client):
    me, other = await make_user(), await make_user()
    csrf = await sign_in(client, me)
    theirs = await start_session(get_settings(), other.user_id)
    for url in (
        f"/api/v1/account/sessions/{theirs.session_id}/revoke",
        f"/api/v1/account/sessions/{uuid.uuid4()}/revoke",
    ):
        answer = await client.post(url, headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 404 and answer.json()["code"] == "not_found"
    page = await client.post(f"/account/sessions/{theirs.session_id}/revoke", data={"_csrf": csrf})
    assert page.status_code == 404
    assert theirs.session_id in await _active(other.user_id)
    bad = await client.post(
        "/api/v1/account/sessions/not-a-uuid/revoke", headers={"X-CSRF-Token": csrf}
    )
    assert bad.status_code in (400, 404)


async def test_revoking_current_session_signs_out(client):
    person = await make_user()
    await form_login(client, person.login, person.password)
    current = next(s for s in (await client.get("/api/v1/account/sessions")).json() if s["current"])
    csrf = await page_csrf(client, "/account/sessions")
    answer = await client.post(f"/account/sessions/{current['id']}/revoke", data={"_csrf": csrf})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    assert (await client.get("/api/v1/account")).status_code == 401

"""The inbox: one person's notifications only, unread count, marking read (htmx and JSON)."""

from __future__ import annotations

import uuid

import pytest

from canal.platform import db
from canal.platform.identity.tables import OutboxMessage
from canal.platform.notifications.services import notify
from canal.platform.notifications.tables import Notification
from tests.factories import make_user, sign_in, unique


async def _notify(person, title: str, **kwargs) -> uuid.UUID:
    [notification_id] = await notify(
        [person.user_id],
        kwargs.pop("kind", "system"),
        title_zh=f"{title}(中文)",
        title_en=title,
        body_zh="正文",
        body_en="Body",
        **kwargs,
    )
    return notification_id


async def test_another_persons_notification_is_not_found(app, client):
    alice, bob = await make_user("甲"), await make_user("乙")
    secret = unique("alice-only-")
    alice_note = await _notify(alice, secret)
    await sign_in(client, bob)
    for response in (
        await client.get(f"/notifications/{alice_note}"),
        await client.get(f"/api/v1/notifications/{alice_note}"),
        await client.post(f"/notifications/{alice_note}/read"),
        await client.post(f"/api/v1/notifications/{alice_note}/read"),
    ):
        assert response.status_code == 404
    assert secret not in (await client.get("/notifications")).text
    assert secret not in (await client.get("/api/v1/notifications")).text
    # Bob's "mark all read" leaves Alice's unread.
    assert (await client.post("/api/v1/notifications/read-all")).status_code == 200
    row = (
        await Notification.select(Notification.read_at).where(Notification.id == alice_note).first()
    )
    assert row["read_at"] is None

    client.cookies.clear()
    await sign_in(client, alice)
    mine = (await client.get(f"/api/v1/notifications/{alice_note}")).json()
    assert mine["title"] == f"{secret}(中文)" and mine["read_at"] is None
    english = await client.get(f"/api/v1/notifications/{alice_note}?lang=en")
    assert english.json()["title"] == secret


async def test_unread_count_badge_and_marking_read(app, client):
    person = await make_user("读者")
    ids = [await _notify(person, unique("n-"), link="/account") for _ in range(3)]
    await sign_in(client, person)
    badge = await client.get("/notifications/unread-count")
    assert badge.status_code == 200 and 'id="unread-count"' in badge.text
    assert ">3<" in badge.text.replace("\n", "")
    assert (await client.get("/api/v1/notifications/unread-count")).json() == {"unread": 3}

    page = await client.get("/notifications")
    assert page.status_code == 200
    assert 'href="/notifications"' in page.text and 'id="unread-count"' in page.text  # the bell

    # htmx: mark one read; the list comes back with the header badge swapped out of band.
    marked = await client.post(f"/notifications/{ids[0]}/read", headers={"HX-Request": "true"})
    assert marked.status_code == 200
    assert 'id="inbox"' in marked.text and 'hx-swap-oob="true"' in marked.text
    assert (await client.get("/api/v1/notifications/unread-count")).json() == {"unread": 2}

    # Opening a notification marks it read and follows its link.
    opened = await client.get(f"/notifications/{ids[1]}")
    assert opened.status_code == 303 and opened.headers["location"] == "/account"
    listing = (await client.get("/api/v1/notifications?unread=true")).json()
    assert [n["id"] for n in listing["items"]] == [str(ids[2])] and listing["unread"] == 1

    done = await client.post("/api/v1/notifications/read-all")
    assert done.json()["changed"] == 1
    assert (await client.get("/api/v1/notifications/unread-count")).json() == {"unread": 0}
    empty_badge = await client.get("/notifications/unread-count")
    assert "bell__count--none" in empty_badge.text


async def test_badge_needs_a_session(app, client):
    assert (await client.get("/notifications/unread-count")).status_code in {401, 302, 303}
    assert (await client.get("/api/v1/notifications")).status_code == 401


async def test_rolled_back_change_notifies_nobody(app):
    person = await make_user("回滚")
    title = unique("never-")
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await _notify(person, title, kind="invitation")
            raise RuntimeError("the change failed")
    assert not await Notification.exists().where(Notification.user_id == person.user_id)
    assert not await OutboxMessage.exists().where(OutboxMessage.recipient == person.login)


async def test_links_stay_on_the_site(app):
    person = await make_user()
    for link in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        with pytest.raises(ValueError):
            await _notify(person, "x", link=link)


async def test_half_signed_in_session_sees_no_unread_count(app, client):
    """Password passed, TOTP not yet: the header shows nothing of the account."""
    from canal.platform.identity.tables import User

    person = await make_user("两步验证中")
    for _ in range(3):
        await _notify(person, unique("hidden-"))
    await User.update({User.totp_enabled: True}).where(User.id == person.user_id)
    await sign_in(client, person, mfa=False)
    for path in ("/login/totp", "/login"):
        page = await client.get(path)
        assert page.status_code < 500, (path, page.status_code)
        badge = page.text.replace("\n", "")
        assert ">3<" not in badge and "3<span" not in badge, path

    # Once the code is entered (a session that passed the step), the count is back.
    client.cookies.clear()
    await sign_in(client, person)
    page = await client.get("/notifications")
    assert page.status_code == 200 and ">3<" in page.text.replace("\n", "").replace(" ", "")


@pytest.mark.parametrize(
    "before",
    ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+00:01"],
)
async def test_a_cursor_outside_utc_is_refused_not_500(app, client, before):
    person = await make_user("翻页")
    await _notify(person, unique("n-"))
    await sign_in(client, person)
    api = await client.get("/api/v1/notifications", params={"before": before})
    assert api.status_code == 422, api.text
    assert api.json()["errors"][0]["field"] == "before"
    page = await client.get("/notifications", params={"before": before})
    assert page.status_code == 422, page.status_code
    # A cursor that does fit still pages.
    ok = await client.get("/api/v1/notifications", params={"before": "0001-01-01T00:00:00+00:00"})
    assert ok.status_code == 200 and ok.json()["items"] == []

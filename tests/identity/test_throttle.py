"""Sign-in throttling (issue #22 point 5): growing waits by address and by account at an
address, instead of a 15-minute lock anyone could set off; wrong current passwords on the
password-change page count too."""

from __future__ import annotations

from httpx import ASGITransport, AsyncClient

from canal.platform.identity import throttle
from canal.platform.identity.tables import UserSession
from tests.factories import make_user, sign_in, unique
from tests.identity.helpers import audit_actions, form_login, pass_the_wait


def _from(app, address: str) -> AsyncClient:
    return AsyncClient(
        transport=ASGITransport(app=app, client=(address, 40000)),
        base_url="https://testserver.local",
        follow_redirects=False,
    )


def test_waits_grow_and_stop_at_the_cap():
    waits = [throttle.wait_after(n, 5, 900) for n in (1, 4, 5, 6, 7, 10, 12, 40)]
    assert waits == [0, 0, 10, 20, 40, 320, 900, 900]


async def test_a_guesser_elsewhere_cannot_keep_the_owner_out(app):
    person = await make_user()
    async with _from(app, "203.0.113.50") as guesser, _from(app, "198.51.100.8") as owner:
        for attempt in range(5):
            answer = await form_login(guesser, person.login, f"guess-{attempt}")
        assert answer.status_code == 429
        # The guesser waits, even with the right password …
        assert (await form_login(guesser, person.login, person.password)).status_code == 429
        # … the owner, at another address, signs in at once.
        assert (await form_login(owner, person.login, person.password)).status_code == 303
        # The owner's success does not free the guesser: his count and his wait stand.
        assert (await form_login(guesser, person.login, "guess-6")).status_code == 429
        await pass_the_wait(person.user_id)
        sixth = await form_login(guesser, person.login, "guess-6")
        assert sixth.status_code == 429 and "20 秒" in sixth.text  # the wait doubles


async def test_one_address_trying_many_accounts_waits(app):
    """Credential stuffing: 20 failures from one address, whatever the accounts (real or
    not), make that address wait; another address is not affected."""
    people = [await make_user() for _ in range(3)]
    async with _from(app, "203.0.113.77") as stuffer, _from(app, "198.51.100.9") as other:
        statuses = []
        for n in range(20):
            login = people[n % 3].login if n % 2 else f"{unique('nobody')}@example.cn"
            statuses.append((await form_login(stuffer, login, "password-123")).status_code)
        assert statuses[:19] == [401] * 19 and statuses[19] == 429
        assert (await form_login(stuffer, people[0].login, people[0].password)).status_code == 429
        assert (await form_login(other, people[0].login, people[0].password)).status_code == 303


async def test_wrong_current_passwords_on_the_password_page_count(app):
    """A stolen session cannot guess the password on the password-change page unthrottled:
    the fifth wrong one starts a wait and ends the session."""
    person = await make_user()
    async with _from(app, "203.0.113.90") as thief:
        await sign_in(thief, person)
        answers = [
            await thief.post(
                "/api/v1/account/password",
                json={"current_password": f"guess-{n}", "new_password": "a-new-good-password"},
            )
            for n in range(5)
        ]
        assert [a.status_code for a in answers] == [422, 422, 422, 422, 429]
        assert answers[0].json()["errors"][0]["code"] == "password_wrong"
        assert answers[4].json()["code"] == "login_throttled"
        # The session is gone: the right password does not help the thief now.
        after = await thief.post(
            "/api/v1/account/password",
            json={"current_password": person.password, "new_password": "a-new-good-password"},
        )
        assert after.status_code in {401, 403}  # signed out (the CSRF check sees no session)
    sessions = await UserSession.select(UserSession.revoked_at).where(
        UserSession.user == person.user_id
    )
    assert sessions and all(s["revoked_at"] is not None for s in sessions)
    actions = await audit_actions(person.user_id)
    assert actions.count("auth.login_failed") == 5 and "auth.throttled" in actions
    async with _from(app, "198.51.100.10") as owner:
        assert (await form_login(owner, person.login, person.password)).status_code == 303


async def test_the_password_page_sends_a_guesser_back_to_sign_in(app):
    person = await make_user()
    async with _from(app, "203.0.113.91") as thief:
        csrf = await sign_in(thief, person)
        for n in range(5):
            answer = await thief.post(
                "/account/password",
                data={"_csrf": csrf, "current_password": f"guess-{n}", "new_password": "x" * 12},
            )
        assert answer.status_code == 429
        assert 'action="/login"' in answer.text and "尝试次数过多" in answer.text
        assert "Max-Age=0" in answer.headers.get("set-cookie", "")

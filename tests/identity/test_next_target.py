"""Only a page the person navigated to becomes ``next`` after signing in (or after the TOTP
step): never an htmx poll, an XHR, an API path, a form post or a fragment endpoint."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pyotp

from canal.platform.identity.tables import User
from tests.factories import make_user
from tests.identity.helpers import form_login, page_csrf

HTMX = {"HX-Request": "true", "HX-Current-URL": "https://testserver.local/login/totp"}


async def _half_signed_in(client):
    """Password passed, TOTP step pending (the operator's state right after /login)."""
    person = await make_user()
    secret = pyotp.random_base32()
    await User.update({User.totp_secret: secret, User.totp_enabled: True}).where(
        User.id == person.user_id
    )
    answer = await form_login(client, person.login, person.password, next="/account/sessions")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login/totp?next=/account/sessions"
    return pyotp.TOTP(secret)


def _next_of(location: str) -> str | None:
    values = parse_qs(urlsplit(location).query).get("next")
    return values[0] if values else None


async def test_the_totp_page_does_not_poll_the_inbox(client):
    await _half_signed_in(client)
    page = await client.get("/login/totp?next=/account/sessions")
    assert page.status_code == 200
    assert "/notifications/unread-count" not in page.text  # no bell until the code is in


async def test_an_htmx_poll_during_the_totp_step_is_not_recorded_as_next(client):
    totp = await _half_signed_in(client)
    poll = await client.get("/notifications/unread-count", headers=HTMX)
    assert poll.status_code == 200 and "HX-Redirect" in poll.headers
    assert poll.headers["HX-Redirect"] == "/login/totp"  # no next at all
    # Fetched without htmx (a script, a prefetch): a fragment route is never a target either.
    fetched = await client.get("/notifications/unread-count")
    assert fetched.status_code == 303 and _next_of(fetched.headers["location"]) is None
    xhr = await client.get("/account", headers={"Sec-Fetch-Mode": "cors"})
    assert xhr.status_code == 303 and _next_of(xhr.headers["location"]) is None
    # A real navigation is remembered, query and all, and the step then goes there.
    nav = await client.get("/account?tab=1", headers={"Sec-Fetch-Mode": "navigate"})
    assert nav.status_code == 303 and _next_of(nav.headers["location"]) == "/account?tab=1"
    boosted = await client.get("/account", headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert boosted.headers["HX-Redirect"] == "/login/totp?next=/account"
    csrf = await page_csrf(client, "/login/totp?next=/account/sessions")
    passed = await client.post(
        "/login/totp", data={"_csrf": csrf, "code": totp.now(), "next": "/account/sessions"}
    )
    assert passed.status_code == 303 and passed.headers["location"] == "/account/sessions"


async def test_signed_out_only_navigations_become_next(client):
    page = await client.get("/account/sessions?x=1")
    assert page.status_code == 303
    assert _next_of(page.headers["location"]) == "/account/sessions?x=1"
    poll = await client.get("/notifications/unread-count", headers={"HX-Request": "true"})
    assert poll.status_code == 200 and poll.headers["HX-Redirect"] == "/login"
    fragment = await client.get("/notifications/unread-count")
    assert fragment.status_code == 303 and fragment.headers["location"] == "/login"
    api = await client.get("/api/v1/account")
    assert api.status_code == 401  # the API answers, never redirects

"""Small helpers for the identity tests: CSRF from real pages, audit rows, valid ID numbers."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import uuid

from httpx import AsyncClient, Response

from tests.factories import csrf_from

SESSION_COOKIE = "__Host-canal_session"
_seq = itertools.count(random.randint(0, 500))


async def page_csrf(client: AsyncClient, url: str = "/login") -> str:
    page = await client.get(url)
    assert page.status_code == 200, page.text
    return csrf_from(page.text)


async def api_csrf(client: AsyncClient) -> str:
    answer = await client.get("/api/v1/auth/csrf")
    assert answer.status_code == 200
    token = answer.json()["csrf_token"]
    assert token
    return token


async def form_login(client: AsyncClient, login: str, password: str, **extra: str) -> Response:
    csrf = await page_csrf(client, "/login")
    return await client.post(
        "/login", data={"_csrf": csrf, "login": login, "password": password, **extra}
    )


async def audit_actions(actor_id: uuid.UUID) -> list[str]:
    """Actions recorded for ``actor_id``, oldest first (read in platform scope, as an auditor)."""
    from canal.platform import db
    from canal.platform.audit.tables import AuditEvent

    async with db.platform_scope():
        rows = (
            await AuditEvent.select(AuditEvent.action)
            .where(AuditEvent.actor_id == actor_id)
            .order_by(AuditEvent.seq)
        )
    return [r["action"] for r in rows]


async def user_row(user_id: uuid.UUID) -> dict:
    from canal.platform.identity.tables import User

    row = await User.select().where(User.id == user_id).first()
    assert row is not None
    return row


def id_number(birth: dt.date | None = None, female: bool = False) -> str:
    """A valid, run-unique 18-character resident ID number (GB 11643 check character, a
    county in force per GB/T 2260)."""
    from canal.platform.identity.validators import id_number_check_char
    from canal.platform.regions import county_codes

    n = next(_seq)
    birth = birth or dt.date(1950, 1, 1) + dt.timedelta(days=random.randint(0, 20000))
    serial = (n % 500) * 2 + (0 if female else 1)
    first17 = f"{random.choice(county_codes())}{birth:%Y%m%d}{serial:03d}"
    return first17 + id_number_check_char(first17)


def problem_fields(answer: Response) -> dict[str, str]:
    body = answer.json()
    return {e["field"]: e["code"] for e in body.get("errors", [])}


async def pass_the_wait(user_id: uuid.UUID) -> None:
    """Time passes: every throttling wait of the account is over (its counts stay)."""
    from canal.platform.identity import throttle
    from canal.platform.identity.tables import User

    key = throttle._account_key(user_id)
    for field in await throttle._redis.hkeys(key):
        if field.startswith(b"until:"):
            await throttle._redis.hset(key, field, 0)
    await User.update({User.locked_until: None}).where(User.id == user_id)

"""Authentication: who is asking, from a session cookie or a bearer API token.

Runs as ASGI middleware before routing, puts a ``Principal`` (or None) in ``scope["user"]``.
It never rejects a request itself: the access guard decides what an anonymous caller may see.
"""

from __future__ import annotations

import datetime as dt
import time

from litestar.types import ASGIApp, Receive, Scope, Send

from canal.platform import clock
from canal.platform.http.context import Principal
from canal.platform.identity.secrets import API_TOKEN_PREFIX, token_hash
from canal.platform.settings import Settings

# A resolved token is trusted for this long before it is looked up again; revoking a token or
# a session clears this cache at once here and, by a Redis notice, in the other processes.
_CACHE_SECONDS = 15.0
_cache: dict[str, tuple[float, Principal | None]] = {}


def session_cookie_name(settings: Settings) -> str:
    return "__Host-canal_session" if settings.secure_cookies else "canal_session"


def forget(token_digest: str | None = None, *, broadcast_change: bool = True) -> None:
    """Drop resolved sessions/tokens (all, or one by digest) here and in other processes."""
    if token_digest is None:
        _cache.clear()
    else:
        _cache.pop(token_digest, None)
    if broadcast_change:
        from canal.platform.invalidation import broadcast

        broadcast("auth", token_digest or "")


async def _principal_from_session(digest: str) -> Principal | None:
    from canal.platform.identity.tables import User, UserSession

    now = clock.now()
    rows = (
        await UserSession.select(
            UserSession.id,
            UserSession.csrf_token,
            UserSession.mfa_passed,
            UserSession.last_seen_at,
            UserSession.user.id,
            UserSession.user.display_name,
            UserSession.user.locale,
            UserSession.user.care_mode,
            UserSession.user.totp_enabled,
            UserSession.user.is_active,
        )
        .where(
            (UserSession.token_hash == digest)
            & (UserSession.revoked_at.is_null())
            & (UserSession.expires_at > now)
        )
        .first()
    )
    if rows is None or not rows["user.is_active"]:
        return None
    if now - rows["last_seen_at"] > dt.timedelta(minutes=5):
        await UserSession.update({UserSession.last_seen_at: now}).where(
            UserSession.id == rows["id"]
        )
    del User
    return Principal(
        user_id=rows["user.id"],
        display_name=rows["user.display_name"],
        via="session",
        session_id=rows["id"],
        csrf_token=rows["csrf_token"],
        mfa_passed=rows["mfa_passed"],
        locale=rows["user.locale"],
        care_mode=rows["user.care_mode"],
        totp_enabled=rows["user.totp_enabled"],
    )


async def _principal_from_token(digest: str) -> Principal | None:
    from canal.platform.identity.tables import ApiToken

    now = clock.now()
    row = (
        await ApiToken.select(
            ApiToken.id,
            ApiToken.tenant,
            ApiToken.expires_at,
            ApiToken.last_used_at,
            ApiToken.user.id,
            ApiToken.user.display_name,
            ApiToken.user.locale,
            ApiToken.user.is_active,
            ApiToken.user.totp_enabled,
        )
        .where((ApiToken.token_hash == digest) & (ApiToken.revoked_at.is_null()))
        .first()
    )
    if row is None or not row["user.is_active"]:
        return None
    if row["expires_at"] is not None and row["expires_at"] <= now:
        return None
    if row["last_used_at"] is None or now - row["last_used_at"] > dt.timedelta(minutes=5):
        await ApiToken.update({ApiToken.last_used_at: now}).where(ApiToken.id == row["id"])
    return Principal(
        user_id=row["user.id"],
        display_name=row["user.display_name"],
        via="token",
        token_tenant=row["tenant"],
        locale=row["user.locale"],
        mfa_passed=True,
        totp_enabled=row["user.totp_enabled"],
    )


async def resolve_principal(cookie_token: str | None, bearer: str | None) -> Principal | None:
    if bearer:
        if not bearer.startswith(API_TOKEN_PREFIX):
            return None
        digest, loader = token_hash(bearer), _principal_from_token
    elif cookie_token:
        digest, loader = token_hash(cookie_token), _principal_from_session
    else:
        return None
    cached = _cache.get(digest)
    now = time.monotonic()
    if cached and cached[0] > now:
        return cached[1]
    principal = await loader(digest)
    if len(_cache) > 50_000:
        _cache.clear()
    _cache[digest] = (now + _CACHE_SECONDS, principal)
    return principal


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                k, _, v = part.strip().partition("=")
                if k == name:
                    return v
    return None


def _bearer(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"authorization":
            text = value.decode("latin-1")
            if text[:7].lower() == "bearer ":
                return text[7:].strip()
    return None


class AuthenticationMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.cookie_name = session_cookie_name(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            bearer = _bearer(scope)
            cookie = None if bearer else _cookie(scope, self.cookie_name)
            scope["user"] = await resolve_principal(cookie, bearer)
            scope["auth"] = "token" if bearer else ("session" if cookie else None)
        await self.app(scope, receive, send)

"""CSRF protection for every state-changing request made with a cookie.

Signed-in browsers use the synchronizer token stored on their server-side session; anonymous
forms (sign-up, sign-in, reset) use a double-submit cookie. The token travels in the
``X-CSRF-Token`` header (htmx adds it from ``<body hx-headers>``) or the ``_csrf`` form field.
Requests authenticated by a bearer API token carry no ambient credentials and are exempt.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any, cast

from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from canal.platform.http.context import Principal
from canal.platform.http.errors import CanalError
from canal.platform.settings import Settings

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
HEADER = b"x-csrf-token"
FIELD = "_csrf"


def anon_cookie_name(settings: Settings) -> str:
    return "__Host-canal_csrf" if settings.secure_cookies else "canal_csrf"


def csrf_failed() -> CanalError:
    return CanalError(
        "csrf_failed",
        "页面已过期或请求来源无法验证,请刷新页面后重试。",
        "This form has expired or its origin could not be verified; reload the page and try again.",
        status=403,
    )


class CSRFMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.cookie_name = anon_cookie_name(settings)
        self.secure = settings.secure_cookies

    def _cookie(self, scope: Scope) -> str | None:
        for key, value in scope.get("headers", []):
            if key == b"cookie":
                for part in value.decode("latin-1").split(";"):
                    k, _, v = part.strip().partition("=")
                    if k == self.cookie_name:
                        return v
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        principal = scope.get("user")
        state: dict[str, Any] = scope.setdefault("state", {})
        if scope.get("auth") == "token":
            await self.app(scope, receive, send)
            return
        # Machine-to-machine callbacks (the Stripe webhook) carry no cookie and no token; they
        # authenticate by a signature over the body, checked by the handler. Only a *public*
        # route may opt out, so no cookie-authenticated action can ever skip the check.
        handler = scope.get("route_handler")
        handler_opt = getattr(handler, "opt", None) or {}
        if handler_opt.get("csrf_exempt") and handler_opt.get("access") == "public":
            await self.app(scope, receive, send)
            return
        anon = self._cookie(scope)
        expected = principal.csrf_token if isinstance(principal, Principal) else anon
        if cast("HTTPScope", scope)["method"] in SAFE_METHODS:
            new_cookie = None
            if expected is None:
                expected = new_cookie = secrets.token_urlsafe(32)
            state["csrf_token"] = expected
            if new_cookie is None:
                await self.app(scope, receive, send)
                return
            await self.app(scope, receive, self._setting_cookie(send, new_cookie))
            return
        presented: str | None = None
        for key, raw in scope.get("headers", []):
            if key == HEADER:
                presented = raw.decode("latin-1")
        if presented is None:
            request = scope["litestar_app"].request_class(scope=scope, receive=receive)
            content_type, _ = request.content_type
            if content_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
                form = await request.form()
                field = form.get(FIELD)
                presented = field if isinstance(field, str) else None
        if not expected or not presented or not hmac.compare_digest(presented, expected):
            from canal.platform.http.errors import render_error

            request = scope["litestar_app"].request_class(scope=scope, receive=receive)
            response = render_error(request, csrf_failed())
            await response.to_asgi_response(app=None, request=request)(scope, receive, send)
            return
        state["csrf_token"] = expected
        await self.app(scope, receive, send)

    def _setting_cookie(self, send: Send, token: str) -> Send:
        attrs = f"{self.cookie_name}={token}; Path=/; SameSite=Lax; HttpOnly"
        if self.secure:
            attrs += "; Secure"

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"set-cookie", attrs.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        return wrapped

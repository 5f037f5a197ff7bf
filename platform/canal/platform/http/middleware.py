"""Request id, structured access log, security headers and Prometheus metrics."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from typing import cast

from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
from prometheus_client import Counter, Histogram

from canal.platform.http.input import has_nul

log = logging.getLogger("canal.http")

REQUESTS = Counter("canal_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "canal_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

# Browsers apply form-action to the redirects that follow a form post too: the pay, subscribe,
# billing-portal and payout-onboarding forms answer a 303 to Stripe's hosted pages, which
# Chromium refuses unless those origins are named here.
STRIPE_HOSTED_PAGES = (
    "https://checkout.stripe.com",
    "https://billing.stripe.com",
    "https://connect.stripe.com",
)
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; font-src 'self' data:; object-src 'none'; "
    f"base-uri 'self'; form-action 'self' {' '.join(STRIPE_HOSTED_PAGES)}; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"x-frame-options", b"DENY"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


async def add_security_headers(message: Message, scope: Scope) -> None:
    """The app's ``before_send`` hook: every answer carries the security headers and a
    request id — also those made outside any route (404 and 405 from routing, an error raised
    by a middleware), which never pass through ``RequestContextMiddleware``."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers", []))
    present = {k.lower() for k, _ in headers}
    headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
    if b"x-request-id" not in present:
        state = scope.setdefault("state", {})
        request_id = state.setdefault("request_id", uuid.uuid4().hex)
        headers.append((b"x-request-id", request_id.encode()))
    message["headers"] = headers


class RequestContextMiddleware:
    """Outermost layer of a route: a request id, the metrics and a log line; a NUL byte in the
    path or the query string is refused here, before anything reads them."""

    def __init__(self, app: ASGIApp, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for key, value in scope.get("headers", []):
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_holder = {"status": 500}
        lang_cookie = _lang_cookie(scope)

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                if lang_cookie:
                    headers.append((b"set-cookie", lang_cookie))
                message = {**message, "headers": headers}
            await send(message)

        try:
            raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogatepass")
            if has_nul(raw_path) or has_nul(scope.get("query_string", b"")):
                await _refuse_nul(scope, receive, wrapped)
                return
            await self.app(scope, receive, wrapped)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("path_template") or _route_label(scope)
            status = status_holder["status"]
            REQUESTS.labels(cast("HTTPScope", scope)["method"], route, str(status)).inc()
            LATENCY.labels(cast("HTTPScope", scope)["method"], route).observe(elapsed)
            if self.access_log:
                # One JSON line per request, written straight to stdout: the logging module's
                # record/handler/lock path costs ~60 µs a request, more than a bare endpoint.
                sys.stdout.write(
                    json.dumps(
                        {
                            "event": "request",
                            "request_id": request_id,
                            "method": cast("HTTPScope", scope)["method"],
                            "path": scope["path"],
                            "status": status,
                            "ms": round(elapsed * 1000, 2),
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )


async def _refuse_nul(scope: Scope, receive: Receive, send: Send) -> None:
    from canal.platform.http.errors import CanalError, render_error

    request = scope["litestar_app"].request_class(scope=scope, receive=receive)
    error = CanalError(
        "nul_character",
        "网址中不能包含空字符(U+0000)。",
        "The address may not contain a NUL character (U+0000).",
        status=400,
    )
    response = render_error(request, error)
    await response.to_asgi_response(app=None, request=request)(scope, receive, send)


def _lang_cookie(scope: Scope) -> bytes | None:
    """``?lang=en`` switches the language for this request and remembers it in a cookie."""
    query = scope.get("query_string", b"").decode("latin-1")
    if "lang=" not in query:
        return None
    from urllib.parse import parse_qs

    from canal.web.i18n import LANG_COOKIE, normalise

    lang = normalise((parse_qs(query).get("lang") or [""])[0])
    if not lang:
        return None
    return f"{LANG_COOKIE}={lang}; Path=/; SameSite=Lax; Max-Age=31536000".encode()


def _route_label(scope: Scope) -> str:
    handler = scope.get("route_handler")
    paths = getattr(handler, "paths", None)
    if paths:
        return sorted(paths)[0]
    return "unmatched"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if message.startswith("{"):
            return message
        payload = {"level": record.levelname.lower(), "logger": record.name, "message": message}
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


def configure_logging(json_logs: bool, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    if json_logs:
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("canal.http").setLevel(level)
    # casbin prints its whole model at INFO on every enforcer start.
    logging.getLogger("casbin").setLevel(logging.WARNING)

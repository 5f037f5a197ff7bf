"""Errors a person can act on: a stable code and a message in Chinese and English.

The API answers RFC 9457 problem+json; pages get a generic error page (or an htmx fragment)
that never shows internals. Raising ``CanalError`` anywhere in a request rolls back the
transaction it was in, so a refused request changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

log = logging.getLogger("canal.errors")


@dataclass
class FieldError:
    field: str
    code: str
    zh: str
    en: str

    def for_locale(self, locale: str) -> dict[str, str]:
        return {
            "field": self.field,
            "code": self.code,
            "message": self.zh if locale.startswith("zh") else self.en,
        }


@dataclass
class CanalError(Exception):
    code: str
    zh: str
    en: str
    status: int = 400
    errors: Sequence[FieldError] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        super().__init__(self.en)

    def message(self, locale: str) -> str:
        return self.zh if locale.startswith("zh") else self.en


def not_found() -> CanalError:
    return CanalError("not_found", "页面或对象不存在。", "Not found.", status=404)


def invalid(field_errors: Sequence[FieldError]) -> CanalError:
    return CanalError(
        "invalid_input",
        "提交的内容有误,请按提示修改。",
        "Some fields need correcting.",
        status=422,
        errors=tuple(field_errors),
    )


# Standard answers for framework-raised errors, keyed by status.
_STANDARD: dict[int, tuple[str, str, str]] = {
    400: ("bad_request", "请求格式有误。", "The request is malformed."),
    401: ("not_authenticated", "请先登录。", "Please sign in first."),
    403: ("forbidden", "您没有执行此操作的权限。", "You are not allowed to do this."),
    404: ("not_found", "页面或对象不存在。", "Not found."),
    405: ("method_not_allowed", "不支持此请求方法。", "Method not allowed."),
    413: ("too_large", "提交的内容过大。", "The request is too large."),
    429: ("too_many_requests", "请求过于频繁,请稍后再试。", "Too many requests; try again later."),
    500: ("internal_error", "服务器开小差了,请稍后再试。", "Something went wrong on our side."),
}


def standard_error(status: int) -> CanalError:
    code, zh, en = _STANDARD.get(status, _STANDARD[500] if status >= 500 else _STANDARD[400])
    return CanalError(code, zh, en, status=status)


def _locale(request: Request[Any, Any, Any]) -> str:
    from canal.web.i18n import request_locale

    return request_locale(request)


def wants_json(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.startswith("/api/") or (
        "application/json" in request.headers.get("accept", "")
        and "text/html" not in request.headers.get("accept", "")
    )


def navigation_path(request: Request[Any, Any, Any]) -> str | None:
    """The path (with query) to come back to after signing in, or None.

    Only a page the person navigated to may become ``next``: a GET that is not an API call, not
    an htmx fragment request (a boosted link is a navigation), not a browser fetch/XHR
    (``Sec-Fetch-Mode``), and not a route marked ``opt["fragment"]`` (a piece of a page such as
    the header's unread badge). Otherwise a background poll that met an expired session or the
    TOTP step would send the person to a bare fragment afterwards.
    """
    if request.method != "GET" or wants_json(request):
        return None
    headers = request.headers
    if headers.get("hx-boosted") != "true":
        if headers.get("hx-request") == "true":
            return None
        mode = headers.get("sec-fetch-mode")
        if mode is not None and mode != "navigate":
            return None
    handler = request.scope.get("route_handler")
    if handler is not None and handler.opt.get("fragment"):
        return None
    path = "/" + request.url.path.lstrip("/")
    return f"{path}?{request.url.query}" if request.url.query else path


def render_error(request: Request[Any, Any, Any], error: CanalError) -> Response[Any]:
    if error.code == "mfa_required" and not wants_json(request):
        # A page that needs two-factor: go to the TOTP step (or its set-up) instead.
        from canal.platform.identity.controllers import mfa_redirect

        redirect = mfa_redirect(request, error)
        if redirect is not None:
            return redirect
    locale = _locale(request)
    if wants_json(request):
        body: dict[str, Any] = {
            "type": f"https://canal.local/problems/{error.code}",
            "title": error.message(locale),
            "status": error.status,
            "code": error.code,
            "detail": error.message(locale),
            "detail_zh": error.zh,
            "detail_en": error.en,
        }
        request_id = request.scope.get("state", {}).get("request_id")
        if request_id:
            body["request_id"] = request_id
        if error.errors:
            body["errors"] = [e.for_locale(locale) for e in error.errors]
        return Response(body, status_code=error.status, media_type="application/problem+json")
    from canal.web.render import render_error_page

    return render_error_page(request, error, locale)


def canal_error_handler(request: Request[Any, Any, Any], exc: CanalError) -> Response[Any]:
    return render_error(request, exc)


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, ValidationException):
        field_errors = []
        for item in exc.extra or []:
            if isinstance(item, dict):
                name = str(item.get("key") or item.get("source") or "body")
                message = str(item.get("message", ""))
                field_errors.append(
                    FieldError(
                        name,
                        "invalid",
                        f"字段 {name} 不符合要求:{message}",
                        f"Field {name} is invalid: {message}",
                    )
                )
        error = CanalError(
            "invalid_input",
            "提交的内容格式有误。",
            f"The input is invalid: {exc.detail}",
            status=400,
            errors=tuple(field_errors),
        )
        return render_error(request, error)
    if isinstance(exc, NotAuthorizedException) and not wants_json(request):
        from urllib.parse import quote

        from canal.web.render import redirect

        here = navigation_path(request)
        # htmx follows HX-Redirect with a full page load; a plain redirect would be swapped in.
        return redirect(request, f"/login?next={quote(here, safe='/')}" if here else "/login")
    return render_error(request, standard_error(exc.status_code))


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    return render_error(request, standard_error(HTTP_500_INTERNAL_SERVER_ERROR))

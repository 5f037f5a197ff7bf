"""Rendering pages: one template serves the full page and, for htmx, its fragment.

``page(request, "x.html", ctx)`` renders the whole page for a normal request and only the
template's ``content`` block (or a named block) for an htmx request that targets it.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request, Response
from litestar.enums import MediaType
from litestar.response import Redirect

from canal.web.i18n import HTML_LANG, gettext, request_locale

TEMPLATE_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")

_extra_dirs: list[Path] = []


def add_template_dir(path: Path) -> None:
    """Domains keep their templates beside their code; the app factory registers them."""
    if path not in _extra_dirs:
        _extra_dirs.append(path)
        environment.cache_clear()


@lru_cache(maxsize=1)
def environment() -> Environment:
    loader = ChoiceLoader(
        [FileSystemLoader(str(TEMPLATE_DIR))] + [FileSystemLoader(str(d)) for d in _extra_dirs]
    )
    env = Environment(
        loader=loader,
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        enable_async=False,
    )
    env.filters["beijing_time"] = beijing_time
    env.filters["local_date"] = local_date
    return env


# The display time zone. The web layer imports nothing of the platform, so the platform hands it
# over at start-up (``use_display_timezone(clock.display_tz())``); until then, China's UTC+8.
_display_tz: dt.tzinfo = dt.timezone(dt.timedelta(hours=8), "CST")


def use_display_timezone(tz: dt.tzinfo) -> None:
    global _display_tz
    _display_tz = tz


def beijing_time(value: dt.datetime | str | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored (UTC) time as people here read it; templates: ``{{ t | beijing_time }}``. An
    ISO string (a time kept inside JSON, e.g. an application's history) is read first."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(_display_tz).strftime(fmt)


def local_date(value: dt.datetime | dt.date | None) -> str:
    """The day a stored (UTC) moment fell on here: ``{{ row.submitted_at | local_date }}``. A
    plain date is already a local day and is shown as it is."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return beijing_time(value, "%Y-%m-%d")
    return value.isoformat()


def base_context(request: Request[Any, Any, Any]) -> dict[str, Any]:
    locale = request_locale(request)
    state = request.scope.get("state", {})
    principal = request.scope.get("user")
    tenant_ctx = state.get("tenant_ctx")

    def _(text: str, **params: Any) -> str:
        return gettext(locale, text, **params)

    return {
        "_": _,
        "locale": locale,
        "lang_attr": HTML_LANG.get(locale, "zh-CN"),
        "csrf_token": state.get("csrf_token"),
        "principal": principal,
        "tenant": tenant_ctx.tenant if tenant_ctx else None,
        "my_tenants": state.get("my_tenants", []),
        "nav": state.get("nav", []),
        # Signed in: the account's choice; anonymous: the browser's cookie.
        "care_mode": bool(principal.care_mode)
        if principal is not None
        else request.cookies.get("canal_care") == "1",
        # "//host/x" would make the language links leave the site: one leading slash only.
        "request_path": "/" + request.url.path.lstrip("/"),
        # The header bell: its count comes from a before_request hook
        # (canal.platform.notifications.controllers.populate_unread); None = not counted,
        # and the badge then fetches it on load.
        # Not while the TOTP step is pending: that person sees nothing of the account yet.
        "show_inbox": principal is not None and principal.fully_signed_in,
        "unread_count": state.get("unread_count"),
        "flash": state.get("flash"),
        "request_id": state.get("request_id", ""),
    }


def render_html(
    request: Request[Any, Any, Any],
    template: str,
    context: dict[str, Any],
    block: str | None = None,
) -> str:
    env = environment()
    tmpl = env.get_template(template)
    ctx = base_context(request) | context
    if block is None:
        return tmpl.render(ctx)
    return "".join(tmpl.blocks[block](tmpl.new_context(ctx)))


def is_htmx_fragment(request: Request[Any, Any, Any]) -> bool:
    headers = request.headers
    return headers.get("hx-request") == "true" and headers.get("hx-boosted") != "true"


def page(
    request: Request[Any, Any, Any],
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    block: str = "content",
) -> Response[str]:
    context = context or {}
    fragment = block if is_htmx_fragment(request) else None
    html = render_html(request, template, context, fragment)
    return Response(html, status_code=status, media_type=MediaType.HTML)


def redirect(request: Request[Any, Any, Any], url: str) -> Response[Any]:
    """After a successful form post: htmx follows HX-Redirect, browsers a 303."""
    if request.headers.get("hx-request") == "true":
        return Response("", status_code=200, headers={"HX-Redirect": url})
    return Redirect(url, status_code=303)


def render_error_page(request: Request[Any, Any, Any], error: Any, locale: str) -> Response[str]:
    context = {
        "error_title": error.message(locale),
        "error_message": error.message(locale),
        "status": error.status,
        "code": error.code,
        "field_errors": [e.for_locale(locale) for e in getattr(error, "errors", ())],
    }
    try:
        html = render_html(
            request, "errors/error.html", context, "content" if is_htmx_fragment(request) else None
        )
    except Exception:  # the error page must never fail
        html = f"<h1>{error.status}</h1><p>{error.zh}</p><p>{error.en}</p>"
    headers = {}
    if is_htmx_fragment(request):
        # Show the problem where the form is, instead of swapping nothing.
        headers = {"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"}
    return Response(html, status_code=error.status, media_type=MediaType.HTML, headers=headers)

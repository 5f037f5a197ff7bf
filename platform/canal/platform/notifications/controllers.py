"""The inbox (/notifications), the header badge's count, the preferences page
(/account/notifications), and their JSON twins under /api/v1."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
from litestar import Request, Response, get, post, put
from litestar.enums import MediaType
from litestar.params import FromPath, FromQuery, JSONBody

from canal.platform import clock
from canal.platform.http.tenancy import current_principal
from canal.platform.notifications import services
from canal.web.i18n import request_locale
from canal.web.render import is_htmx_fragment, page, redirect, render_html

Req = Request[Any, Any, Any]


def when(value: dt.datetime | None) -> str:
    """A moment as people here read it: Beijing time, to the minute."""
    return clock.local(value).strftime("%Y-%m-%d %H:%M") if value else "—"


USER = {"access": "user"}
TAGS = ["notifications"]
INBOX = "notifications/inbox.html"
BADGE = "components/unread_badge.html"


class NotificationOut(msgspec.Struct):
    id: uuid.UUID
    kind: str
    tenant_id: uuid.UUID | None
    title: str  # in the request's language
    body: str
    link: str
    created_at: dt.datetime
    read_at: dt.datetime | None


class InboxOut(msgspec.Struct):
    items: list[NotificationOut]
    unread: int
    # Pass as ``before`` for the next, older page; null on the last page.
    next_before: dt.datetime | None


class UnreadOut(msgspec.Struct):
    unread: int


class ReadOut(msgspec.Struct):
    changed: int
    unread: int


class ChannelsIn(msgspec.Struct):
    email: bool = False
    sms: bool = False


class PreferenceOut(msgspec.Struct):
    kind: str
    name: str
    email: bool
    sms: bool
    in_app: bool = True
    email_required: bool = False


def _out(view: services.NotificationView) -> NotificationOut:
    return NotificationOut(
        id=view.id,
        kind=view.kind,
        tenant_id=view.tenant,
        title=view.title,
        body=view.body,
        link=view.link,
        created_at=view.created_at,
        read_at=view.read_at,
    )


def _html(html: str, status: int = 200) -> Response[str]:
    return Response(html, status_code=status, media_type=MediaType.HTML)


async def _inbox_page(request: Req, unread_only: bool, before: dt.datetime | None) -> Response[str]:
    principal = current_principal(request)
    result = await services.inbox(
        principal.user_id, request_locale(request), unread_only=unread_only, before=before
    )
    context = {"result": result, "unread_only": unread_only, "when": when}
    request.scope.setdefault("state", {})["unread_count"] = result.unread
    return page(request, INBOX, context)


@get("/notifications", opt=USER, include_in_schema=False)
async def inbox_page(
    request: Req, unread: FromQuery[bool] = False, before: FromQuery[dt.datetime | None] = None
) -> Response[str]:
    return await _inbox_page(request, unread, before)


@get("/api/v1/notifications", opt=USER, tags=TAGS, summary="My notifications, newest first")
async def inbox_api(
    request: Req,
    unread: FromQuery[bool] = False,
    before: FromQuery[dt.datetime | None] = None,
    limit: FromQuery[int] = services.PAGE_SIZE,
) -> InboxOut:
    principal = current_principal(request)
    result = await services.inbox(
        principal.user_id, request_locale(request), unread_only=unread, before=before, limit=limit
    )
    return InboxOut([_out(v) for v in result.items], result.unread, result.next_before)


# A piece of the header, polled by htmx: never a page to return to after signing in.
@get("/notifications/unread-count", opt={**USER, "fragment": True}, include_in_schema=False)
async def unread_badge(request: Req) -> Response[str]:
    count = await services.unread_count(current_principal(request).user_id)
    return _html(render_html(request, BADGE, {"unread_count": count}))


@get(
    "/api/v1/notifications/unread-count",
    opt=USER,
    tags=TAGS,
    summary="How many of my notifications are unread",
)
async def unread_api(request: Req) -> UnreadOut:
    return UnreadOut(await services.unread_count(current_principal(request).user_id))


@get("/notifications/{notification_id:uuid}", opt=USER, include_in_schema=False)
async def open_notification(request: Req, notification_id: FromPath[uuid.UUID]) -> Response[Any]:
    """Opening a notification marks it read and follows its link (or shows it)."""
    principal = current_principal(request)
    view = await services.get_notification_for_user(
        notification_id, principal.user_id, request_locale(request)
    )
    await services.mark_read(notification_id, principal.user_id)
    if view.link:
        return redirect(request, view.link)
    return page(request, "notifications/detail.html", {"n": view, "when": when})


@get(
    "/api/v1/notifications/{notification_id:uuid}",
    opt=USER,
    tags=TAGS,
    summary="One of my notifications",
)
async def notification_api(request: Req, notification_id: FromPath[uuid.UUID]) -> NotificationOut:
    view = await services.get_notification_for_user(
        notification_id, current_principal(request).user_id, request_locale(request)
    )
    return _out(view)


async def _after_change(request: Req) -> Response[Any]:
    """htmx: the refreshed list plus the header badge (out of band); browsers: back to it."""
    if not is_htmx_fragment(request):
        return redirect(request, "/notifications")
    principal = current_principal(request)
    unread_only = request.query_params.get("unread") in {"1", "true"}
    result = await services.inbox(
        principal.user_id, request_locale(request), unread_only=unread_only
    )
    context = {"result": result, "unread_only": unread_only, "when": when}
    html = render_html(request, INBOX, context, "inbox") + render_html(
        request, BADGE, {"unread_count": result.unread, "oob": True}
    )
    return _html(html)


@post("/notifications/{notification_id:uuid}/read", opt=USER, include_in_schema=False)
async def mark_read_form(request: Req, notification_id: FromPath[uuid.UUID]) -> Response[Any]:
    await services.mark_read(notification_id, current_principal(request).user_id)
    return await _after_change(request)


@post("/notifications/read-all", opt=USER, include_in_schema=False)
async def mark_all_read_form(request: Req) -> Response[Any]:
    await services.mark_all_read(current_principal(request).user_id)
    return await _after_change(request)


@post(
    "/api/v1/notifications/{notification_id:uuid}/read",
    opt=USER,
    tags=TAGS,
    summary="Mark one of my notifications read",
    status_code=200,
)
async def mark_read_api(request: Req, notification_id: FromPath[uuid.UUID]) -> ReadOut:
    user_id = current_principal(request).user_id
    changed = await services.mark_read(notification_id, user_id)
    return ReadOut(int(changed), await services.unread_count(user_id))


@post(
    "/api/v1/notifications/read-all",
    opt=USER,
    tags=TAGS,
    summary="Mark all my notifications read",
    status_code=200,
)
async def mark_all_read_api(request: Req) -> ReadOut:
    user_id = current_principal(request).user_id
    changed = await services.mark_all_read(user_id)
    return ReadOut(changed, 0)


# --- preferences ------------------------------------------------------------------------------


def _pref_out(view: services.PreferenceView) -> PreferenceOut:
    return PreferenceOut(
        kind=view.kind,
        name=view.name,
        email=view.email,
        sms=view.sms,
        email_required=view.forced_email,
    )


async def _prefs_page(request: Req, *, saved: bool = False) -> Response[str]:
    principal = current_principal(request)
    prefs = await services.preferences(principal.user_id, request_locale(request))
    return page(request, "notifications/preferences.html", {"prefs": prefs, "saved": saved})


@get("/account/notifications", opt=USER, include_in_schema=False)
async def preferences_page(request: Req) -> Response[str]:
    return await _prefs_page(request, saved=request.query_params.get("done") == "saved")


@post("/account/notifications", opt=USER, include_in_schema=False)
async def preferences_form(request: Req) -> Response[Any]:
    form = await request.form()
    principal = current_principal(request)
    current = await services.preferences(principal.user_id, request_locale(request))
    # Unticked boxes are absent from the form: every listed kind is set from what arrived.
    choices = {
        p.kind: {"email": f"{p.kind}:email" in form, "sms": f"{p.kind}:sms" in form}
        for p in current
    }
    await services.set_preferences(principal.user_id, choices)
    return redirect(request, "/account/notifications?done=saved")


@get(
    "/api/v1/account/notifications",
    opt=USER,
    tags=TAGS,
    summary="My notification channels per kind",
)
async def preferences_api(request: Req) -> list[PreferenceOut]:
    prefs = await services.preferences(current_principal(request).user_id, request_locale(request))
    return [_pref_out(p) for p in prefs]


@put(
    "/api/v1/account/notifications",
    opt=USER,
    tags=TAGS,
    summary="Choose my notification channels per kind (kinds not sent keep theirs)",
)
async def set_preferences_api(
    request: Req, data: JSONBody[dict[str, ChannelsIn]]
) -> list[PreferenceOut]:
    user_id = current_principal(request).user_id
    await services.set_preferences(
        user_id, {kind: {"email": c.email, "sms": c.sms} for kind, c in data.items()}
    )
    prefs = await services.preferences(user_id, request_locale(request))
    return [_pref_out(p) for p in prefs]


ROUTES = [
    inbox_page,
    inbox_api,
    unread_badge,
    unread_api,
    open_notification,
    notification_api,
    mark_read_form,
    mark_all_read_form,
    mark_read_api,
    mark_all_read_api,
    preferences_page,
    preferences_form,
    preferences_api,
    set_preferences_api,
]


async def populate_unread(request: Any) -> None:
    """``before_request`` hook: the header badge's count for HTML pages of a signed-in person
    (one index-only query). Chain it after ``populate_shell``."""
    from canal.platform.http.context import Principal
    from canal.platform.http.errors import wants_json

    principal = request.scope.get("user")
    if not isinstance(principal, Principal) or wants_json(request):
        return
    if not principal.fully_signed_in:
        return  # password passed, two-factor step not yet: shown nothing of the account
    if request.headers.get("hx-request") == "true" and request.headers.get("hx-boosted") != "true":
        return  # fragments do not render the header
    state = request.scope.setdefault("state", {})
    state["unread_count"] = await services.unread_count(principal.user_id)

"""Audit trail pages and their JSON twins: a tenant's own trail, and the operator's view of
everything with the chain check."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.enums import MediaType
from litestar.params import FromPath, FromQuery

from canal.platform import db
from canal.platform.audit import services
from canal.platform.audit.schemas import AuditEventOut, AuditPageOut, VerifyOut
from canal.platform.audit.services import AuditEntry, AuditFilter, AuditPage
from canal.platform.audit.verify import VerifyResult, verify_with_pool
from canal.platform.http.errors import CanalError
from canal.platform.http.tenancy import current_principal, tenant_context
from canal.web.i18n import gettext, request_locale
from canal.web.render import is_htmx_fragment, page, render_html

TENANT_OPT = {"access": "tenant", "permission": ("audit", "read")}
OPERATOR_OPT = {"access": "platform", "permission": ("platform.audit", "read")}
TEMPLATE = "audit/trail.html"
ROWS_TARGET = "audit-rows"


def _label(entry: AuditEntry, locale: str) -> str:
    return gettext(locale, entry.label) if entry.label else entry.action


def _out(entry: AuditEntry, locale: str, *, with_tenant: bool) -> AuditEventOut:
    return AuditEventOut(
        seq=entry.seq,
        created_at=entry.created_at,
        action=entry.action,
        action_label=_label(entry, locale),
        actor_id=entry.actor_id,
        actor_name=entry.actor_name,
        target=entry.target,
        ip=entry.ip,
        data=entry.data,
        tenant_id=entry.tenant_id if with_tenant else None,
        tenant_name=entry.tenant_name if with_tenant else None,
    )


def _page_out(result: AuditPage, locale: str, *, with_tenant: bool) -> AuditPageOut:
    return AuditPageOut(
        [_out(e, locale, with_tenant=with_tenant) for e in result.entries], result.next_before
    )


def _verify_out(result: VerifyResult, locale: str) -> VerifyOut:
    return VerifyOut(
        result.ok,
        result.checked,
        result.head_seq,
        result.broken_seq,
        result.problem,
        result.summary(locale),
    )


def _render_trail(
    request: Request[Any, Any, Any],
    *,
    path: str,
    result: AuditPage | None,
    flt: AuditFilter,
    operator: bool,
    errors: list[dict[str, str]] | None = None,
    verify: VerifyResult | None = None,
    status: int = 200,
) -> Response[str]:
    locale = request_locale(request)
    next_url = None
    if result is not None and result.next_before is not None:
        next_url = path + "?" + urlencode(flt.query_args() | {"before": result.next_before})
    context = {
        "operator": operator,
        "path": path,
        "rows": [
            {"entry": e, "label": _label(e, locale)} for e in (result.entries if result else [])
        ],
        "filter": flt,
        "errors": errors or [],
        "next_url": next_url,
        "is_first_page": flt.before is None,
        "prefixes": services.ACTION_PREFIXES,
        "verify": verify,
        "verify_message": verify.summary(locale) if verify else "",
        "oob": False,
    }
    if is_htmx_fragment(request) and request.headers.get("hx-target") == ROWS_TARGET:
        # "Load more": the older rows go under the table, the link is replaced out of band.
        html = render_html(request, TEMPLATE, context, "rows") + render_html(
            request, TEMPLATE, context | {"oob": True}, "more"
        )
        return Response(html, status_code=status, media_type=MediaType.HTML)
    return page(request, TEMPLATE, context, status=status)


async def _trail_page(
    request: Request[Any, Any, Any],
    *,
    path: str,
    operator: bool,
    action: str | None,
    date_from: str | None,
    date_to: str | None,
    before: int | None,
    verify: VerifyResult | None = None,
) -> Response[str]:
    try:
        flt = services.parse_filter(
            action=action, date_from=date_from, date_to=date_to, before=before
        )
    except CanalError as error:
        locale = request_locale(request)
        raw = AuditFilter(action_prefix=(action or "")[:64])
        return _render_trail(
            request,
            path=path,
            result=None,
            flt=raw,
            operator=operator,
            errors=[e.for_locale(locale) for e in error.errors],
            status=error.status,
        )
    if operator:
        result = await services.platform_trail(current_principal(request).user_id, flt)
    else:
        result = await services.tenant_trail(tenant_context(request), flt)
    return _render_trail(
        request, path=path, result=result, flt=flt, operator=operator, verify=verify
    )


# --- a tenant's own trail -----------------------------------------------------------------


@get("/t/{tenant_slug:str}/audit", opt=TENANT_OPT, include_in_schema=False)
async def tenant_audit_page(
    request: Request[Any, Any, Any],
    tenant_slug: FromPath[str],
    action: FromQuery[str | None] = None,
    date_from: FromQuery[str | None] = None,
    date_to: FromQuery[str | None] = None,
    before: FromQuery[int | None] = None,
) -> Response[str]:
    return await _trail_page(
        request,
        path=f"/t/{tenant_slug}/audit",
        operator=False,
        action=action,
        date_from=date_from,
        date_to=date_to,
        before=before,
    )


@get("/api/v1/t/{tenant_slug:str}/audit", opt=TENANT_OPT, tags=["audit"])
async def tenant_audit_api(
    request: Request[Any, Any, Any],
    tenant_slug: FromPath[str],
    action: FromQuery[str | None] = None,
    date_from: FromQuery[str | None] = None,
    date_to: FromQuery[str | None] = None,
    before: FromQuery[int | None] = None,
    limit: FromQuery[int] = services.PAGE_SIZE,
) -> AuditPageOut:
    """This organisation's audit trail, newest first; page with ``before=next_before``."""
    flt = services.parse_filter(action=action, date_from=date_from, date_to=date_to, before=before)
    result = await services.tenant_trail(tenant_context(request), flt, limit=limit)
    return _page_out(result, request_locale(request), with_tenant=False)


# --- the operator's view of everything ----------------------------------------------------


@get("/operator/audit", opt=OPERATOR_OPT, include_in_schema=False)
async def operator_audit_page(
    request: Request[Any, Any, Any],
    action: FromQuery[str | None] = None,
    date_from: FromQuery[str | None] = None,
    date_to: FromQuery[str | None] = None,
    before: FromQuery[int | None] = None,
) -> Response[str]:
    return await _trail_page(
        request,
        path="/operator/audit",
        operator=True,
        action=action,
        date_from=date_from,
        date_to=date_to,
        before=before,
    )


@get("/api/v1/operator/audit", opt=OPERATOR_OPT, tags=["audit"])
async def operator_audit_api(
    request: Request[Any, Any, Any],
    action: FromQuery[str | None] = None,
    date_from: FromQuery[str | None] = None,
    date_to: FromQuery[str | None] = None,
    before: FromQuery[int | None] = None,
    limit: FromQuery[int] = services.PAGE_SIZE,
) -> AuditPageOut:
    """The whole platform's audit trail, newest first, with each event's organisation."""
    flt = services.parse_filter(action=action, date_from=date_from, date_to=date_to, before=before)
    result = await services.platform_trail(current_principal(request).user_id, flt, limit=limit)
    return _page_out(result, request_locale(request), with_tenant=True)


async def _verify_and_record(request: Request[Any, Any, Any]) -> VerifyResult:
    result = await verify_with_pool()
    principal = current_principal(request)
    operator = getattr(request.state, "operator", None)
    async with db.transaction():
        await services.record(
            "audit.verified",
            actor_id=principal.user_id,
            tenant_id=operator.id if operator else None,
            ip=request.client.host if request.client else "",
            data={
                "ok": result.ok,
                "checked": result.checked,
                "broken_seq": result.broken_seq,
                "problem": result.problem,
            },
        )
    return result


@post("/operator/audit/verify", opt=OPERATOR_OPT, include_in_schema=False, status_code=200)
async def operator_audit_verify(request: Request[Any, Any, Any]) -> Response[str]:
    """Check the whole chain now; htmx gets the result panel, a browser the page with it."""
    result = await _verify_and_record(request)
    if is_htmx_fragment(request):
        return page(
            request,
            TEMPLATE,
            {"verify": result, "verify_message": result.summary(request_locale(request))},
            block="verify_result",
        )
    return await _trail_page(
        request,
        path="/operator/audit",
        operator=True,
        action=None,
        date_from=None,
        date_to=None,
        before=None,
        verify=result,
    )


@post("/api/v1/operator/audit/verify", opt=OPERATOR_OPT, tags=["audit"], status_code=200)
async def operator_audit_verify_api(request: Request[Any, Any, Any]) -> VerifyOut:
    """Walk the whole hash chain and report the first edited, missing or moved record."""
    result = await _verify_and_record(request)
    return _verify_out(result, request_locale(request))


ROUTES = [
    tenant_audit_page,
    tenant_audit_api,
    operator_audit_page,
    operator_audit_api,
    operator_audit_verify,
    operator_audit_verify_api,
]

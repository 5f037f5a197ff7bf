"""Pages and JSON twins of the policy module (惠企政策).

Module routes are mounted at ``/t/{slug}/m/policy`` (pages) and ``/api/v1/t/{slug}/m/policy``
(API) by the app factory; the public catalogue (``PUBLIC_ROUTES``) lives at ``/policies``.
Controllers parse input, call one service and pick a template or a struct.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath, JSONBody
from litestar.response import Redirect
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from canal.park.policy import builder, criteria, services
from canal.park.policy.facts import FACTS, KNOWN_CERTIFICATIONS, FactType
from canal.platform.http.errors import CanalError, FieldError, invalid
from canal.platform.http.tenancy import tenant_context
from canal.platform.storage.services import DEFAULT_GET_EXPIRY, PURPOSES, object_store
from canal.web.i18n import request_locale
from canal.web.render import page, redirect

Req = Request[Any, Any, Any]
TAGS = ["policy"]
READ = {"access": "tenant", "permission": ("policy", "read")}
APPLY = {"access": "tenant", "permission": ("policy", "apply")}
REVIEW = {"access": "tenant", "permission": ("policy", "review")}
PUBLISH = {"access": "tenant", "permission": ("policy", "publish")}
PUBLIC = {"access": "public"}
UPLOAD_LIMIT = 5 * PURPOSES["document"].max_bytes


def _ip(request: Req) -> str:
    return request.client.host if request.client else ""


def _zh(request: Req) -> bool:
    return request_locale(request).startswith("zh")


def _errors(request: Req, exc: CanalError) -> list[dict[str, str]]:
    locale = request_locale(request)
    if exc.errors:
        return [e.for_locale(locale) for e in exc.errors]
    return [{"field": "", "code": exc.code, "message": exc.message(locale)}]


async def _form(request: Req) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _base(request: Req) -> str:
    return f"/t/{tenant_context(request).tenant.slug}/m/policy"


def _common(request: Req) -> dict[str, Any]:
    locale = request_locale(request)
    kind = tenant_context(request).tenant.kind
    return {
        "base": _base(request),
        "tenant_slug": tenant_context(request).tenant.slug,
        "authority_nav": kind in services.AUTHORITY_KINDS,
        "operator_nav": kind == "operator",
        "zh": locale.startswith("zh"),
        "lbl": lambda table, key: services.label(table, key, locale),
        "LEVELS": services.LEVELS,
        "SUPPORT_TYPES": services.SUPPORT_TYPES,
        "STATUSES": services.STATUSES,
        "GROUPS": services.GROUPS,
        "SOURCES": services.SOURCES,
        "FACTS": FACTS,
        "yuan": _yuan,
    }


def _yuan(fen: int | None) -> str:
    if fen is None:
        return "—"
    return f"{fen / 100:,.2f}"


def _source_label(source: str, zh: bool) -> str:
    if source.startswith("module:"):
        return ("模块提供:" if zh else "supplied by module ") + source[7:]
    a, b = services.SOURCES.get(source, (source, source))
    return a if zh else b


async def _upload_files(request: Req, field: str = "files") -> list[uuid.UUID]:
    """Store the form's files as the tenant's documents (type and size checked by storage)."""
    ctx = tenant_context(request)
    form = await request.form()
    ids = []
    for upload in form.getall(field) if field in form else []:
        if not isinstance(upload, UploadFile) or not upload.filename:
            continue

        async def chunks(u: UploadFile = upload) -> AsyncIterator[bytes]:
            try:
                while chunk := await u.read(1024 * 1024):
                    yield chunk
            finally:
                await u.close()

        stored = await object_store().upload(
            ctx, "document", chunks(), filename=upload.filename, ip=_ip(request)
        )
        ids.append(stored.id)
    return ids


# --- shapes ----------------------------------------------------------------------------------


class Done(msgspec.Struct):
    ok: bool


class FactOut(msgspec.Struct):
    fact: str
    label_zh: str
    label_en: str
    type: str
    value: Any
    source: str | None
    as_of: dt.date | None
    evidence: list[str]


class PortraitIn(msgspec.Struct, forbid_unknown_fields=True):
    facts: dict[str, Any]
    as_of: str | None = None
    evidence: list[uuid.UUID] = []


class PolicyIn(msgspec.Struct, forbid_unknown_fields=True):
    title: str
    issuer: str
    level: str
    support_type: str
    window_opens: str
    window_closes: str
    criteria: Any
    doc_number: str = ""
    published_on: str | None = None
    effective_on: str | None = None
    expires_on: str | None = None
    summary: str = ""
    full_text: str = ""
    amount_text: str = ""
    amount_max_yuan: float | None = None
    materials: list[str] = []
    publish: bool = False


class PolicySummary(msgspec.Struct):
    id: uuid.UUID
    status: str
    current_version: int
    title: str | None
    level: str | None
    window_closes: dt.date | None


class PolicyDetail(msgspec.Struct):
    id: uuid.UUID
    status: str
    current_version: int
    versions: list[dict[str, Any]]


class CreatedOut(msgspec.Struct):
    id: uuid.UUID
    status: str


class CriterionOut(msgspec.Struct):
    index: int
    met: bool
    requirement_zh: str
    requirement_en: str
    facts: list[dict[str, Any]]


class MatchOut(msgspec.Struct):
    policy_id: uuid.UUID
    title: str
    group: str
    version_number: int
    dismissed: bool
    window_opens: dt.date
    window_closes: dt.date
    missing_criterion: int | None
    criteria: list[CriterionOut]
    application_id: uuid.UUID | None


class ApplyIn(msgspec.Struct, forbid_unknown_fields=True):
    contact: str
    note: str = ""
    materials: list[uuid.UUID] = []


class ApplicationOut(msgspec.Struct):
    id: uuid.UUID
    policy_id: uuid.UUID
    policy_title: str
    version_number: int
    status: str
    amount_fen: int | None
    reason: str
    form: dict[str, Any]
    materials: list[dict[str, Any]]
    history: list[dict[str, Any]]
    rating: int | None
    submitted_at: dt.datetime


class ReviewOut(msgspec.Struct):
    id: uuid.UUID
    applicant_name: str
    policy_id: uuid.UUID
    policy_title: str
    version_number: int
    status: str
    amount_fen: int | None
    reason: str
    form: dict[str, Any]
    materials: list[dict[str, Any]]
    history: list[dict[str, Any]]
    rating: int | None
    submitted_at: dt.datetime
    overdue: bool


class DecideIn(msgspec.Struct, forbid_unknown_fields=True):
    action: str
    amount_yuan: float | None = None
    reason: str = ""


class ResubmitIn(msgspec.Struct, forbid_unknown_fields=True):
    note: str = ""
    materials: list[uuid.UUID] = []


class RateIn(msgspec.Struct, forbid_unknown_fields=True):
    rating: int
    comment: str = ""


class CatalogueOut(msgspec.Struct):
    total: int
    hits: list[dict[str, Any]]


def _application_out(r: dict[str, Any]) -> ApplicationOut:
    return ApplicationOut(
        r["id"],
        r["policy_id"],
        r["policy_title"],
        r["version_number"],
        r["status"],
        r["amount_fen"],
        r["reason"],
        r["form"],
        r["materials"],
        r["history"],
        r["rating"],
        r["submitted_at"],
    )


def _review_out(r: dict[str, Any]) -> ReviewOut:
    return ReviewOut(
        r["id"],
        r["applicant_name"],
        r["policy_id"],
        r["policy_title"],
        r["version_number"],
        r["status"],
        r["amount_fen"],
        r["reason"],
        r["form"],
        r["materials"],
        r["history"],
        r["rating"],
        r["submitted_at"],
        bool(services.overdue([r])),
    )


def _match_out(m: services.MatchView) -> MatchOut:
    return MatchOut(
        m.policy["id"],
        m.policy["title"],
        m.group,
        m.version_number,
        m.dismissed,
        m.policy["window_opens"],
        m.policy["window_closes"],
        m.result.missing_criterion,
        [
            CriterionOut(
                c.index,
                c.met,
                c.requirement_zh,
                c.requirement_en,
                [
                    {
                        "fact": name,
                        "value": _show(value),
                        "source": (m.facts.get(name) or {}).get("source"),
                        "as_of": (m.facts.get(name) or {}).get("as_of"),
                    }
                    for leaf in c.leaves
                    for name, value in leaf.values.items()
                ],
            )
            for c in m.result.criteria
        ],
        m.application_id,
    )


def _show(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return [
            f"{c.name} {c.valid_from.isoformat()}~{c.valid_to.isoformat()}"
            if hasattr(c, "valid_from")
            else str(c)
            for c in value
        ]
    return value


# --- module home ------------------------------------------------------------------------------


class HomeOut(msgspec.Struct):
    """The platform's module description (the shape of ``GET /api/v1/t/{slug}/m/{key}``,
    which this route takes over for the policy module) plus the module's own links."""

    key: str
    name_zh: str
    name_en: str
    summary_zh: str
    summary_en: str
    status: str
    allowed: bool
    enabled: bool
    plan: str | None
    plans: list[str]
    url: str
    authority: bool
    links: dict[str, str]


def _links(request: Req) -> dict[str, str]:
    base = _base(request)
    names = ("matches", "portrait", "applications", "policies", "queue", "stats")
    return {n: f"{base}/{n}" for n in names} | {"catalogue": "/policies"}


@get("/", opt=READ, include_in_schema=False)
async def home_page(request: Req) -> Response[str]:
    ctx = tenant_context(request)
    return page(
        request,
        "policy/home.html",
        {
            **_common(request),
            "authority": ctx.tenant.kind in services.AUTHORITY_KINDS,
            "links": _links(request),
        },
    )


@get("/", opt=READ, tags=TAGS, summary="The policy module's entry points")
async def home_api(request: Req) -> HomeOut:
    from canal.park.policy.module import MODULE

    ctx = tenant_context(request)
    return HomeOut(
        key=MODULE.key,
        name_zh=MODULE.name_zh,
        name_en=MODULE.name_en,
        summary_zh=MODULE.summary_zh,
        summary_en=MODULE.summary_en,
        status=MODULE.status,
        allowed=ctx.tenant.kind in MODULE.tenant_kinds,
        enabled=True,  # the guard let the request through only if it is switched on
        plan=None,
        plans=[p.key for p in MODULE.plans],
        url=_base(request),
        authority=ctx.tenant.kind in services.AUTHORITY_KINDS,
        links=_links(request),
    )


# --- portrait --------------------------------------------------------------------------------


def _fact_outs(rows: dict[str, dict[str, Any]]) -> list[FactOut]:
    out = []
    for name, spec in FACTS.items():
        row = rows.get(name)
        out.append(
            FactOut(
                name,
                spec.label_zh,
                spec.label_en,
                spec.type.value,
                row["value"] if row else None,
                row["source"] if row else None,
                row["as_of"] if row else None,
                row["evidence"] if row else [],
            )
        )
    return out


def _form_value(fact: FactOut) -> str:
    if fact.value is None:
        return ""
    if fact.type == FactType.CERTS.value:
        return "\n".join(f"{c['name']},{c['valid_from']},{c['valid_to']}" for c in fact.value)
    if isinstance(fact.value, float) and fact.value.is_integer():
        return str(int(fact.value))
    return str(fact.value)


async def _portrait_page(
    request: Req,
    *,
    values: dict[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
    status: int = 200,
    saved: bool = False,
) -> Response[str]:
    ctx = tenant_context(request)
    facts = _fact_outs(await services.portrait_rows(ctx))
    zh = _zh(request)
    return page(
        request,
        "policy/portrait.html",
        {
            **_common(request),
            "facts": facts,
            "values": values or {f.fact: _form_value(f) for f in facts},
            "errors": errors or [],
            "saved": saved,
            "source_label": lambda s: _source_label(s, zh) if s else "—",
            "fmt": _form_value,
            "certs_hint": "、".join(KNOWN_CERTIFICATIONS),
        },
        status=status,
    )


@get("/portrait", opt=READ, include_in_schema=False)
async def portrait_page(request: Req) -> Response[str]:
    return await _portrait_page(request, saved=request.query_params.get("saved") == "1")


@post("/portrait", opt=APPLY, include_in_schema=False, request_max_body_size=UPLOAD_LIMIT)
async def portrait_form(request: Req) -> Response[Any]:
    ctx = tenant_context(request)
    form = await _form(request)
    values = {name: form.get(name, "") for name in FACTS}
    try:
        evidence = await _upload_files(request, "evidence")
        current = {f.fact: _form_value(f) for f in _fact_outs(await services.portrait_rows(ctx))}
        # Only facts the person changed are rewritten (so untouched facts keep their source).
        changed = {k: v for k, v in values.items() if v.strip() != current.get(k, "").strip()}
        await services.set_facts(
            ctx, changed, as_of=form.get("as_of") or None, evidence=evidence, ip=_ip(request)
        )
    except CanalError as exc:
        if exc.status >= 500 or exc.status == 404:
            raise
        return await _portrait_page(
            request, values=values, errors=_errors(request, exc), status=exc.status
        )
    return redirect(request, f"{_base(request)}/portrait?saved=1")


@get("/portrait", opt=READ, tags=TAGS, summary="The enterprise's portrait (facts with sources)")
async def portrait_api(request: Req) -> list[FactOut]:
    return _fact_outs(await services.portrait_rows(tenant_context(request)))


@post(
    "/portrait",
    opt=APPLY,
    tags=TAGS,
    summary="Correct facts of the portrait",
    status_code=HTTP_200_OK,
)
async def portrait_update_api(request: Req, data: JSONBody[PortraitIn]) -> list[FactOut]:
    """``facts``: fact name → value (null clears it). Certifications are a list of
    ``{name, valid_from, valid_to}``; ``evidence``: ids of files uploaded through
    ``/api/v1/t/{slug}/files``. Re-matching runs in a job."""
    ctx = tenant_context(request)
    await services.set_facts(
        ctx, data.facts, as_of=data.as_of, evidence=data.evidence, ip=_ip(request)
    )
    return _fact_outs(await services.portrait_rows(ctx))


# --- matches ---------------------------------------------------------------------------------


def _as_of(request: Req) -> dt.date | None:
    raw = request.query_params.get("as_of", "")
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise invalid(
            [
                FieldError(
                    "as_of",
                    "date_invalid",
                    f"「{raw}」不是有效日期(YYYY-MM-DD)。",
                    f"{raw!r} is not a valid date (YYYY-MM-DD).",
                )
            ]
        ) from None


@get("/matches", opt=READ, include_in_schema=False)
async def matches_page(request: Req) -> Response[str]:
    ctx = tenant_context(request)
    day = _as_of(request)
    views = await services.matches_view(ctx, day)
    show_all = request.query_params.get("all") == "1"
    zh = _zh(request)
    groups: dict[str, list[services.MatchView]] = {"eligible": [], "nearly": [], "not_eligible": []}
    dismissed: list[services.MatchView] = []
    for v in views:
        (dismissed if v.dismissed else groups[v.group]).append(v)
    return page(
        request,
        "policy/matches.html",
        {
            **_common(request),
            "groups": groups,
            "dismissed": dismissed,
            "show_all": show_all,
            "today": day or services.today(),
            "as_of": day,
            "show": lambda v: "、".join(_show(v)) if isinstance(v, list) else _show(v),
            "source_label": lambda s: _source_label(s, zh) if s else "—",
        },
    )


@get("/matches", opt=READ, tags=TAGS, summary="Matches in three groups, with reasons")
async def matches_api(request: Req) -> list[MatchOut]:
    """Every open policy with its group; ``?as_of=YYYY-MM-DD`` evaluates on another day."""
    views = await services.matches_view(tenant_context(request), _as_of(request))
    return [_match_out(m) for m in views]


@post("/matches/{policy_id:uuid}/dismiss", opt=APPLY, include_in_schema=False)
async def dismiss_form(request: Req, policy_id: FromPath[uuid.UUID]) -> Response[Any]:
    await services.set_dismissed(tenant_context(request), policy_id, True)
    return redirect(request, f"{_base(request)}/matches")


@post("/matches/{policy_id:uuid}/restore", opt=APPLY, include_in_schema=False)
async def restore_form(request: Req, policy_id: FromPath[uuid.UUID]) -> Response[Any]:
    await services.set_dismissed(tenant_context(request), policy_id, False)
    return redirect(request, f"{_base(request)}/matches")


@post(
    "/matches/{policy_id:uuid}/dismiss",
    opt=APPLY,
    tags=TAGS,
    summary="Dismiss a match as irrelevant",
    status_code=HTTP_200_OK,
)
async def dismiss_api(request: Req, policy_id: FromPath[uuid.UUID]) -> Done:
    await services.set_dismissed(tenant_context(request), policy_id, True)
    return Done(True)


@post(
    "/matches/{policy_id:uuid}/restore",
    opt=APPLY,
    tags=TAGS,
    summary="Show a dismissed match again",
    status_code=HTTP_200_OK,
)
async def restore_api(request: Req, policy_id: FromPath[uuid.UUID]) -> Done:
    await services.set_dismissed(tenant_context(request), policy_id, False)
    return Done(True)


# --- applications (enterprise side) ------------------------------------------------------------


async def _apply_page(
    request: Req,
    policy_id: uuid.UUID,
    *,
    values: dict[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
    status: int = 200,
) -> Response[str]:
    ctx = tenant_context(request)
    policy = await services.catalogue_get(policy_id)
    facts = _fact_outs(await services.portrait_rows(ctx))
    return page(
        request,
        "policy/apply.html",
        {
            **_common(request),
            "policy": policy,
            "facts": [f for f in facts if f.value is not None],
            "window": services.window_state(policy, services.today()),
            "values": values or {"contact": "", "note": ""},
            "errors": errors or [],
            "show_value": lambda f: _form_value(f).replace("\n", ";"),
        },
        status=status,
    )


@get("/apply/{policy_id:uuid}", opt=READ, include_in_schema=False)
async def apply_page(request: Req, policy_id: FromPath[uuid.UUID]) -> Response[str]:
    return await _apply_page(request, policy_id)


@post(
    "/apply/{policy_id:uuid}",
    opt=APPLY,
    include_in_schema=False,
    request_max_body_size=UPLOAD_LIMIT,
)
async def apply_form(request: Req, policy_id: FromPath[uuid.UUID]) -> Response[Any]:
    ctx = tenant_context(request)
    form = await _form(request)
    values = {"contact": form.get("contact", ""), "note": form.get("note", "")}
    try:
        files = await _upload_files(request)
        app_id = await services.apply(
            ctx,
            policy_id,
            contact=values["contact"],
            note=values["note"],
            materials=files,
            ip=_ip(request),
        )
    except CanalError as exc:
        if exc.status >= 500 or exc.status == 404:
            raise
        return await _apply_page(
            request, policy_id, values=values, errors=_errors(request, exc), status=exc.status
        )
    return redirect(request, f"{_base(request)}/applications/{app_id}")


class PrefillOut(msgspec.Struct):
    policy: dict[str, Any]
    portrait: list[FactOut]
    window: str


@get("/apply/{policy_id:uuid}", opt=READ, tags=TAGS, summary="The pre-filled application form")
async def apply_prefill_api(request: Req, policy_id: FromPath[uuid.UUID]) -> PrefillOut:
    ctx = tenant_context(request)
    policy = await services.catalogue_get(policy_id)
    return PrefillOut(
        services.version_to_json(policy) | {"id": str(policy["id"])},
        _fact_outs(await services.portrait_rows(ctx)),
        services.window_state(policy, services.today()),
    )


@post(
    "/apply/{policy_id:uuid}",
    opt=APPLY,
    tags=TAGS,
    summary="Apply for a policy",
    status_code=HTTP_201_CREATED,
)
async def apply_api(
    request: Req, policy_id: FromPath[uuid.UUID], data: JSONBody[ApplyIn]
) -> ApplicationOut:
    """Materials are ids of files uploaded through ``/api/v1/t/{slug}/files``. The portrait
    is copied into the application; it is submitted against the published version."""
    ctx = tenant_context(request)
    app_id = await services.apply(
        ctx,
        policy_id,
        contact=data.contact,
        note=data.note,
        materials=data.materials,
        ip=_ip(request),
    )
    return _application_out(await services.get_application(ctx, app_id))


@get("/applications", opt=READ, include_in_schema=False)
async def applications_page(request: Req) -> Response[str]:
    rows = await services.list_applications(tenant_context(request))
    return page(request, "policy/applications.html", {**_common(request), "rows": rows})


@get("/applications", opt=READ, tags=TAGS, summary="My enterprise's applications")
async def applications_api(request: Req) -> list[ApplicationOut]:
    return [_application_out(r) for r in await services.list_applications(tenant_context(request))]


async def _application_page(
    request: Req,
    application_id: uuid.UUID,
    *,
    errors: list[dict[str, str]] | None = None,
    status: int = 200,
) -> Response[str]:
    row = await services.get_application(tenant_context(request), application_id)
    return page(
        request,
        "policy/application.html",
        {**_common(request), "row": row, "errors": errors or []},
        status=status,
    )


@get("/applications/{application_id:uuid}", opt=READ, include_in_schema=False)
async def application_page(request: Req, application_id: FromPath[uuid.UUID]) -> Response[str]:
    return await _application_page(request, application_id)


@get("/applications/{application_id:uuid}", opt=READ, tags=TAGS, summary="One application")
async def application_api(request: Req, application_id: FromPath[uuid.UUID]) -> ApplicationOut:
    return _application_out(await services.get_application(tenant_context(request), application_id))


@post(
    "/applications/{application_id:uuid}/resubmit",
    opt=APPLY,
    include_in_schema=False,
    request_max_body_size=UPLOAD_LIMIT,
)
async def resubmit_form(request: Req, application_id: FromPath[uuid.UUID]) -> Response[Any]:
    ctx = tenant_context(request)
    form = await _form(request)
    try:
        files = await _upload_files(request)
        await services.resubmit(
            ctx, application_id, note=form.get("note", ""), materials=files, ip=_ip(request)
        )
    except CanalError as exc:
        if exc.status >= 500 or exc.status == 404:
            raise
        return await _application_page(
            request, application_id, errors=_errors(request, exc), status=exc.status
        )
    return redirect(request, f"{_base(request)}/applications/{application_id}")


@post(
    "/applications/{application_id:uuid}/resubmit",
    opt=APPLY,
    tags=TAGS,
    summary="Resubmit after more material was asked for",
    status_code=HTTP_200_OK,
)
async def resubmit_api(
    request: Req, application_id: FromPath[uuid.UUID], data: JSONBody[ResubmitIn]
) -> ApplicationOut:
    ctx = tenant_context(request)
    await services.resubmit(
        ctx, application_id, note=data.note, materials=data.materials, ip=_ip(request)
    )
    return _application_out(await services.get_application(ctx, application_id))


@post("/applications/{application_id:uuid}/rate", opt=APPLY, include_in_schema=False)
async def rate_form(request: Req, application_id: FromPath[uuid.UUID]) -> Response[Any]:
    form = await _form(request)
    try:
        await services.rate(
            tenant_context(request), application_id, form.get("rating", ""), form.get("comment", "")
        )
    except CanalError as exc:
        if exc.status >= 500 or exc.status == 404:
            raise
        return await _application_page(
            request, application_id, errors=_errors(request, exc), status=exc.status
        )
    return redirect(request, f"{_base(request)}/applications/{application_id}")


@post(
    "/applications/{application_id:uuid}/rate",
    opt=APPLY,
    tags=TAGS,
    summary="Rate the service after a decision (1–5)",
    status_code=HTTP_200_OK,
)
async def rate_api(
    request: Req, application_id: FromPath[uuid.UUID], data: JSONBody[RateIn]
) -> ApplicationOut:
    ctx = tenant_context(request)
    await services.rate(ctx, application_id, data.rating, data.comment)
    return _application_out(await services.get_application(ctx, application_id))


# --- policies (authority side) ---------------------------------------------------------------

EMPTY_CRITERIA = json.dumps(
    {
        "all": [
            {"fact": "region_code", "op": "prefix_in", "prefixes": ["371502"]},
            {"fact": "established_on", "op": "years_before", "years": 1, "date": "window_open"},
        ]
    },
    ensure_ascii=False,
    indent=2,
)


def _policy_values(v: dict[str, Any] | None) -> dict[str, str]:
    if v is None:
        return {
            "title": "",
            "issuer": "",
            "level": "district",
            "doc_number": "",
            "support_type": "subsidy",
            "published_on": "",
            "effective_on": "",
            "window_opens": "",
            "window_closes": "",
            "expires_on": "",
            "summary": "",
            "full_text": "",
            "amount_text": "",
            "amount_max_yuan": "",
            "materials": "",
            "criteria": EMPTY_CRITERIA,
        }
    j = services.version_to_json(v)
    out = {k: "" if val is None else str(val) for k, val in j.items()}
    out["materials"] = "\n".join(j["materials"] or [])
    out["criteria"] = json.dumps(j["criteria"], ensure_ascii=False, indent=2)
    amount = j["amount_max_yuan"]
    out["amount_max_yuan"] = "" if amount is None else f"{amount:g}"
    return out


@get("/policies", opt=READ, include_in_schema=False)
async def policies_page(request: Req) -> Response[str]:
    ctx = tenant_context(request)
    rows = await services.list_policies(ctx)
    return page(
        request,
        "policy/policies.html",
        {
            **_common(request),
            "rows": rows,
            "authority": ctx.tenant.kind in services.AUTHORITY_KINDS,
            "errors": [],
        },
    )


@get("/policies", opt=READ, tags=TAGS, summary="The policies this authority wrote")
async def policies_api(request: Req) -> list[PolicySummary]:
    rows = await services.list_policies(tenant_context(request))
    return [
        PolicySummary(
            r["id"], r["status"], r["current_version"], r["title"], r["level"], r["window_closes"]
        )
        for r in rows
    ]


def _policy_form_page(
    request: Req,
    values: dict[str, str],
    *,
    policy: services.PolicyView | None = None,
    errors: list[dict[str, str]] | None = None,
    status: int = 200,
    tree: builder.Node | None = None,
) -> Response[str]:
    from_json = tree is None
    tree = tree or criteria.tree_from({}, values["criteria"])
    # A rule too deep for the builder: JSON only (no builder fields, so the JSON is saved).
    view = criteria.view_of(tree, request_locale(request)) if tree is not None else None
    if view is not None and from_json:  # the JSON as it was written (also when unreadable)
        view.rule_text = values["criteria"]
    return page(
        request,
        "policy/policy_form.html",
        {
            **_common(request),
            **criteria.template_context(request, view),
            "too_deep": criteria.too_deep_message(request_locale(request)),
            "values": values,
            "policy": policy,
            "errors": errors or [],
            "facts_doc": [(name, spec) for name, spec in FACTS.items()],
        },
        status=status,
    )


async def _policy_form_input(
    request: Req,
) -> tuple[dict[str, str], builder.Node | None, list[FieldError]]:
    """The posted policy form: its values (the criteria taken from the builder when the
    builder was posted), the builder's tree and the problems only the builder sees."""
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    values = {k: form.get(k, "") for k in _policy_values(None)}
    tree = builder.form_to_tree(criteria.form_state(raw))
    problems: list[FieldError] = []
    if tree is not None:
        rule, _ = builder.tree_to_rule(tree)
        values["criteria"] = json.dumps(rule, ensure_ascii=False, indent=2)
        problems = criteria.problems_as_field_errors(tree)
    values["publish"] = form.get("publish", "")
    return values, tree, problems


def _parse_policy_form(values: dict[str, str], problems: list[FieldError]) -> Any:
    try:
        data = services.parse_policy(values)
    except CanalError as exc:
        if exc.status >= 500 or not exc.errors:
            raise
        raise invalid([*exc.errors, *problems]) from None
    if problems:
        raise invalid(problems)
    return data


@get("/policies/new", opt=PUBLISH, include_in_schema=False)
async def new_policy_page(request: Req) -> Response[str]:
    return _policy_form_page(request, _policy_values(None))


@post("/policies", opt=PUBLISH, include_in_schema=False)
async def create_policy_form(request: Req) -> Response[Any]:
    ctx = tenant_context(request)
    values, tree, problems = await _policy_form_input(request)
    try:
        data = _parse_policy_form(values, problems)
        policy_id = await services.create_policy(
            ctx, data, ip=_ip(request), publish=values.pop("publish") == "1"
        )
    except CanalError as exc:
        if exc.status >= 500:
            raise
        return _policy_form_page(
            request, values, errors=_errors(request, exc), status=exc.status, tree=tree
        )
    return redirect(request, f"{_base(request)}/policies/{policy_id}")


def _policy_in_dict(data: PolicyIn) -> dict[str, Any]:
    return {f: getattr(data, f) for f in data.__struct_fields__ if f != "publish"}


@post(
    "/policies",
    opt=PUBLISH,
    tags=TAGS,
    summary="Create a policy (draft, or published with publish=true)",
    status_code=HTTP_201_CREATED,
)
async def create_policy_api(request: Req, data: JSONBody[PolicyIn]) -> CreatedOut:
    """``criteria`` is a rule of the language in docs/policy-rules.md; an invalid rule is a
    422 whose error names the JSON path of the problem (``$.all[2].fact``)."""
    ctx = tenant_context(request)
    parsed = services.parse_policy(_policy_in_dict(data))
    policy_id = await services.create_policy(ctx, parsed, ip=_ip(request), publish=data.publish)
    return CreatedOut(policy_id, "published" if data.publish else "draft")


@get("/policies/export", opt=READ, tags=TAGS, summary="Export this authority's policies as JSON")
async def export_api(request: Req) -> list[dict[str, Any]]:
    return await services.export_policies(tenant_context(request))


@get("/policies/export", opt=READ, include_in_schema=False)
async def export_page(request: Req) -> Response[Any]:
    body = json.dumps(
        await services.export_policies(tenant_context(request)), ensure_ascii=False, indent=2
    )
    return Response(
        body,
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="policies.json"'},
    )


class ImportOut(msgspec.Struct):
    ids: list[uuid.UUID]


@post(
    "/policies/import",
    opt=PUBLISH,
    tags=TAGS,
    summary="Import policies (a JSON array; all or nothing; published)",
    status_code=HTTP_201_CREATED,
)
async def import_api(request: Req, data: JSONBody[list[dict[str, Any]]]) -> ImportOut:
    ids = await services.import_policies(
        tenant_context(request), data, publish=True, ip=_ip(request)
    )
    return ImportOut(ids)


@post(
    "/policies/import",
    opt=PUBLISH,
    include_in_schema=False,
    request_max_body_size=2 * 1024 * 1024,
)
async def import_form(request: Req) -> Response[Any]:
    ctx = tenant_context(request)
    form = await request.form()
    upload = form.get("file")
    try:
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise invalid(
                [FieldError("file", "file_missing", "请选择 JSON 文件。", "Choose a JSON file.")]
            )
        raw = await upload.read(2 * 1024 * 1024)
        try:
            items = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise invalid(
                [
                    FieldError(
                        "file", "import_not_json", "文件不是有效的 JSON。", "Not a valid JSON file."
                    )
                ]
            ) from None
        await services.import_policies(ctx, items, publish=True, ip=_ip(request))
    except CanalError as exc:
        if exc.status >= 500:
            raise
        rows = await services.list_policies(ctx)
        return page(
            request,
            "policy/policies.html",
            {
                **_common(request),
                "rows": rows,
                "authority": ctx.tenant.kind in services.AUTHORITY_KINDS,
                "errors": _errors(request, exc),
            },
            status=exc.status,
        )
    return redirect(request, f"{_base(request)}/policies")


@get("/policies/{policy_id:uuid}", opt=READ, include_in_schema=False)
async def policy_page(request: Req, policy_id: FromPath[uuid.UUID]) -> Response[str]:
    view = await services.get_policy(tenant_context(request), policy_id)
    return _policy_form_page(request, _policy_values(view.current), policy=view)


@get("/policies/{policy_id:uuid}", opt=READ, tags=TAGS, summary="A policy with all its versions")
async def policy_api(request: Req, policy_id: FromPath[uuid.UUID]) -> PolicyDetail:
    view = await services.get_policy(tenant_context(request), policy_id)
    return PolicyDetail(
        view.id,
        view.status,
        view.current_version,
        [services.version_to_json(v) | {"number": v["number"]} for v in view.versions],
    )


@post("/policies/{policy_id:uuid}", opt=PUBLISH, include_in_schema=False)
async def edit_policy_form(request: Req, policy_id: FromPath[uuid.UUID]) -> Response[Any]:
    ctx = tenant_context(request)
    values, tree, problems = await _policy_form_input(request)
    values.pop("publish")
    view = await services.get_policy(ctx, policy_id)
    try:
        data = _parse_policy_form(values, problems)
        await services.update_policy(ctx, policy_id, data, ip=_ip(request))
    except CanalError as exc:
        if exc.status >= 500:
            raise
        return _policy_form_page(
            request, values, policy=view, errors=_errors(request, exc), status=exc.status, tree=tree
        )
    return redirect(request, f"{_base(request)}/policies/{policy_id}")


@post(
    "/policies/{policy_id:uuid}",
    opt=PUBLISH,
    tags=TAGS,
    summary="Edit a policy (adds a version)",
    status_code=HTTP_200_OK,
)
async def edit_policy_api(
    request: Req, policy_id: FromPath[uuid.UUID], data: JSONBody[PolicyIn]
) -> CreatedOut:
    ctx = tenant_context(request)
    parsed = services.parse_policy(_policy_in_dict(data))
    await services.update_policy(ctx, policy_id, parsed, ip=_ip(request))
    if data.publish:
        await services.publish_policy(ctx, policy_id, ip=_ip(request))
    view = await services.get_policy(ctx, policy_id)
    return CreatedOut(policy_id, view.status)


@post("/policies/{policy_id:uuid}/publish", opt=PUBLISH, include_in_schema=False)
async def publish_form(request: Req, policy_id: FromPath[uuid.UUID]) -> Response[Any]:
    await services.publish_policy(tenant_context(request), policy_id, ip=_ip(request))
    return redirect(request, f"{_base(request)}/policies/{policy_id}")


@post(
    "/policies/{policy_id:uuid}/publish",
    opt=PUBLISH,
    tags=TAGS,
    summary="Publish the current version",
    status_code=HTTP_200_OK,
)
async def publish_api(request: Req, policy_id: FromPath[uuid.UUID]) -> CreatedOut:
    await services.publish_policy(tenant_context(request), policy_id, ip=_ip(request))
    return CreatedOut(policy_id, "published")


# --- the authority's queue -------------------------------------------------------------------


@get("/queue", opt=REVIEW, include_in_schema=False)
async def queue_page(request: Req) -> Response[str]:
    rows = await services.list_reviews(tenant_context(request))
    return page(
        request,
        "policy/queue.html",
        {**_common(request), "rows": rows, "overdue": {r["id"] for r in services.overdue(rows)}},
    )


@get("/queue", opt=REVIEW, tags=TAGS, summary="Applications to this authority's policies")
async def queue_api(request: Req) -> list[ReviewOut]:
    return [_review_out(r) for r in await services.list_reviews(tenant_context(request))]


async def _review_page(
    request: Req,
    application_id: uuid.UUID,
    *,
    values: dict[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
    status: int = 200,
) -> Response[str]:
    row = await services.get_review(tenant_context(request), application_id)
    return page(
        request,
        "policy/review.html",
        {
            **_common(request),
            "row": row,
            "values": values or {"amount_yuan": "", "reason": ""},
            "errors": errors or [],
        },
        status=status,
    )


@get("/queue/{application_id:uuid}", opt=REVIEW, include_in_schema=False)
async def review_page(request: Req, application_id: FromPath[uuid.UUID]) -> Response[str]:
    return await _review_page(request, application_id)


@get("/queue/{application_id:uuid}", opt=REVIEW, tags=TAGS, summary="One application in the queue")
async def review_api(request: Req, application_id: FromPath[uuid.UUID]) -> ReviewOut:
    return _review_out(await services.get_review(tenant_context(request), application_id))


class MaterialLinkOut(msgspec.Struct):
    url: str
    expires_in: int


@get("/queue/{application_id:uuid}/materials/{file_id:uuid}", opt=REVIEW, include_in_schema=False)
async def review_material(
    request: Req, application_id: FromPath[uuid.UUID], file_id: FromPath[uuid.UUID]
) -> Redirect:
    """302 to a five-minute presigned link to the applicant's material (audited)."""
    url = await services.review_material_url(
        tenant_context(request), application_id, file_id, ip=_ip(request)
    )
    return Redirect(url, status_code=302, headers={"Cache-Control": "no-store"})


@get(
    "/queue/{application_id:uuid}/materials/{file_id:uuid}",
    opt=REVIEW,
    tags=TAGS,
    summary="A five-minute download link to one material file of an application (audited)",
)
async def review_material_api(
    request: Req, application_id: FromPath[uuid.UUID], file_id: FromPath[uuid.UUID]
) -> MaterialLinkOut:
    url = await services.review_material_url(
        tenant_context(request), application_id, file_id, ip=_ip(request)
    )
    return MaterialLinkOut(url, int(DEFAULT_GET_EXPIRY.total_seconds()))


@post("/queue/{application_id:uuid}/decide", opt=REVIEW, include_in_schema=False)
async def decide_form(request: Req, application_id: FromPath[uuid.UUID]) -> Response[Any]:
    form = await _form(request)
    values = {"amount_yuan": form.get("amount_yuan", ""), "reason": form.get("reason", "")}
    try:
        await services.decide(
            tenant_context(request),
            application_id,
            form.get("action", ""),
            amount_yuan=values["amount_yuan"],
            reason=values["reason"],
            ip=_ip(request),
        )
    except CanalError as exc:
        if exc.status >= 500 or exc.status == 404:
            raise
        return await _review_page(
            request, application_id, values=values, errors=_errors(request, exc), status=exc.status
        )
    return redirect(request, f"{_base(request)}/queue/{application_id}")


@post(
    "/queue/{application_id:uuid}/decide",
    opt=REVIEW,
    tags=TAGS,
    summary="Accept (amount), reject (reason), ask for more (reason) or record disbursement",
    status_code=HTTP_200_OK,
)
async def decide_api(
    request: Req, application_id: FromPath[uuid.UUID], data: JSONBody[DecideIn]
) -> ReviewOut:
    """``action``: ``accept`` | ``reject`` | ``more`` | ``disburse``."""
    ctx = tenant_context(request)
    await services.decide(
        ctx,
        application_id,
        data.action,
        amount_yuan=data.amount_yuan,
        reason=data.reason,
        ip=_ip(request),
    )
    return _review_out(await services.get_review(ctx, application_id))


class RemindOut(msgspec.Struct):
    reminded: int


@post("/queue/remind", opt=REVIEW, include_in_schema=False)
async def remind_form(request: Req) -> Response[Any]:
    await services.remind_overdue(tenant_context(request), ip=_ip(request))
    return redirect(request, f"{_base(request)}/queue")


@post(
    "/queue/remind",
    opt=REVIEW,
    tags=TAGS,
    summary="Remind the reviewers of overdue applications",
    status_code=HTTP_200_OK,
)
async def remind_api(request: Req) -> RemindOut:
    return RemindOut(await services.remind_overdue(tenant_context(request), ip=_ip(request)))


# --- the operator's oversight (马上督) ------------------------------------------------------------


class OverdueOut(msgspec.Struct):
    id: uuid.UUID
    authority_name: str
    applicant_name: str
    policy_title: str
    submitted_at: dt.datetime
    reminded_at: dt.datetime | None


@get("/oversight", opt=READ, include_in_schema=False)
async def oversight_page(request: Req) -> Response[str]:
    rows = await services.oversight(tenant_context(request))
    return page(
        request,
        "policy/oversight.html",
        {**_common(request), "rows": rows or [], "operator": rows is not None},
    )


@get("/oversight", opt=READ, tags=TAGS, summary="Operator: overdue applications of all authorities")
async def oversight_api(request: Req) -> list[OverdueOut]:
    rows = await services.oversight(tenant_context(request))
    return [
        OverdueOut(
            r["id"],
            r["authority_name"],
            r["applicant_name"],
            r["policy_title"],
            r["submitted_at"],
            r["reminded_at"],
        )
        for r in rows or []
    ]


@post("/oversight/remind", opt=READ, include_in_schema=False)
async def oversight_remind_form(request: Req) -> Response[Any]:
    await services.remind_all_overdue(tenant_context(request), ip=_ip(request))
    return redirect(request, f"{_base(request)}/oversight")


@post(
    "/oversight/remind",
    opt=READ,
    tags=TAGS,
    summary="Operator: remind every authority with overdue applications",
    status_code=HTTP_200_OK,
)
async def oversight_remind_api(request: Req) -> RemindOut:
    return RemindOut(await services.remind_all_overdue(tenant_context(request), ip=_ip(request)))


# --- statistics ------------------------------------------------------------------------------


@get("/stats", opt=REVIEW, tags=TAGS, summary="Applications, approvals and amounts")
async def stats_api(request: Req) -> dict[str, Any]:
    return await services.authority_stats(tenant_context(request))


@get("/stats", opt=REVIEW, include_in_schema=False)
async def stats_page(request: Req) -> Response[str]:
    stats = await services.authority_stats(tenant_context(request))
    zh = _zh(request)
    titles = list(dict.fromkeys([*stats["by_policy"], *stats["eligible_by_policy"]]))
    empty = {"applications": 0, "accepted": 0}

    def series(name_zh: str, name_en: str, values: list[int]) -> dict[str, Any]:
        return {"name": name_zh if zh else name_en, "type": "bar", "data": values}

    chart = {
        "tooltip": {},
        "legend": {},
        "grid": {"containLabel": True},
        "xAxis": {"type": "value"},
        "yAxis": {"type": "category", "data": titles},
        "series": [
            series(
                "当前符合条件的企业",
                "eligible now",
                [stats["eligible_by_policy"].get(t, 0) for t in titles],
            ),
            series(
                "申报数",
                "applications",
                [stats["by_policy"].get(t, empty)["applications"] for t in titles],
            ),
            series(
                "通过数",
                "accepted",
                [stats["by_policy"].get(t, empty)["accepted"] for t in titles],
            ),
        ],
    }
    industries = list(stats["by_industry"])
    pie = {
        "tooltip": {},
        "series": [
            {
                "type": "pie",
                "data": [
                    {"name": k, "value": stats["by_industry"][k]["amount_fen"] / 100}
                    for k in industries
                ],
            }
        ],
    }
    return page(
        request,
        "policy/stats.html",
        {**_common(request), "stats": stats, "bar": chart, "pie": pie},
    )


# --- the public catalogue --------------------------------------------------------------------


def _catalogue_params(request: Req) -> dict[str, Any]:
    q = request.query_params
    closing = q.get("closing", "")
    return {
        "query": q.get("q", "")[:200],
        "level": q.get("level", "") if q.get("level", "") in services.LEVELS else "",
        "support_type": q.get("support_type", "")
        if q.get("support_type", "") in services.SUPPORT_TYPES
        else "",
        "open_now": q.get("open") == "1",
        "closing_days": 30 if closing == "1" else None,
    }


@get("/policies", opt=PUBLIC, include_in_schema=False)
async def catalogue_page(request: Req) -> Response[str]:
    params = _catalogue_params(request)
    hits, total = await services.catalogue_search(**params)
    locale = request_locale(request)
    return page(
        request,
        "policy/catalogue.html",
        {
            "hits": hits,
            "total": total,
            "params": params,
            "q": request.query_params,
            "lbl": lambda table, key: services.label(table, key, locale),
            "LEVELS": services.LEVELS,
            "SUPPORT_TYPES": services.SUPPORT_TYPES,
            "day": lambda n: dt.date.fromordinal(n).isoformat() if n else "",
        },
    )


@get("/api/v1/policies", opt=PUBLIC, tags=TAGS, summary="Search the public policy catalogue")
async def catalogue_api(request: Req) -> CatalogueOut:
    """``q`` keyword (Chinese works), ``level``, ``support_type``, ``open=1`` (window open
    now), ``closing=1`` (closes within 30 days)."""
    hits, total = await services.catalogue_search(**_catalogue_params(request))
    return CatalogueOut(total, hits)


@get("/policies/{public_policy_id:uuid}", opt=PUBLIC, include_in_schema=False)
async def catalogue_entry_page(
    request: Req, public_policy_id: FromPath[uuid.UUID]
) -> Response[str]:
    row = await services.catalogue_get(public_policy_id)
    locale = request_locale(request)
    from canal.park.policy.rules import describe

    rule = services.policy_rule(row)
    zh, en = describe(rule, services.today())
    return page(
        request,
        "policy/catalogue_entry.html",
        {
            "p": row,
            "lbl": lambda table, key: services.label(table, key, locale),
            "LEVELS": services.LEVELS,
            "SUPPORT_TYPES": services.SUPPORT_TYPES,
            "requirements": zh if locale.startswith("zh") else en,
            "window": services.window_state(row, services.today()),
            "yuan": _yuan,
        },
    )


@get(
    "/api/v1/policies/{public_policy_id:uuid}",
    opt=PUBLIC,
    tags=TAGS,
    summary="A published policy",
)
async def catalogue_entry_api(public_policy_id: FromPath[uuid.UUID]) -> dict[str, Any]:
    row = await services.catalogue_get(public_policy_id)
    return services.version_to_json(row) | {
        "id": str(row["id"]),
        "authority": row["authority_name"],
        "version": row["version_number"],
    }


PAGE_ROUTES = [
    home_page,
    portrait_page,
    portrait_form,
    matches_page,
    dismiss_form,
    restore_form,
    apply_page,
    apply_form,
    applications_page,
    application_page,
    resubmit_form,
    rate_form,
    policies_page,
    new_policy_page,
    create_policy_form,
    export_page,
    import_form,
    *criteria.PAGE_ROUTES,
    policy_page,
    edit_policy_form,
    publish_form,
    queue_page,
    review_page,
    review_material,
    decide_form,
    remind_form,
    stats_page,
    oversight_page,
    oversight_remind_form,
]
API_ROUTES = [
    home_api,
    portrait_api,
    portrait_update_api,
    matches_api,
    dismiss_api,
    restore_api,
    apply_prefill_api,
    apply_api,
    applications_api,
    application_api,
    resubmit_api,
    rate_api,
    policies_api,
    create_policy_api,
    export_api,
    import_api,
    *criteria.API_ROUTES,
    policy_api,
    edit_policy_api,
    publish_api,
    queue_api,
    review_api,
    review_material_api,
    decide_api,
    remind_api,
    stats_api,
    oversight_api,
    oversight_remind_api,
]
PUBLIC_ROUTES = [catalogue_page, catalogue_api, catalogue_entry_page, catalogue_entry_api]

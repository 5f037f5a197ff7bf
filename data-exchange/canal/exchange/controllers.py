"""Data trading pages (``/t/{slug}/m/exchange/…``) and their JSON twins
(``/api/v1/t/{slug}/m/exchange/…``, same path after the prefix)."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from canal.exchange import builder, masking, privacy, services
from canal.exchange.pii import KIND_LABELS
from canal.platform import clock
from canal.platform.http.errors import CanalError
from canal.platform.http.tenancy import current_principal, tenant_context
from canal.platform.modules import visible_nav
from canal.platform.storage.controllers import _body_source
from canal.platform.storage.services import PURPOSES, object_store
from canal.web.i18n import request_locale
from canal.web.render import page, redirect

Req = Request[Any, Any, Any]
TAGS = ["exchange"]
M = "exchange"
READ = {"access": "tenant", "permission": ("exchange", "read")}
PUBLISH = {"access": "tenant", "permission": ("exchange", "publish")}
TRADE = {"access": "tenant", "permission": ("exchange", "trade")}
USE = {"access": "tenant", "permission": ("exchange", "use")}
REVIEW = {"access": "tenant", "permission": ("exchange", "review")}
UPLOAD_LIMIT = PURPOSES["dataset"].max_bytes + 1024 * 1024


def _ip(request: Req) -> str:
    return request.client.host if request.client else ""


def _base(slug: str) -> str:
    return f"/t/{slug}/m/{M}"


def _zh(request: Req) -> bool:
    return request_locale(request).startswith("zh")


def _errors(request: Req, error: CanalError) -> list[dict[str, str]]:
    locale = request_locale(request)
    if error.errors:
        return [e.for_locale(locale) for e in error.errors]
    return [{"field": "", "code": error.code, "message": error.message(locale)}]


def _labels(request: Req) -> dict[str, Any]:
    i = 0 if _zh(request) else 1
    pick = lambda table: {k: v[i] for k, v in table.items()}  # noqa: E731
    return {
        "categories": pick(services.CATEGORIES),
        "frequencies": pick(services.FREQUENCIES),
        "sensitivities": pick(services.SENSITIVITIES),
        "price_models": pick(services.PRICE_MODELS),
        "modes": pick(services.MODES),
        "actions": pick(masking.ACTION_LABELS),
        "pii": pick(KIND_LABELS),
        "aggregates": pick(builder.AGGREGATES),
        "operators": pick(builder.OPERATORS),
        "types": pick(builder.TYPE_WORDS),
        # A column's type in plain words (文本/整数/小数/日期), not DuckDB's name.
        "type_word": lambda t: pick(builder.TYPE_WORDS)[builder.type_kind(t)],
    }


def _subnav(request: Req, base: str) -> list[dict[str, Any]]:
    """The exchange's own menu: only the entries this person may use here (the module's
    ``nav``, as the shell's menu shows them), the one being viewed marked."""
    from canal.exchange.module import MODULE

    locale = request_locale(request)
    here = request.url.path
    return [
        {
            "href": base + entry.path,
            "label": entry.label(locale),
            "current": here == base + entry.path or here.startswith(base + entry.path + "/"),
        }
        for entry in visible_nav(MODULE, tenant_context(request))
    ]


def _page(request: Req, template: str, ctx: dict[str, Any], status: int = 200) -> Response[str]:
    slug = tenant_context(request).tenant.slug
    return page(
        request,
        f"exchange/{template}",
        {
            "base": _base(slug),
            "subnav": _subnav(request, _base(slug)),
            "slug": slug,
            "public": False,
            "L": _labels(request),
            "errors": [],
            **ctx,
        },
        status=status,
    )


async def _form(request: Req) -> dict[str, Any]:
    form = await request.form()
    out: dict[str, Any] = {}
    for key in form:
        values = form.getall(key) if hasattr(form, "getall") else [form[key]]
        out[key] = values if len(values) > 1 or key in ("delivery_modes", "modes") else values[0]
    return out


def _yuan(fen: int) -> str:
    return f"{fen / 100:.2f}"


# --- shapes ---------------------------------------------------------------------------------


class ProviderIn(msgspec.Struct, forbid_unknown_fields=True):
    statement: str


class ProviderOut(msgspec.Struct):
    id: uuid.UUID
    status: str
    statement: str
    reason: str


class DatasetIn(msgspec.Struct, forbid_unknown_fields=True):
    title: str
    description: str
    category: str
    update_frequency: str
    source_statement: str
    sensitivity: str
    licence_purpose: str
    delivery_modes: list[str]
    licence_days: int = 365
    redistribution: bool = False
    price_model: str = "free"
    price_yuan: str = "0"
    min_cohort: int = 10
    tags: list[str] = msgspec.field(default_factory=list)


class VersionIn(msgspec.Struct, forbid_unknown_fields=True):
    file_id: uuid.UUID


class MaskingIn(msgspec.Struct, forbid_unknown_fields=True):
    rules: dict[str, str]


class ReviewIn(msgspec.Struct, forbid_unknown_fields=True):
    approve: bool
    reason: str = ""


class JustificationIn(msgspec.Struct, forbid_unknown_fields=True):
    """Why a version in which profiling found personal data keeps the declared grade
    (20–2,000 characters; empty withdraws it)."""

    justification: str
    version: int | None = None  # default the newest ready version


class RequestIn(msgspec.Struct, forbid_unknown_fields=True):
    purpose: str
    modes: list[str]


class DecisionIn(msgspec.Struct, forbid_unknown_fields=True):
    approve: bool
    reason: str = ""
    days: int | None = None
    # Version numbers the grant covers; omitted or empty: every version, later ones too.
    versions: list[int] | None = None


class RevokeIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: str = ""


class PrivacyIn(msgspec.Struct, forbid_unknown_fields=True):
    """A version's privacy settings and the dataset's budget; omitted parts stay as they are
    (profiling's proposal at first). Sending it confirms the settings."""

    version: int | None = None  # default the newest ready version
    max_rows_per_person: int | None = None
    bounds: dict[str, list[float]] | None = None  # numeric column -> [lower, upper]
    categories: dict[str, list[str]] | None = None  # column -> its public values
    epsilon_per_query: float | None = None
    epsilon_total: float | None = None
    budget_period_days: int | None = None
    # Non-personal columns whose sums and counts are answered exactly, without noise
    # (refused for columns profiling flagged as personal).
    exact: list[str] | None = None


class FilterIn(msgspec.Struct, forbid_unknown_fields=True):
    column: str
    op: str = "="  # = != > >= < <=
    value: str = ""


class BuildIn(msgspec.Struct, forbid_unknown_fields=True):
    """The query builder: ``aggregate`` count/sum/avg of ``measure`` (a numeric column; empty
    with count: rows), optionally grouped by a column with public categories, up to three
    filters."""

    aggregate: str = "count"
    measure: str = ""
    group_by: str = ""
    filters: list[FilterIn] = []
    version: int | None = None


class QueryIn(msgspec.Struct, forbid_unknown_fields=True):
    sql: str
    version: int | None = None  # a version the grant covers; default the newest


class DownloadOut(msgspec.Struct):
    url: str
    expires_in: int


def _dataset_out(row: dict[str, Any]) -> dict[str, Any]:
    hidden = {"sample_salt"}
    return {k: v for k, v in row.items() if k not in hidden}


def _listing_out(row: dict[str, Any]) -> dict[str, Any]:
    return dict(row)


# --- catalogue ------------------------------------------------------------------------------


def _filter(
    q: str,
    category: str,
    sensitivity: str,
    price_model: str,
    provider: str,
    price_min: str = "",
    price_max: str = "",
) -> services.CatalogueFilter:
    flt = services.CatalogueFilter(
        q=q[:100],
        category=category if category in services.CATEGORIES else "",
        sensitivity=sensitivity if sensitivity in services.SENSITIVITIES else "",
        price_model=price_model if price_model in services.PRICE_MODELS else "",
        provider=provider[:100],
    )
    return services.price_range(flt, price_min, price_max)


async def _catalogue(
    request: Req, render: Any, args: tuple[str, str, str, str, str], price_min: str, price_max: str
) -> Response[str]:
    """The catalogue page; a bad price range re-renders the form (422) with the reasons."""
    try:
        flt = _filter(*args, price_min, price_max)
    except CanalError as error:
        flt = _filter(*args)
        flt.price_min, flt.price_max = price_min[:20], price_max[:20]
        return render(
            request,
            "catalogue.html",
            {"rows": [], "flt": flt, "yuan": _yuan, "errors": _errors(request, error)},
            status=error.status,
        )
    rows = await services.search_catalogue(flt)
    return render(request, "catalogue.html", {"rows": rows, "flt": flt, "yuan": _yuan})


@get("/catalogue", opt=READ, include_in_schema=False)
async def catalogue_page(
    request: Req,
    q: FromQuery[str] = "",
    category: FromQuery[str] = "",
    sensitivity: FromQuery[str] = "",
    price_model: FromQuery[str] = "",
    provider: FromQuery[str] = "",
    price_min: FromQuery[str] = "",
    price_max: FromQuery[str] = "",
) -> Response[str]:
    args = (q, category, sensitivity, price_model, provider)
    return await _catalogue(request, _page, args, price_min, price_max)


@get("/catalogue", opt=READ, tags=TAGS)
async def catalogue_api(
    request: Req,
    q: FromQuery[str] = "",
    category: FromQuery[str] = "",
    sensitivity: FromQuery[str] = "",
    price_model: FromQuery[str] = "",
    provider: FromQuery[str] = "",
    price_min: FromQuery[str] = "",
    price_max: FromQuery[str] = "",
) -> list[dict[str, Any]]:
    """Approved listings, by Chinese full text (``q``), category, sensitivity, price model,
    provider and price range in yuan (``price_min``/``price_max``, inclusive)."""
    flt = _filter(q, category, sensitivity, price_model, provider, price_min, price_max)
    return [
        {k: v for k, v in r.items() if k not in ("sample", "columns")}
        for r in await services.search_catalogue(flt)
    ]


@get("/catalogue/{dataset_id:uuid}", opt=READ, include_in_schema=False)
async def listing_page(request: Req, dataset_id: FromPath[uuid.UUID]) -> Response[str]:
    ctx = tenant_context(request)
    listing = await services.view_listing(ctx, dataset_id)
    return _page(request, "listing.html", {"l": listing, "yuan": _yuan, "errors": [], "form": {}})


@get("/catalogue/{dataset_id:uuid}", opt=READ, tags=TAGS)
async def listing_api(request: Req, dataset_id: FromPath[uuid.UUID]) -> dict[str, Any]:
    """A listing: terms, schema and profile (with masking actions) and the masked sample."""
    return _listing_out(await services.view_listing(tenant_context(request), dataset_id))


# --- the read-only catalogue for any signed-in person (residents without an organisation) ----

PERSON = {"access": "user"}
PUBLIC_BASE = "/exchange"


def _person_page(
    request: Req, template: str, ctx: dict[str, Any], status: int = 200
) -> Response[str]:
    return page(
        request,
        f"exchange/{template}",
        {"base": PUBLIC_BASE, "public": True, "L": _labels(request), "errors": [], **ctx},
        status=status,
    )


@get(f"{PUBLIC_BASE}/catalogue", opt=PERSON, include_in_schema=False)
async def public_catalogue_page(
    request: Req,
    q: FromQuery[str] = "",
    category: FromQuery[str] = "",
    sensitivity: FromQuery[str] = "",
    price_model: FromQuery[str] = "",
    provider: FromQuery[str] = "",
    price_min: FromQuery[str] = "",
    price_max: FromQuery[str] = "",
) -> Response[str]:
    args = (q, category, sensitivity, price_model, provider)
    return await _catalogue(request, _person_page, args, price_min, price_max)


@get(f"/api/v1{PUBLIC_BASE}/catalogue", opt=PERSON, tags=TAGS)
async def public_catalogue_api(
    request: Req,
    q: FromQuery[str] = "",
    category: FromQuery[str] = "",
    sensitivity: FromQuery[str] = "",
    price_model: FromQuery[str] = "",
    provider: FromQuery[str] = "",
    price_min: FromQuery[str] = "",
    price_max: FromQuery[str] = "",
) -> list[dict[str, Any]]:
    """The data catalogue for any signed-in person, read-only (no organisation needed);
    the same filters as the organisation's catalogue. Requesting data needs an organisation."""
    flt = _filter(q, category, sensitivity, price_model, provider, price_min, price_max)
    return [
        {k: v for k, v in r.items() if k not in ("sample", "columns")}
        for r in await services.search_catalogue(flt)
    ]


@get(f"{PUBLIC_BASE}/catalogue/{{dataset_id:uuid}}", opt=PERSON, include_in_schema=False)
async def public_listing_page(request: Req, dataset_id: FromPath[uuid.UUID]) -> Response[str]:
    person = current_principal(request)
    listing = await services.view_listing_as_person(person.user_id, dataset_id)
    return _person_page(request, "listing.html", {"l": listing, "yuan": _yuan, "form": {}})


@get(f"/api/v1{PUBLIC_BASE}/catalogue/{{dataset_id:uuid}}", opt=PERSON, tags=TAGS)
async def public_listing_api(request: Req, dataset_id: FromPath[uuid.UUID]) -> dict[str, Any]:
    """A listing (terms, schema, profile, masked sample) for any signed-in person; the view
    is recorded in the provider's usage audit."""
    person = current_principal(request)
    return _listing_out(await services.view_listing_as_person(person.user_id, dataset_id))


@post("/catalogue/{dataset_id:uuid}/request", opt=TRADE, include_in_schema=False)
async def request_form(request: Req, dataset_id: FromPath[uuid.UUID]) -> Response[Any]:
    ctx = tenant_context(request)
    form = await _form(request)
    modes = form.get("modes") or []
    try:
        grant = await services.request_access(
            ctx, dataset_id, str(form.get("purpose", "")), list(modes), ip=_ip(request)
        )
    except CanalError as error:
        if error.status >= 500 or error.status == 404:
            raise
        listing = await services.get_listing(dataset_id)
        return _page(
            request,
            "listing.html",
            {"l": listing, "yuan": _yuan, "errors": _errors(request, error), "form": form},
            status=error.status,
        )
    return redirect(request, f"{_base(ctx.tenant.slug)}/grants/{grant['id']}")


@post("/catalogue/{dataset_id:uuid}/request", opt=TRADE, tags=TAGS, status_code=HTTP_201_CREATED)
async def request_api(
    request: Req, dataset_id: FromPath[uuid.UUID], data: JSONBody[RequestIn]
) -> dict[str, Any]:
    """Ask the provider for access, stating the purpose and the delivery modes wanted."""
    return await services.request_access(
        tenant_context(request), dataset_id, data.purpose, data.modes, ip=_ip(request)
    )


# --- provider -------------------------------------------------------------------------------


async def _provider_page(
    request: Req,
    *,
    errors: list[dict[str, str]] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
) -> Response[str]:
    ctx = tenant_context(request)
    provider = await services.provider_of(ctx.tenant_id)
    datasets = await services.list_datasets(ctx)
    return _page(
        request,
        "provider.html",
        {"provider": provider, "datasets": datasets, "errors": errors or [], "form": form or {}},
        status=status,
    )


@get("/provider", opt=PUBLISH, include_in_schema=False)
async def provider_page(request: Req) -> Response[str]:
    return await _provider_page(request)


@get("/provider", opt=PUBLISH, tags=TAGS)
async def provider_api(request: Req) -> ProviderOut | None:
    """This organisation's data-provider application and its status."""
    row = await services.provider_of(tenant_context(request).tenant_id)
    return ProviderOut(row["id"], row["status"], row["statement"], row["reason"]) if row else None


@post("/provider", opt=PUBLISH, include_in_schema=False)
async def provider_form(request: Req) -> Response[Any]:
    form = await _form(request)
    try:
        await services.apply_as_provider(
            tenant_context(request), str(form.get("statement", "")), ip=_ip(request)
        )
    except CanalError as error:
        if error.status >= 500:
            raise
        return await _provider_page(
            request, errors=_errors(request, error), form=form, status=error.status
        )
    return redirect(request, f"{_base(tenant_context(request).tenant.slug)}/provider")


@post("/provider", opt=PUBLISH, tags=TAGS, status_code=HTTP_201_CREATED)
async def provider_apply_api(request: Req, data: JSONBody[ProviderIn]) -> ProviderOut:
    """Apply to the operator to become a data provider."""
    row = await services.apply_as_provider(tenant_context(request), data.statement, ip=_ip(request))
    return ProviderOut(row["id"], row["status"], row["statement"], row["reason"])


# --- datasets -------------------------------------------------------------------------------


@get("/datasets", opt=PUBLISH, include_in_schema=False)
async def datasets_page(request: Req) -> Response[str]:
    return await _provider_page(request)


@get("/datasets", opt=PUBLISH, tags=TAGS)
async def datasets_api(request: Req) -> list[dict[str, Any]]:
    """This organisation's datasets (any status)."""
    return [_dataset_out(r) for r in await services.list_datasets(tenant_context(request))]


@get("/datasets/new", opt=PUBLISH, include_in_schema=False)
async def dataset_new_page(request: Req) -> Response[str]:
    return _page(
        request,
        "dataset_new.html",
        {
            "errors": [],
            "form": {
                "licence_days": "365",
                "min_cohort": "10",
                "price_yuan": "0",
                "delivery_modes": ["compute"],
            },
        },
    )


def _input(form: dict[str, Any]) -> services.DatasetInput:
    modes = form.get("delivery_modes") or []
    return services.DatasetInput(
        title=str(form.get("title", "")),
        description=str(form.get("description", "")),
        category=str(form.get("category", "")),
        tags=str(form.get("tags", "")),
        update_frequency=str(form.get("update_frequency", "")),
        source_statement=str(form.get("source_statement", "")),
        sensitivity=str(form.get("sensitivity", "")),
        licence_purpose=str(form.get("licence_purpose", "")),
        licence_days=str(form.get("licence_days", "")),
        redistribution=bool(form.get("redistribution")),
        price_model=str(form.get("price_model", "free")),
        price_yuan=str(form.get("price_yuan", "0")),
        delivery_modes=[modes] if isinstance(modes, str) else list(modes),
        min_cohort=str(form.get("min_cohort", "")),
    )


@post("/datasets", opt=PUBLISH, include_in_schema=False)
async def dataset_create_form(request: Req) -> Response[Any]:
    ctx = tenant_context(request)
    form = await _form(request)
    try:
        row = await services.create_dataset(ctx, _input(form), ip=_ip(request))
    except CanalError as error:
        if error.status >= 500:
            raise
        return _page(
            request,
            "dataset_new.html",
            {"errors": _errors(request, error), "form": form},
            status=error.status,
        )
    return redirect(request, f"{_base(ctx.tenant.slug)}/datasets/{row['id']}")


@post("/datasets", opt=PUBLISH, tags=TAGS, status_code=HTTP_201_CREATED)
async def dataset_create_api(request: Req, data: JSONBody[DatasetIn]) -> dict[str, Any]:
    """List a dataset (a draft until a version is profiled and the operator approves it)."""
    values = services.DatasetInput(
        title=data.title,
        description=data.description,
        category=data.category,
        tags=",".join(data.tags),
        update_frequency=data.update_frequency,
        source_statement=data.source_statement,
        sensitivity=data.sensitivity,
        licence_purpose=data.licence_purpose,
        licence_days=str(data.licence_days),
        redistribution=data.redistribution,
        price_model=data.price_model,
        price_yuan=data.price_yuan,
        delivery_modes=data.delivery_modes,
        min_cohort=str(data.min_cohort),
    )
    return _dataset_out(
        await services.create_dataset(tenant_context(request), values, ip=_ip(request))
    )


async def _dataset_view(request: Req, dataset_id: uuid.UUID) -> dict[str, Any]:
    ctx = tenant_context(request)
    dataset = await services.get_dataset(dataset_id, ctx)
    versions = await services.versions_of(dataset, ctx)
    waiting = services.pending_version(versions)
    newest = services.latest_ready(versions)
    operator = services.is_operator(ctx)
    shown = waiting if operator and waiting else newest
    reviewing = operator and (dataset["status"] == "pending" or waiting is not None)
    return {
        "dataset": _dataset_out(dataset),
        "versions": versions,
        # The operator sees the profile of the version under review.
        "latest": shown,
        "pending_version": waiting,
        "can_submit": newest is not None
        and waiting is None
        and (
            dataset["status"] in ("draft", "rejected")
            or (dataset["status"] == "approved" and newest["review_status"] != "approved")
        ),
        "is_operator": operator,
        "own": dataset["tenant_id"] == ctx.tenant_id,
        "budget": await services.privacy_budget(dataset["tenant_id"], dataset),
        # The settings compute-to-data answers are calibrated to (the version shown).
        "privacy": (shown or {}).get("privacy") or {},
        "privacy_columns": [
            {"name": c["name"], "numeric": privacy.is_numeric(c["type"])}
            for c in (services.compute_columns(dataset, shown) if shown else [])
        ],
        # Personal data profiling found in the version shown, and the grade that follows:
        # "personal" until the provider justifies the declared one in writing.
        "findings": services.personal_findings(shown),
        "sensitivity": services.effective_sensitivity(dataset, shown),
        "justification": (shown or {}).get("sensitivity_justification", ""),
        # What buyers would see, for the operator deciding on it.
        "review_sample": (
            await services.review_sample(dataset, shown) if reviewing and shown else None
        ),
    }


async def _dataset_page(
    request: Req,
    dataset_id: uuid.UUID,
    *,
    errors: list[dict[str, str]] | None = None,
    status: int = 200,
) -> Response[str]:
    view = await _dataset_view(request, dataset_id)
    return _page(
        request,
        "dataset.html",
        {
            **view,
            "errors": errors or [],
            "yuan": _yuan,
            "actions": masking.ACTIONS,
            "accept": ",".join(PURPOSES["dataset"].content_types),
        },
        status=status,
    )


@get("/datasets/{dataset_id:uuid}", opt=READ, include_in_schema=False)
async def dataset_page(request: Req, dataset_id: FromPath[uuid.UUID]) -> Response[str]:
    return await _dataset_page(request, dataset_id)


@get("/datasets/{dataset_id:uuid}", opt=READ, tags=TAGS)
async def dataset_api(request: Req, dataset_id: FromPath[uuid.UUID]) -> dict[str, Any]:
    """A dataset as its provider (or the reviewing operator) sees it: versions with profiles."""
    return await _dataset_view(request, dataset_id)


@post(
    "/datasets/{dataset_id:uuid}/versions",
    opt=PUBLISH,
    include_in_schema=False,
    request_max_body_size=UPLOAD_LIMIT,
)
async def version_upload_form(request: Req, dataset_id: FromPath[uuid.UUID]) -> Response[Any]:
    """Upload a file (streamed into storage as purpose "dataset"), then profile it."""
    ctx = tenant_context(request)
    await services.get_dataset(dataset_id, ctx)
    stored = None
    try:
        chunks, name, declared, _ = await _body_source(request)
        stored = await object_store().upload(
            ctx, "dataset", chunks, filename=name, declared_size=declared, ip=_ip(request)
        )
        await services.add_version(ctx, dataset_id, stored.id, ip=_ip(request))
    except CanalError as error:
        if error.status >= 500 or error.status == 404:
            raise
        if stored is not None:  # refused after upload: keep nothing of it
            await object_store().delete(stored.id, ctx, ip=_ip(request))
        errors = [{**e, "field": "file"} for e in _errors(request, error)]
        return await _dataset_page(request, dataset_id, errors=errors, status=error.status)
    return redirect(request, f"{_base(ctx.tenant.slug)}/datasets/{dataset_id}")


@post("/datasets/{dataset_id:uuid}/versions", opt=PUBLISH, tags=TAGS, status_code=HTTP_201_CREATED)
async def version_add_api(
    request: Req, dataset_id: FromPath[uuid.UUID], data: JSONBody[VersionIn]
) -> Response[dict[str, Any]]:
    """Add a version from a file already uploaded with purpose "dataset" (``POST …/files`` or
    a direct upload). Small files are profiled at once and a malformed one is refused (422)
    with nothing recorded; large ones are profiled by a job (status "profiling")."""
    version = await services.add_version(
        tenant_context(request), dataset_id, data.file_id, ip=_ip(request)
    )
    return Response(version, status_code=HTTP_201_CREATED)


@post("/datasets/{dataset_id:uuid}/masking", opt=PUBLISH, include_in_schema=False)
async def masking_form(request: Req, dataset_id: FromPath[uuid.UUID]) -> Response[Any]:
    ctx = tenant_context(request)
    form = await _form(request)
    rules = {k[5:]: str(v) for k, v in form.items() if k.startswith("rule-")}
    try:
        await services.set_masking(ctx, dataset_id, rules, ip=_ip(request))
    except CanalError as error:
        if error.status >= 500 or error.status == 404:
            raise
        return await _dataset_page(
            request, dataset_id, errors=_errors(request, error), status=error.status
        )
    return redirect(request, f"{_base(ctx.tenant.slug)}/datasets/{dataset_id}")


@post("/datasets/{dataset_id:uuid}/masking", opt=PUBLISH, tags=TAGS, status_code=200)
async def masking_api(
    request: Req, dataset_id: FromPath[uuid.UUID], data: JSONBody[MaskingIn]
) -> dict[str, str]:
    """Per-column masking (keep, generalise, mask, hash, drop); personal data is never kept."""
    return await services.set_masking(
        tenant_context(request), dataset_id, data.rules, ip=_ip(request)
    )


def _privacy_from_form(form: dict[str, Any]) -> services.PrivacyInput:
    """The dataset page's privacy form: ``bound-lo-<column>``/``bound-hi-<column>`` pairs
    and ``categories-<column>`` (one value a line, or separated by commas)."""

    def number(key: str) -> Any:
        raw = str(form.get(key, "")).strip()
        if not raw:
            return None
        try:
            return float(raw)
        except ValueError:
            return "bad"

    bounds: dict[str, list[Any]] = {}
    for key in form:
        if key.startswith("bound-lo-"):
            column = key[len("bound-lo-") :]
            low, high = number(key), number(f"bound-hi-{column}")
            if low is not None or high is not None:
                bounds[column] = [low, high]
    categories = {
        key[len("categories-") :]: [
            v
            for v in str(value).replace("，", ",").replace("\r", "").replace("\n", ",").split(",")
            if v.strip()
        ]
        for key, value in form.items()
        if key.startswith("categories-")
    }
    per_query, total, days, rows = (
        number("epsilon_per_query"),
        number("epsilon_total"),
        number("budget_period_days"),
        number("max_rows_per_person"),
    )
    return services.PrivacyInput(
        max_rows_per_person=-1 if rows == "bad" else (int(rows) if rows is not None else None),
        # Fields the form did not carry keep what is there (the page always sends them all).
        bounds=bounds if any(k.startswith("bound-lo-") for k in form) else None,
        categories=categories if any(k.startswith("categories-") for k in form) else None,
        epsilon_per_query=-1 if per_query == "bad" else per_query,
        epsilon_total=-1 if total == "bad" else total,
        budget_period_days=-1 if days == "bad" else (int(days) if days is not None else None),
        # Checkboxes ``exact-<column>``; ``exact_shown`` says the form carried them.
        exact=[k[len("exact-") :] for k in form if k.startswith("exact-")]
        if "exact_shown" in form
        else None,
    )


@post("/datasets/{dataset_id:uuid}/privacy", opt=PUBLISH, include_in_schema=False)
async def privacy_form(request: Req, dataset_id: FromPath[uuid.UUID]) -> Response[Any]:
    ctx = tenant_context(request)
    form = await _form(request)
    try:
        await services.confirm_privacy(ctx, dataset_id, _privacy_from_form(form), ip=_ip(request))
    except CanalError as error:
        if error.status >= 500 or error.status == 404:
            raise
        return await _dataset_page(
            request, dataset_id, errors=_errors(request, error), status=error.status
        )
    return redirect(request, f"{_base(ctx.tenant.slug)}/datasets/{dataset_id}#privacy-title")


@post("/datasets/{dataset_id:uuid}/privacy", opt=PUBLISH, tags=TAGS, status_code=200)
async def privacy_api(
    request: Req, dataset_id: FromPath[uuid.UUID], data: JSONBody[PrivacyIn]
) -> dict[str, Any]:
    """Confirm (and edit) a version's privacy settings — rows one person contributes, value
    ranges of numeric columns, public categories — and set the dataset's privacy budget (ε per
    query, total ε per period, period in days). Compute-to-data answers only confirmed
    versions (decision 0043)."""
    return await services.confirm_privacy(
        tenant_context(request),
        dataset_id,
        services.PrivacyInput(**msgspec.structs.asdict(data)),
        ip=_ip(request),
    )


@post("/datasets/{dataset_id:uuid}/sensitivity", opt=PUBLISH, include_in_schema=False)
async def sensitivity_form(request: Req, dataset_id: FromPath[uuid.UUID]) -> Response[Any]:
    ctx = tenant_context(request)
    form = await _form(request)
    try:
        await services.justify_sensitivity(
            ctx, dataset_id, str(form.get("justification", "")), ip=_ip(request)
        )
    except CanalError as error:
        if error.status >= 500 or error.status == 404:
            raise
        return await _dataset_page(
            request, dataset_id, errors=_errors(request, error), status=error.status
        )
    return redirect(request, f"{_base(ctx.tenant.slug)}/datasets/{dataset_id}#sensitivity-title")


@post("/datasets/{dataset_id:uuid}/sensitivity", opt=PUBLISH, tags=TAGS, status_code=200)
async def sensitivity_api(
    request: Req, dataset_id: FromPath[uuid.UUID], data: JSONBody[JustificationIn]
) -> dict[str, Any]:
    """When profiling found personal data in a version, it is graded "personal" until the
    provider states in writing why the declared grade is right; the operator sees the text
    in review. An empty text withdraws it. Refused once the version was sent for review."""
    return await services.justify_sensitivity(
        tenant_context(request),
        dataset_id,
        data.justification,
        version=data.version,
        ip=_ip(request),
    )


@post("/datasets/{dataset_id:uuid}/submit", opt=PUBLISH, include_in_schema=False)
async def submit_form(request: Req, dataset_id: FromPath[uuid.UUID]) -> Response[Any]:
    ctx = tenant_context(request)
    try:
        await services.submit_for_review(ctx, dataset_id, ip=_ip(request))
    except CanalError as error:
        if error.status >= 500 or error.status == 404:
            raise
        return await _dataset_page(
            request, dataset_id, errors=_errors(request, error), status=error.status
        )
    return redirect(request, f"{_base(ctx.tenant.slug)}/datasets/{dataset_id}")


@post("/datasets/{dataset_id:uuid}/submit", opt=PUBLISH, tags=TAGS, status_code=204)
async def submit_api(request: Req, dataset_id: FromPath[uuid.UUID]) -> None:
    """Send the dataset to the operator's compliance review."""
    await services.submit_for_review(tenant_context(request), dataset_id, ip=_ip(request))


# --- operator review ------------------------------------------------------------------------


async def _review_view(request: Req) -> dict[str, Any]:
    ctx = tenant_context(request)
    if not services.is_operator(ctx):
        return {"is_operator": False, "datasets": [], "providers": []}
    return {
        "is_operator": True,
        "datasets": [_dataset_out(d) for d in await services.review_queue(ctx)],
        "providers": await services.pending_providers(ctx),
    }


@get("/review", opt=REVIEW, include_in_schema=False)
async def review_page(request: Req) -> Response[str]:
    return _page(request, "review.html", await _review_view(request))


@get("/review", opt=REVIEW, tags=TAGS)
async def review_api(request: Req) -> dict[str, Any]:
    """The operator's compliance queue (other organisations: always empty)."""
    return await _review_view(request)


@post("/review/{dataset_id:uuid}", opt=REVIEW, include_in_schema=False)
async def review_form(request: Req, dataset_id: FromPath[uuid.UUID]) -> Response[Any]:
    ctx = tenant_context(request)
    form = await _form(request)
    try:
        await services.review_dataset(
            ctx,
            dataset_id,
            approve=form.get("decision") == "approve",
            reason=str(form.get("reason", "")),
            ip=_ip(request),
        )
    except CanalError as error:
        if error.status >= 500 or error.status == 404:
            raise
        return await _dataset_page(
            request, dataset_id, errors=_errors(request, error), status=error.status
        )
    return redirect(request, f"{_base(ctx.tenant.slug)}/review")


@post("/review/{dataset_id:uuid}", opt=REVIEW, tags=TAGS, status_code=204)
async def review_dataset_api(
    request: Req, dataset_id: FromPath[uuid.UUID], data: JSONBody[ReviewIn]
) -> None:
    """Approve (publish to the catalogue) or reject a dataset or its new version; both
    need a reason, stored with the version and in the audit trail."""
    await services.review_dataset(
        tenant_context(request),
        dataset_id,
        approve=data.approve,
        reason=data.reason,
        ip=_ip(request),
    )


@post("/providers/{provider_id:uuid}/review", opt=REVIEW, include_in_schema=False)
async def provider_review_form(request: Req, provider_id: FromPath[uuid.UUID]) -> Response[Any]:
    ctx = tenant_context(request)
    form = await _form(request)
    try:
        await services.review_provider(
            ctx,
            provider_id,
            approve=form.get("decision") == "approve",
            reason=str(form.get("reason", "")),
            ip=_ip(request),
        )
    except CanalError as error:
        if error.status >= 500 or error.status == 404:
            raise
        view = await _review_view(request)
        return _page(
            request, "review.html", {**view, "errors": _errors(request, error)}, status=error.status
        )
    return redirect(request, f"{_base(ctx.tenant.slug)}/review")


@post("/providers/{provider_id:uuid}/review", opt=REVIEW, tags=TAGS, status_code=204)
async def provider_review_api(
    request: Req, provider_id: FromPath[uuid.UUID], data: JSONBody[ReviewIn]
) -> None:
    """Approve or reject an organisation's application to be a data provider."""
    await services.review_provider(
        tenant_context(request),
        provider_id,
        approve=data.approve,
        reason=data.reason,
        ip=_ip(request),
    )


# --- grants ---------------------------------------------------------------------------------


async def _grants_view(request: Req) -> dict[str, Any]:
    ctx = tenant_context(request)
    return {
        "incoming": await services.provider_grants(ctx),
        "outgoing": await services.buyer_grants(ctx),
    }


@get("/grants", opt=READ, include_in_schema=False)
async def grants_page(request: Req) -> Response[str]:
    return _page(request, "grants.html", await _grants_view(request))


@get("/grants", opt=READ, tags=TAGS)
async def grants_api(request: Req) -> dict[str, Any]:
    """Requests and grants: ``incoming`` (on our datasets) and ``outgoing`` (ours on others')."""
    return await _grants_view(request)


async def _grant_page(
    request: Req,
    grant_id: uuid.UUID,
    *,
    errors: list[dict[str, str]] | None = None,
    result: Any = None,
    sql: str = "",
    status: int = 200,
    download_url: str | None = None,
    built: dict[str, Any] | None = None,
) -> Response[str]:
    ctx = tenant_context(request)
    grant = await services.grant_for_party(ctx, grant_id)
    queries = await services.grant_queries(ctx, grant_id)
    now = clock.now()
    usable = grant["status"] == "active" and (
        grant["expires_at"] is None or grant["expires_at"] > now
    )
    price: dict[str, Any] | None = None
    compute_columns: list[str] = []
    if grant["side"] == "buyer":
        try:
            listing = await services.get_listing(grant["dataset_id"])
        except CanalError:
            listing = None
        # What the sandbox holds: kept columns without personal data (decision 0031, 2).
        compute_columns = [
            c["name"]
            for c in (listing or {}).get("columns") or []
            if c.get("action") == "keep" and not c.get("pii")
        ]
        price = await services.grant_payment(ctx, grant)
        if price is not None:
            price["amount"] = _yuan(price["amount_fen"])
            usable = usable and price["paid"]
    return _page(
        request,
        "grant.html",
        {
            "g": grant,
            "queries": queries,
            "errors": errors or [],
            "result": result,
            "sql": sql,
            "usable": usable,
            "price": price,
            "just_paid": request.query_params.get("paid") == "1",
            "compute_columns": compute_columns,
            "builder_columns": (
                await services.builder_columns(ctx, grant_id)
                if grant["side"] == "buyer" and "compute" in grant["modes"]
                else []
            ),
            "built": built or {},
            "download_url": download_url,
            "budget": await services.grant_budget(grant),
        },
        status=status,
    )


@get("/grants/{grant_id:uuid}", opt=READ, include_in_schema=False)
async def grant_page(request: Req, grant_id: FromPath[uuid.UUID]) -> Response[str]:
    return await _grant_page(request, grant_id)


@get("/grants/{grant_id:uuid}", opt=READ, tags=TAGS)
async def grant_api(request: Req, grant_id: FromPath[uuid.UUID]) -> dict[str, Any]:
    """A request or grant as either party sees it, with its recent queries."""
    ctx = tenant_context(request)
    grant = await services.grant_for_party(ctx, grant_id)
    payment = await services.grant_payment(ctx, grant) if grant["side"] == "buyer" else None
    return {
        **grant,
        "payment": payment,
        "budget": await services.grant_budget(grant),
        "queries": await services.grant_queries(ctx, grant_id),
    }


@post("/grants/{grant_id:uuid}/decision", opt=TRADE, include_in_schema=False)
async def decision_form(request: Req, grant_id: FromPath[uuid.UUID]) -> Response[Any]:
    ctx = tenant_context(request)
    form = await _form(request)
    days_raw = str(form.get("days", "")).strip()
    try:
        days = int(days_raw) if days_raw else None
    except ValueError:
        days = -1
    versions_raw = str(form.get("versions", "")).replace("，", ",").replace("、", ",")
    try:
        versions = [int(v) for v in versions_raw.split(",") if v.strip()]
    except ValueError:
        versions = [-1]
    try:
        await services.decide_request(
            ctx,
            grant_id,
            approve=form.get("decision") == "approve",
            reason=str(form.get("reason", "")),
            days=days,
            versions=versions,
            ip=_ip(request),
        )
    except CanalError as error:
        if error.status >= 500 or error.status == 404:
            raise
        return await _grant_page(
            request, grant_id, errors=_errors(request, error), status=error.status
        )
    return redirect(request, f"{_base(ctx.tenant.slug)}/grants/{grant_id}")


@post("/grants/{grant_id:uuid}/decision", opt=TRADE, tags=TAGS, status_code=204)
async def decision_api(
    request: Req, grant_id: FromPath[uuid.UUID], data: JSONBody[DecisionIn]
) -> None:
    """The provider approves (optionally shorter than the licence, optionally only some
    versions) or declines with a reason."""
    await services.decide_request(
        tenant_context(request),
        grant_id,
        approve=data.approve,
        reason=data.reason,
        days=data.days,
        versions=data.versions,
        ip=_ip(request),
    )


@post("/grants/{grant_id:uuid}/revoke", opt=TRADE, include_in_schema=False)
async def revoke_form(request: Req, grant_id: FromPath[uuid.UUID]) -> Response[Any]:
    ctx = tenant_context(request)
    form = await _form(request)
    try:
        await services.revoke_grant(
            ctx, grant_id, reason=str(form.get("reason", "")), ip=_ip(request)
        )
    except CanalError as error:
        if error.status >= 500 or error.status == 404:
            raise
        return await _grant_page(
            request, grant_id, errors=_errors(request, error), status=error.status
        )
    return redirect(request, f"{_base(ctx.tenant.slug)}/grants/{grant_id}")


@post("/grants/{grant_id:uuid}/revoke", opt=TRADE, tags=TAGS, status_code=204)
async def revoke_api(request: Req, grant_id: FromPath[uuid.UUID], data: JSONBody[RevokeIn]) -> None:
    """Revoke a grant: download, queries and the API stop at once."""
    await services.revoke_grant(
        tenant_context(request), grant_id, reason=data.reason, ip=_ip(request)
    )


def _grant_here(request: Req, grant_id: uuid.UUID) -> tuple[str, str]:
    """Where Stripe sends the buyer back: the grant page (from the settings, never the Host
    header), marked so the page says the payment is being confirmed."""
    base = str(request.app.state.settings.base_url).rstrip("/")
    here = f"{base}{_base(tenant_context(request).tenant.slug)}/grants/{grant_id}"
    return here + "?paid=1", here


@post("/grants/{grant_id:uuid}/payment", opt=TRADE, include_in_schema=False)
async def payment_form(request: Req, grant_id: FromPath[uuid.UUID]) -> Response[Any]:
    ctx = tenant_context(request)
    try:
        started = await services.pay_for_grant(
            ctx, grant_id, checkout=_grant_here(request, grant_id), hosted=True
        )
    except CanalError as error:
        if error.status >= 500 or error.status == 404:
            raise
        return await _grant_page(
            request, grant_id, errors=_errors(request, error), status=error.status
        )
    if started.checkout_url:  # Stripe's hosted page (card, Alipay, WeChat Pay)
        return redirect(request, started.checkout_url)
    return redirect(request, f"{_base(ctx.tenant.slug)}/grants/{grant_id}")


class PaymentOut(msgspec.Struct):
    status: str
    amount_fen: int
    client_secret: str | None = None
    checkout_url: str | None = None


@post("/grants/{grant_id:uuid}/payment", opt=TRADE, tags=TAGS, status_code=HTTP_201_CREATED)
async def payment_api(request: Req, grant_id: FromPath[uuid.UUID]) -> PaymentOut:
    """Pay for an approved grant on a paid dataset through the shared billing (idempotent:
    one payment per grant). A one-off price answers a PaymentIntent ``client_secret`` to
    confirm with Stripe.js; a subscription answers a Checkout ``checkout_url`` (subscription
    mode). The webhook opens the grant. No-charge mode: ``status`` "succeeded" at once."""
    started = await services.pay_for_grant(
        tenant_context(request), grant_id, checkout=_grant_here(request, grant_id)
    )
    return PaymentOut(
        started.status, started.amount_fen, started.client_secret, started.checkout_url
    )


@post("/grants/{grant_id:uuid}/subscription/cancel", opt=TRADE, include_in_schema=False)
async def cancel_subscription_form(request: Req, grant_id: FromPath[uuid.UUID]) -> Response[Any]:
    ctx = tenant_context(request)
    try:
        await services.cancel_subscription(ctx, grant_id, ip=_ip(request))
    except CanalError as error:
        if error.status >= 500 or error.status == 404:
            raise
        return await _grant_page(
            request, grant_id, errors=_errors(request, error), status=error.status
        )
    return redirect(request, f"{_base(ctx.tenant.slug)}/grants/{grant_id}")


@post("/grants/{grant_id:uuid}/subscription/cancel", opt=TRADE, tags=TAGS, status_code=HTTP_200_OK)
async def cancel_subscription_api(request: Req, grant_id: FromPath[uuid.UUID]) -> dict[str, Any]:
    """Stop renewing the dataset subscription: the grant stays usable until the paid period
    ends (``expires_at``), then ends. Answers the grant with its payment state."""
    ctx = tenant_context(request)
    await services.cancel_subscription(ctx, grant_id, ip=_ip(request))
    grant = await services.grant_for_party(ctx, grant_id)
    return {**grant, "payment": await services.grant_payment(ctx, grant)}


@post("/grants/{grant_id:uuid}/download", opt=USE, include_in_schema=False)
async def download_form(request: Req, grant_id: FromPath[uuid.UUID]) -> Response[Any]:
    try:
        url = await services.deliver_download(tenant_context(request), grant_id, ip=_ip(request))
    except CanalError as error:
        if error.status >= 500 or error.status == 404:
            raise
        return await _grant_page(
            request, grant_id, errors=_errors(request, error), status=error.status
        )
    # A link, not a redirect: the page's CSP (form-action 'self') makes the browser refuse a
    # form post that redirects to the object store's origin.
    page = await _grant_page(request, grant_id, download_url=url)
    page.headers["Cache-Control"] = "no-store"
    return page


@post("/grants/{grant_id:uuid}/download", opt=USE, tags=TAGS, status_code=HTTP_201_CREATED)
async def download_api(
    request: Req, grant_id: FromPath[uuid.UUID], version: FromQuery[int | None] = None
) -> DownloadOut:
    """A masked, fingerprinted copy for this grant, as a five-minute presigned URL; of
    ``version`` if given (one the grant covers), else the newest."""
    url = await services.deliver_download(
        tenant_context(request), grant_id, version_number=version, ip=_ip(request)
    )
    return DownloadOut(url, 300)


@post("/grants/{grant_id:uuid}/queries", opt=USE, include_in_schema=False)
async def query_form(request: Req, grant_id: FromPath[uuid.UUID]) -> Response[Any]:
    form = await _form(request)
    sql = str(form.get("sql", ""))
    try:
        answer = await services.run_compute(tenant_context(request), grant_id, sql, ip=_ip(request))
    except CanalError as error:
        if error.status >= 500 or error.status == 404:
            raise
        errors = [
            {"field": "sql", "code": error.code, "message": error.message(request_locale(request))}
        ]
        return await _grant_page(request, grant_id, errors=errors, sql=sql, status=error.status)
    return await _grant_page(request, grant_id, result=answer, sql=sql)


def _built_from_form(form: dict[str, Any]) -> builder.BuilderInput:
    return builder.BuilderInput(
        aggregate=str(form.get("aggregate", "count")),
        measure=str(form.get("measure", "")),
        group_by=str(form.get("group_by", "")),
        filters=[
            builder.Filter(
                str(form.get(f"filter-column-{i}", "")),
                str(form.get(f"filter-op-{i}", "=")),
                str(form.get(f"filter-value-{i}", "")),
            )
            for i in range(1, builder.MAX_FILTERS + 1)
        ],
    )


@post("/grants/{grant_id:uuid}/queries/build", opt=USE, include_in_schema=False)
async def build_query_form(request: Req, grant_id: FromPath[uuid.UUID]) -> Response[Any]:
    """The query builder's form: its choices become SQL, run like a typed query; the SQL
    is shown in the advanced view's textarea."""
    form = await _form(request)
    built = {k: str(v) for k, v in form.items() if k != "_csrf"}
    try:
        sql, answer = await services.run_built_query(
            tenant_context(request), grant_id, _built_from_form(form), ip=_ip(request)
        )
    except CanalError as error:
        if error.status >= 500 or error.status == 404:
            raise
        errors = _errors(request, error)
        if not error.errors:
            errors = [{**e, "field": "builder"} for e in errors]
        return await _grant_page(request, grant_id, errors=errors, status=error.status, built=built)
    return await _grant_page(request, grant_id, result=answer, sql=sql, built=built)


@post("/grants/{grant_id:uuid}/queries/build", opt=USE, tags=TAGS, status_code=HTTP_201_CREATED)
async def build_query_api(
    request: Req, grant_id: FromPath[uuid.UUID], data: JSONBody[BuildIn]
) -> dict[str, Any]:
    """The query builder: choices (aggregate, measure, a public-category grouping, filters)
    become SQL, answered like ``POST …/queries`` (same checks, noise and budget); the answer
    includes the ``sql`` built, to reuse in the advanced view."""
    choices = builder.BuilderInput(
        aggregate=data.aggregate,
        measure=data.measure,
        group_by=data.group_by,
        filters=[builder.Filter(f.column, f.op, f.value) for f in data.filters],
    )
    sql, answer = await services.run_built_query(
        tenant_context(request), grant_id, choices, version_number=data.version, ip=_ip(request)
    )
    return {**_answer_out(answer), "sql": sql}


@post("/grants/{grant_id:uuid}/queries", opt=USE, tags=TAGS, status_code=HTTP_201_CREATED)
async def query_api(
    request: Req, grant_id: FromPath[uuid.UUID], data: JSONBody[QueryIn]
) -> dict[str, Any]:
    """Compute-to-data: one aggregate query (count, sum, avg; grouped by the public
    categories) over the table ``data``, answered with differential privacy: ``rows`` are
    rounded to what the noise allows, ``margins`` give each value's ± at 95 %, ``hidden``
    marks groups with too few people to show values; ``epsilon`` is what the query cost the
    dataset's budget (0 when the same query was answered before: ``cached``)."""
    answer = await services.run_compute(
        tenant_context(request), grant_id, data.sql, version_number=data.version, ip=_ip(request)
    )
    return _answer_out(answer)


def _answer_out(answer: services.QueryAnswer) -> dict[str, Any]:
    return {
        "id": answer.id,
        "columns": answer.columns,
        "rows": answer.rows,
        "margins": answer.margins,
        "hidden": answer.hidden,
        "confidence": 0.95,
        "epsilon": answer.epsilon,
        "cached": answer.cached,
        "budget": answer.budget,
        "remaining_today": answer.remaining_today,
    }


async def _rows(
    request: Req, grant_id: uuid.UUID, page_no: int, size: int, version: int | None = None
) -> services.RowsPage:
    return await services.api_rows(
        tenant_context(request),
        grant_id,
        page=page_no,
        size=size,
        redis=request.app.state.redis,
        version_number=version,
        ip=_ip(request),
    )


@get("/grants/{grant_id:uuid}/rows", opt=USE, include_in_schema=False)
async def rows_page(
    request: Req,
    grant_id: FromPath[uuid.UUID],
    page_no: FromQuery[int] = 1,
    size: FromQuery[int] = 50,
    version: FromQuery[int | None] = None,
) -> Response[str]:
    result = await _rows(request, grant_id, page_no, size, version)
    grant = await services.grant_for_party(tenant_context(request), grant_id)
    return _page(request, "rows.html", {"g": grant, "r": result})


@get("/grants/{grant_id:uuid}/rows", opt=USE, tags=TAGS)
async def rows_api(
    request: Req,
    grant_id: FromPath[uuid.UUID],
    page_no: FromQuery[int] = 1,
    size: FromQuery[int] = 100,
    version: FromQuery[int | None] = None,
) -> dict[str, Any]:
    """The data API: masked rows, ``size`` (≤ 500) per page, rate-limited per grant; of
    ``version`` if given (one the grant covers), else the newest."""
    r = await _rows(request, grant_id, page_no, size, version)
    return {"columns": r.columns, "rows": r.rows, "page": r.page, "size": r.size, "total": r.total}


# --- usage audit ----------------------------------------------------------------------------


async def _usage_view(request: Req) -> dict[str, Any]:
    ctx = tenant_context(request)
    events = await services.usage_events(ctx)
    return {
        "events": events,
        # What per-query prices cost us, month by month, as billing will invoice it.
        "statement": await services.query_statement(ctx),
        "series": services.usage_series(events),
        "is_operator": services.is_operator(ctx),
    }


@get("/usage", opt=READ, include_in_schema=False)
async def usage_page(request: Req) -> Response[str]:
    view = await _usage_view(request)
    zh = _zh(request)
    s = view["series"]
    names = {
        "sample": ("查看样本", "Sample views"),
        "download": ("下载", "Downloads"),
        "query": ("查询", "Queries"),
        "api_page": ("接口分页", "API pages"),
        "purchase": ("购买", "Purchases"),
    }
    chart = {
        "tooltip": {"trigger": "axis"},
        "legend": {},
        "xAxis": {"type": "category", "data": s["days"]},
        "yAxis": [{"type": "value"}, {"type": "value", "name": "¥"}],
        "series": [
            {
                "name": names[k][0 if zh else 1],
                "type": "bar",
                "stack": "uses",
                "data": s["series"][k],
            }
            for k in names
        ]
        + [
            {
                "name": "收入" if zh else "Revenue",
                "type": "line",
                "yAxisIndex": 1,
                "data": s["series"]["revenue"],
            }
        ],
    }
    return _page(request, "usage.html", {**view, "chart": chart})


@get("/usage", opt=READ, tags=TAGS)
async def usage_api(request: Req) -> dict[str, Any]:
    """Every recorded use (sample views, downloads, queries, API pages) visible to this
    organisation — the operator sees all — with daily series for charts."""
    return await _usage_view(request)


@get("/", opt=READ, include_in_schema=False)
async def home_page(request: Req) -> Response[str]:
    """The module's start page is the catalogue."""
    rows = await services.search_catalogue(services.CatalogueFilter())
    return _page(
        request, "catalogue.html", {"rows": rows, "flt": services.CatalogueFilter(), "yuan": _yuan}
    )


@get("/", opt=READ, tags=TAGS)
async def home_api(request: Req) -> list[dict[str, Any]]:
    """The module's start: the newest approved listings (as ``GET …/catalogue``)."""
    return [
        {k: v for k, v in r.items() if k not in ("sample", "columns")}
        for r in await services.search_catalogue(services.CatalogueFilter())
    ]


PAGES = [
    home_page,
    catalogue_page,
    listing_page,
    request_form,
    provider_page,
    provider_form,
    datasets_page,
    dataset_new_page,
    dataset_create_form,
    dataset_page,
    version_upload_form,
    masking_form,
    privacy_form,
    sensitivity_form,
    submit_form,
    review_page,
    review_form,
    provider_review_form,
    grants_page,
    grant_page,
    decision_form,
    revoke_form,
    payment_form,
    cancel_subscription_form,
    download_form,
    query_form,
    build_query_form,
    rows_page,
    usage_page,
]
API = [
    home_api,
    catalogue_api,
    listing_api,
    request_api,
    provider_api,
    provider_apply_api,
    datasets_api,
    dataset_create_api,
    dataset_api,
    version_add_api,
    masking_api,
    privacy_api,
    sensitivity_api,
    submit_api,
    review_api,
    review_dataset_api,
    provider_review_api,
    grants_api,
    grant_api,
    decision_api,
    revoke_api,
    payment_api,
    cancel_subscription_api,
    download_api,
    query_api,
    build_query_api,
    rows_api,
    usage_api,
]

# Any signed-in person's read-only catalogue (ModuleSpec.public_handlers: own paths).
PUBLIC = [public_catalogue_page, public_catalogue_api, public_listing_page, public_listing_api]

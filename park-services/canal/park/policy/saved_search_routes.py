"""Routes of saved catalogue searches: ``/policies/saved`` (a signed-in person's own) and the
JSON twins under ``/api/v1/policies/saved``. Another person's saved search answers 404."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath, JSONBody
from litestar.response import Redirect

from canal.park.policy import saved_searches, services
from canal.platform.http.errors import CanalError
from canal.platform.http.tenancy import current_principal
from canal.web.i18n import request_locale
from canal.web.render import page, redirect

Req = Request[Any, Any, Any]
USER = {"access": "user"}
TAGS = ["policy"]
LIST = "/policies/saved"


class SavedSearchIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    q: str = ""
    level: str = ""
    support_type: str = ""
    open: bool = False
    closing: bool = False


class RenameIn(msgspec.Struct, forbid_unknown_fields=True):
    # Optional in the schema so that someone else's search answers 404 before any 422.
    name: str = ""


class SavedSearchOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    q: str
    level: str
    support_type: str
    open: bool
    closing: bool
    url: str  # the catalogue page showing this search


class CreatedOut(msgspec.Struct):
    id: uuid.UUID


class Done(msgspec.Struct):
    ok: bool = True


def _out(row: dict[str, Any]) -> SavedSearchOut:
    params = saved_searches.params_of(row)
    return SavedSearchOut(
        row["id"],
        row["name"],
        params.query,
        params.level,
        params.support_type,
        params.open_now,
        params.closing_soon,
        _catalogue_url(params),
    )


def _catalogue_url(params: saved_searches.SearchParams) -> str:
    qs = urlencode(params.query_string())
    return f"/policies?{qs}" if qs else "/policies"


def _errors(request: Req, exc: CanalError) -> list[dict[str, str]]:
    locale = request_locale(request)
    if exc.errors:
        return [e.for_locale(locale) for e in exc.errors]
    return [{"field": "", "code": exc.code, "message": exc.message(locale)}]


async def _list_page(
    request: Req,
    *,
    errors: list[dict[str, str]] | None = None,
    draft: dict[str, str] | None = None,
    status: int = 200,
) -> Response[str]:
    rows = await saved_searches.list_saved(current_principal(request).user_id)
    locale = request_locale(request)
    return page(
        request,
        "policy/saved_searches.html",
        {
            "rows": [(r, _out(r)) for r in rows],
            "errors": errors or [],
            "draft": draft,
            "lbl": lambda table, key: services.label(table, key, locale),
            "LEVELS": services.LEVELS,
            "SUPPORT_TYPES": services.SUPPORT_TYPES,
        },
        status=status,
    )


async def _form(request: Req) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


@get(LIST, opt=USER, include_in_schema=False)
async def saved_page(request: Req) -> Response[str]:
    return await _list_page(request)


@get(f"/api/v1{LIST}", opt=USER, tags=TAGS, summary="My saved policy searches")
async def saved_api(request: Req) -> list[SavedSearchOut]:
    return [_out(r) for r in await saved_searches.list_saved(current_principal(request).user_id)]


@post(LIST, opt=USER, include_in_schema=False)
async def save_form(request: Req) -> Response[Any]:
    form = await _form(request)
    try:
        name, params = saved_searches.parse_params(form)
        await saved_searches.save_search(current_principal(request).user_id, name, params)
    except CanalError as exc:
        if exc.status >= 500:
            raise
        return await _list_page(
            request, errors=_errors(request, exc), draft=form, status=exc.status
        )
    return redirect(request, LIST)


@post(
    f"/api/v1{LIST}",
    opt=USER,
    tags=TAGS,
    summary="Save a catalogue search (alerts on new matching policies)",
)
async def save_api(request: Req, data: JSONBody[SavedSearchIn]) -> CreatedOut:
    """``q``, ``level``, ``support_type``, ``open``, ``closing`` as in ``GET /api/v1/policies``.
    When a policy that this search finds is published (or a new version of it), the owner is
    notified once per version (kind ``policy_search_alert``)."""
    name, params = saved_searches.parse_params(msgspec.structs.asdict(data))
    return CreatedOut(
        await saved_searches.save_search(current_principal(request).user_id, name, params)
    )


@get(f"{LIST}/{{saved_search_id:uuid}}", opt=USER, include_in_schema=False)
async def open_saved(request: Req, saved_search_id: FromPath[uuid.UUID]) -> Response[Any]:
    """Run the saved search: the catalogue page with its keyword and filters."""
    row = await saved_searches.get_saved(current_principal(request).user_id, saved_search_id)
    return Redirect(_out(row).url, status_code=303)


@get(f"/api/v1{LIST}/{{saved_search_id:uuid}}", opt=USER, tags=TAGS, summary="A saved search")
async def saved_one_api(request: Req, saved_search_id: FromPath[uuid.UUID]) -> SavedSearchOut:
    return _out(await saved_searches.get_saved(current_principal(request).user_id, saved_search_id))


@post(f"{LIST}/{{saved_search_id:uuid}}", opt=USER, include_in_schema=False)
async def rename_form(request: Req, saved_search_id: FromPath[uuid.UUID]) -> Response[Any]:
    form = await _form(request)
    user_id = current_principal(request).user_id
    try:
        await saved_searches.rename_search(user_id, saved_search_id, form.get("name", ""))
    except CanalError as exc:
        if exc.status >= 500 or exc.status == 404:
            raise
        errors = [e | {"field": f"{saved_search_id}.name"} for e in _errors(request, exc)]
        return await _list_page(request, errors=errors, status=exc.status)
    return redirect(request, LIST)


@post(
    f"/api/v1{LIST}/{{saved_search_id:uuid}}",
    opt=USER,
    tags=TAGS,
    summary="Rename a saved search",
    status_code=200,
)
async def rename_api(
    request: Req, saved_search_id: FromPath[uuid.UUID], data: JSONBody[RenameIn]
) -> SavedSearchOut:
    user_id = current_principal(request).user_id
    await saved_searches.rename_search(user_id, saved_search_id, data.name)
    return _out(await saved_searches.get_saved(user_id, saved_search_id))


@post(f"{LIST}/{{saved_search_id:uuid}}/delete", opt=USER, include_in_schema=False)
async def delete_form(request: Req, saved_search_id: FromPath[uuid.UUID]) -> Response[Any]:
    await saved_searches.delete_search(current_principal(request).user_id, saved_search_id)
    return redirect(request, LIST)


@post(
    f"/api/v1{LIST}/{{saved_search_id:uuid}}/delete",
    opt=USER,
    tags=TAGS,
    summary="Delete a saved search",
    status_code=200,
)
async def delete_api(request: Req, saved_search_id: FromPath[uuid.UUID]) -> Done:
    await saved_searches.delete_search(current_principal(request).user_id, saved_search_id)
    return Done()


ROUTES = [
    saved_page,
    saved_api,
    save_form,
    save_api,
    open_saved,
    saved_one_api,
    rename_form,
    rename_api,
    delete_form,
    delete_api,
]

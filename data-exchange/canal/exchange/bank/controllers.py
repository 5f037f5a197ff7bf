"""Data bank routes: an organisation's at ``/t/{slug}/bank/…``, a verified person's at
``/me/bank/…``, each page with its JSON twin under ``/api/v1``, plus the public share link
``/bank/s/{token}``.

The two spaces have the same routes, made by ``_routes(kind)``; the handlers only find the
space (``tenant_space`` / ``personal_space``, which demands real-name verification) and call
``services``. Page forms that fail validation re-render their page with status 422 and the
errors beside the fields; the API answers problem+json with the same codes.
"""

# No ``from __future__ import annotations``: the handlers are made inside ``_routes`` and
# Litestar reads their annotations, which must be real objects there.

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.response import Redirect, Stream
from litestar.status_codes import HTTP_201_CREATED

from canal.platform.http.errors import CanalError, FieldError, invalid
from canal.platform.http.tenancy import current_principal, tenant_context
from canal.platform.storage import validation
from canal.platform.storage.controllers import _body_source
from canal.platform.storage.services import DEFAULT_GET_EXPIRY, PURPOSES
from canal.web.i18n import request_locale
from canal.web.render import page, redirect

from . import services
from .services import Space

Req = Request[Any, Any, Any]
TAGS = ["data bank"]
BODY_LIMIT = PURPOSES[services.PURPOSE].max_bytes + validation.MB
EXPIRES_IN = int(DEFAULT_GET_EXPIRY.total_seconds())


# --- shapes -----------------------------------------------------------------------------------


class FolderIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    parent_id: uuid.UUID | None = None


class RenameIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class MoveIn(msgspec.Struct, forbid_unknown_fields=True):
    target_id: uuid.UUID | None = None  # None: to the top of the bank


class ShareIn(msgspec.Struct, forbid_unknown_fields=True):
    days: int = 7
    max_downloads: int | None = None


class ChunkedIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    size: int
    folder_id: uuid.UUID | None = None
    file_id: uuid.UUID | None = None  # a new version of this file (its name is kept)


class BackupIn(msgspec.Struct, forbid_unknown_fields=True):
    schedule: str
    keep: int = 7


class ListingOut(msgspec.Struct):
    listing: services.Listing
    usage: services.BankUsage
    backups: list[services.Backup]


class ShareOut(msgspec.Struct):
    share: services.Share
    url: str


class DownloadOut(msgspec.Struct):
    url: str
    expires_in: int


class CountOut(msgspec.Struct):
    count: int


class SharedOut(msgspec.Struct):
    file: services.SharedFile
    download: str


def _ip(request: Req) -> str:
    return request.client.host if request.client else ""


def _uuid_or_none(raw: str | None, field: str) -> uuid.UUID | None:
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise invalid(
            [FieldError(field, "folder_invalid", "请选择一个文件夹。", "Choose a folder.")]
        ) from None


def _int(raw: str | None, field: str, default: int | None) -> int | None:
    if raw is None or not raw.strip():
        return default
    try:
        return int(raw.strip())
    except ValueError:
        raise invalid(
            [FieldError(field, "number_invalid", "请填写一个整数。", "Enter a whole number.")]
        ) from None


async def _form(request: Req) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _share_url(request: Req, token: str) -> str:
    return f"{request.base_url}".rstrip("/") + f"/bank/s/{token}"


# --- page rendering ---------------------------------------------------------------------------


def _may(space: Space, resource: str, action: str) -> bool:
    """Which forms to show: in an organisation ``bank:write`` (members too) adds and
    organises files, ``files:write`` (admins, owners) shares, archives, backs up and empties
    the bin (decision 0041). A person may do everything in their own bank."""
    if space.ctx is None:
        return True
    from canal.platform.access.services import access

    return bool(access().enforce(space.user_id, space.ctx.tenant_id, resource, action))


def _rights(space: Space) -> dict[str, bool]:
    return {"can_add": _may(space, "bank", "write"), "can_manage": _may(space, "files", "write")}


def _errors(request: Req, error: CanalError) -> list[dict[str, str]]:
    return [e.for_locale(request_locale(request)) for e in error.errors]


async def _listing_page(
    request: Req,
    space: Space,
    folder_id: uuid.UUID | None,
    *,
    errors: list[dict[str, str]] | None = None,
    status: int = 200,
    form: dict[str, str] | None = None,
) -> Response[str]:
    listing = await services.list_folder(space, folder_id)
    usage = await services.usage(space)
    backups = await services.list_backups(space, folder_id) if folder_id else []
    uploads = await services.list_uploads(space) if _may(space, "bank", "write") else []
    zip_plan = await services.plan_folder_zip(space, folder_id) if folder_id else None
    return page(
        request,
        "bank/index.html",
        {
            "space": space,
            "base": space.base_url,
            "listing": listing,
            "usage": usage,
            "backups": backups,
            "uploads": uploads,
            "zip_plan": zip_plan,
            "zip_refusal": services.zip_refusal(zip_plan) if zip_plan else None,
            "locale": request_locale(request),
            "human": validation.human_size,
            "errors": errors or [],
            "form": form or {},
            "trash_days": services.TRASH_DAYS,
            "chunk_above": services.PART_SIZE,
            **_rights(space),
        },
        status=status,
    )


async def _file_page(
    request: Req,
    space: Space,
    file_id: uuid.UUID,
    *,
    errors: list[dict[str, str]] | None = None,
    status: int = 200,
    new_link: str | None = None,
) -> Response[str]:
    detail = await services.file_detail(space, file_id)
    return page(
        request,
        "bank/file.html",
        {
            "space": space,
            "base": space.base_url,
            "detail": detail,
            "human": validation.human_size,
            "errors": errors or [],
            "new_link": new_link,
            "max_days": services.SHARE_MAX_DAYS,
            "chunk_above": services.PART_SIZE,
            **_rights(space),
        },
        status=status,
    )


async def _or_rerender(
    request: Req,
    action: Callable[[], Awaitable[Any]],
    rerender: Callable[[list[dict[str, str]], int], Awaitable[Response[str]]],
) -> Any:
    """Run a form's action; a refusal with field errors re-renders the page beside them."""
    try:
        return await action()
    except CanalError as error:
        if not error.errors or error.status >= 500:
            raise
        return await rerender(_errors(request, error), error.status)


async def verified_guard(connection: Any, _handler: Any) -> None:
    """A person's bank needs real-name verification: refused before any body is read, so
    an unverified caller learns nothing from how a request body would have been judged."""
    principal = connection.scope.get("user")
    if principal is None:
        return  # the access guard (which runs first) has already refused
    if connection.scope.get("method") == "GET" and not connection.url.path.startswith("/api/"):
        return  # a page explains how to get verified instead (``page_space``)
    connection.state.bank_space = await services.personal_space(principal.user_id)


# --- the routes of one space ------------------------------------------------------------------


def _routes(kind: str) -> list[Any]:
    tenant = kind == "tenant"
    prefix = "/t/{tenant_slug:str}/bank" if tenant else "/me/bank"
    api = "/api/v1" + prefix
    read = {"access": "tenant", "permission": ("files", "read")} if tenant else {"access": "user"}
    write = {"access": "tenant", "permission": ("files", "write")} if tenant else {"access": "user"}
    add = {"access": "tenant", "permission": ("bank", "write")} if tenant else {"access": "user"}
    folder = "/folders/{bank_folder_id:uuid}"
    file = "/files/{bank_file_id:uuid}"

    async def space_of(request: Req) -> Space:
        if tenant:
            return services.tenant_space(tenant_context(request))
        space = request.state.get("bank_space")
        if isinstance(space, Space):
            return space
        return await services.personal_space(current_principal(request).user_id)

    def folder_id(request: Req) -> uuid.UUID:
        return uuid.UUID(str(request.path_params["bank_folder_id"]))

    def file_id(request: Req) -> uuid.UUID:
        return uuid.UUID(str(request.path_params["bank_file_id"]))

    async def page_space(request: Req) -> Space | Response[str]:
        """The space, or for an unverified person the page that says how to get verified."""
        try:
            return await space_of(request)
        except CanalError as error:
            if error.code != "realname_required":
                raise
            return page(request, "bank/verify.html", {}, status=403)

    handlers: list[Any] = []

    def route(handler: Any) -> Any:
        if not tenant:
            handler.guards = [*(handler.guards or []), verified_guard]
        handlers.append(handler)
        return handler

    # --- browsing ---------------------------------------------------------------------------

    @route
    @get(prefix, opt=read, include_in_schema=False, name=f"bank-{kind}-home")
    async def home_page(request: Req) -> Response[str]:
        space = await page_space(request)
        if not isinstance(space, Space):
            return space
        return await _listing_page(request, space, None)

    @route
    @get(api, opt=read, tags=TAGS, name=f"bank-{kind}-home-api")
    async def home_api(request: Req) -> ListingOut:
        """The top of the bank: its folders and files, usage against the quota."""
        space = await space_of(request)
        return ListingOut(await services.list_folder(space, None), await services.usage(space), [])

    @route
    @get(prefix + folder, opt=read, include_in_schema=False, name=f"bank-{kind}-folder")
    async def folder_page(request: Req) -> Response[str]:
        space = await page_space(request)
        if not isinstance(space, Space):
            return space
        return await _listing_page(request, space, folder_id(request))

    @route
    @get(api + folder, opt=read, tags=TAGS, name=f"bank-{kind}-folder-api")
    async def folder_api(request: Req) -> ListingOut:
        """A folder's subfolders and files (and, for an organisation, its kept backups)."""
        space = await space_of(request)
        fid = folder_id(request)
        return ListingOut(
            await services.list_folder(space, fid),
            await services.usage(space),
            await services.list_backups(space, fid),
        )

    async def zip_response(request: Req) -> Stream:
        name, chunks = await services.folder_zip(
            await space_of(request), folder_id(request), ip=_ip(request)
        )
        return Stream(
            chunks,
            media_type="application/zip",
            headers={
                "Content-Disposition": validation.content_disposition(name),
                "Cache-Control": "no-store",
            },
        )

    @route
    @get(prefix + folder + "/zip", opt=read, include_in_schema=False, name=f"bank-{kind}-zip")
    async def folder_zip_download(request: Req) -> Stream:
        return await zip_response(request)

    @route
    @get(
        api + folder + "/zip",
        opt=read,
        tags=TAGS,
        name=f"bank-{kind}-zip-api",
        media_type="application/zip",
    )
    async def folder_zip_api(request: Req) -> Stream:
        """The folder with everything under it as one ZIP (current versions; archived files
        are left out and listed in a note). Streamed. Refused with 413 ``zip_too_large``
        above 1,000 files or 1 GB, 409 ``folder_empty`` when there is nothing to download."""
        return await zip_response(request)

    # --- folders ------------------------------------------------------------------------------

    @route
    @post(prefix + "/folders", opt=add, include_in_schema=False, name=f"bank-{kind}-mkdir")
    async def create_folder_form(request: Req) -> Response[Any]:
        space = await space_of(request)
        form = await _form(request)
        parent = _uuid_or_none(form.get("parent"), "parent")

        async def act() -> Any:
            made = await services.create_folder(space, parent, form.get("name", ""))
            return redirect(request, f"{space.base_url}/folders/{made.id}")

        return await _or_rerender(
            request,
            act,
            lambda errors, status: _listing_page(
                request, space, parent, errors=errors, status=status, form=form
            ),
        )

    @route
    @post(
        api + "/folders",
        opt=add,
        tags=TAGS,
        status_code=HTTP_201_CREATED,
        name=f"bank-{kind}-mkdir-api",
    )
    async def create_folder_api(request: Req, data: FolderIn) -> services.Folder:
        """Create a folder (at the top, or inside ``parent_id``)."""
        return await services.create_folder(await space_of(request), data.parent_id, data.name)

    @route
    @post(
        prefix + folder + "/rename",
        opt=add,
        include_in_schema=False,
        name=f"bank-{kind}-rename-folder",
    )
    async def rename_folder_form(request: Req) -> Response[Any]:
        space = await space_of(request)
        fid = folder_id(request)
        form = await _form(request)

        async def act() -> Any:
            await services.rename_folder(space, fid, form.get("name", ""))
            return redirect(request, f"{space.base_url}/folders/{fid}")

        return await _or_rerender(
            request,
            act,
            lambda errors, status: _listing_page(request, space, fid, errors=errors, status=status),
        )

    @route
    @post(
        api + folder + "/rename",
        opt=add,
        tags=TAGS,
        status_code=200,
        name=f"bank-{kind}-rename-folder-api",
    )
    async def rename_folder_api(request: Req, data: RenameIn) -> services.Folder:
        """Rename a folder (names with / \\ . .. or control characters are refused)."""
        return await services.rename_folder(await space_of(request), folder_id(request), data.name)

    @route
    @post(
        prefix + folder + "/move",
        opt=add,
        include_in_schema=False,
        name=f"bank-{kind}-move-folder",
    )
    async def move_folder_form(request: Req) -> Response[Any]:
        space = await space_of(request)
        fid = folder_id(request)

        async def act() -> Any:
            form = await _form(request)
            await services.move_folder(space, fid, _uuid_or_none(form.get("target"), "target"))
            return redirect(request, f"{space.base_url}/folders/{fid}")

        return await _or_rerender(
            request,
            act,
            lambda errors, status: _listing_page(request, space, fid, errors=errors, status=status),
        )

    @route
    @post(
        api + folder + "/move",
        opt=add,
        tags=TAGS,
        status_code=200,
        name=f"bank-{kind}-move-folder-api",
    )
    async def move_folder_api(request: Req, data: MoveIn) -> services.Folder:
        """Move a folder under another (not into itself or its own subfolders)."""
        return await services.move_folder(
            await space_of(request), folder_id(request), data.target_id
        )

    @route
    @post(
        prefix + folder + "/delete",
        opt=add,
        include_in_schema=False,
        name=f"bank-{kind}-delete-folder",
    )
    async def delete_folder_form(request: Req) -> Response[Any]:
        space = await space_of(request)
        found = await services.get_folder(space, folder_id(request))
        await services.delete_folder(space, found.id, ip=_ip(request))
        back = f"/folders/{found.parent_id}" if found.parent_id else ""
        return redirect(request, space.base_url + back)

    @route
    @post(
        api + folder + "/delete",
        opt=add,
        tags=TAGS,
        status_code=204,
        name=f"bank-{kind}-delete-folder-api",
    )
    async def delete_folder_api(request: Req) -> None:
        """Move a folder and everything in it to the recycle bin."""
        await services.delete_folder(await space_of(request), folder_id(request), ip=_ip(request))

    # --- uploads and files -----------------------------------------------------------------------

    @route
    @post(
        prefix + "/upload",
        opt=add,
        include_in_schema=False,
        request_max_body_size=BODY_LIMIT,
        name=f"bank-{kind}-upload",
    )
    async def upload_form(request: Req) -> Response[Any]:
        """The page's upload form: multipart with ``folder`` before ``file``, streamed."""
        space = await space_of(request)
        fields: dict[str, str] = {}
        parent: uuid.UUID | None = None

        async def act() -> Any:
            nonlocal parent
            chunks, name, declared, found = await _body_source(request)
            fields.update(found)
            parent = _uuid_or_none(found.get("folder"), "folder")
            stored = await services.upload(
                space, parent, chunks, filename=name, declared_size=declared, ip=_ip(request)
            )
            return redirect(request, f"{space.base_url}/files/{stored.id}")

        return await _or_rerender(
            request,
            act,
            lambda errors, status: _listing_page(
                request, space, parent, errors=errors, status=status
            ),
        )

    @route
    @post(
        api + "/upload",
        opt=add,
        tags=TAGS,
        status_code=HTTP_201_CREATED,
        request_max_body_size=BODY_LIMIT,
        name=f"bank-{kind}-upload-api",
    )
    async def upload_api(request: Req, folder: uuid.UUID | None = None) -> services.File:
        """Upload a file into ``?folder=`` (the top if absent): the raw body with ``?name=``
        (or a Content-Disposition header), or multipart with a ``file`` part. A file of the
        same name there gets a new version. Type is detected from the content."""
        space = await space_of(request)
        chunks, name, declared, _ = await _body_source(request)
        return await services.upload(
            space, folder, chunks, filename=name, declared_size=declared, ip=_ip(request)
        )

    # --- chunked, resumable uploads (used by the page's script for large files) ---------

    chunked = "/uploads/{upload_id:uuid}"

    def upload_id(request: Req) -> uuid.UUID:
        return uuid.UUID(str(request.path_params["upload_id"]))

    @route
    @post(
        api + "/uploads",
        opt=add,
        tags=TAGS,
        status_code=HTTP_201_CREATED,
        name=f"bank-{kind}-chunked-start-api",
    )
    async def chunked_start_api(request: Req, data: ChunkedIn) -> services.ChunkedUpload:
        """Start a resumable upload: then PUT each part (``part_size`` bytes, the last one
        shorter) to ``…/uploads/{id}/parts/{n}``, in any order, and POST ``…/complete``.
        After an interruption, GET the upload to see which parts arrived."""
        return await services.start_upload(
            await space_of(request),
            name=data.name,
            size=data.size,
            folder_id=data.folder_id,
            into_file=data.file_id,
        )

    @route
    @get(api + chunked, opt=add, tags=TAGS, name=f"bank-{kind}-chunked-status-api")
    async def chunked_status_api(request: Req) -> services.ChunkedUpload:
        """Which parts of a resumable upload have arrived."""
        return await services.upload_status(await space_of(request), upload_id(request))

    @route
    @put(
        api + chunked + "/parts/{part:int}",
        opt=add,
        tags=TAGS,
        status_code=204,
        request_max_body_size=services.PART_SIZE + 1024,
        name=f"bank-{kind}-chunked-part-api",
    )
    async def chunked_part_api(request: Req) -> None:
        """One part, as the raw body (sending a part again replaces it)."""
        space = await space_of(request)
        uid = upload_id(request)
        await services.upload_status(space, uid)  # 404 before reading a foreign body
        part = int(request.path_params["part"])
        await services.put_part(space, uid, part, await request.body())

    @route
    @post(
        api + chunked + "/complete",
        opt=add,
        tags=TAGS,
        status_code=HTTP_201_CREATED,
        name=f"bank-{kind}-chunked-complete-api",
    )
    async def chunked_complete_api(request: Req) -> services.File:
        """Assemble the parts into the file (checked like any upload)."""
        return await services.complete_upload(
            await space_of(request), upload_id(request), ip=_ip(request)
        )

    @route
    @get(api + "/uploads", opt=add, tags=TAGS, name=f"bank-{kind}-chunked-list-api")
    async def chunked_list_api(request: Req) -> list[services.ChunkedUpload]:
        """Resumable uploads started and not finished: each holds its declared size back
        from the quota until it completes, is cancelled, or expires after a day."""
        return await services.list_uploads(await space_of(request))

    @route
    @delete(api + chunked, opt=add, tags=TAGS, status_code=204, name=f"bank-{kind}-cancel-api")
    async def chunked_cancel_api(request: Req) -> None:
        """Cancel a resumable upload: its parts are discarded and its reserved space is
        free at once."""
        await services.cancel_upload(await space_of(request), upload_id(request))

    @route
    @post(
        api + chunked + "/cancel",
        opt=add,
        tags=TAGS,
        status_code=204,
        name=f"bank-{kind}-cancel-post-api",
    )
    async def chunked_cancel_post_api(request: Req) -> None:
        """The same as ``DELETE …/uploads/{id}``, for the page form's twin."""
        await services.cancel_upload(await space_of(request), upload_id(request))

    @route
    @post(
        prefix + chunked + "/cancel",
        opt=add,
        include_in_schema=False,
        name=f"bank-{kind}-cancel",
    )
    async def chunked_cancel_form(request: Req) -> Response[Any]:
        space = await space_of(request)
        form = await _form(request)
        await services.cancel_upload(space, upload_id(request))
        back = _uuid_or_none(form.get("folder"), "folder")
        return redirect(request, space.base_url + (f"/folders/{back}" if back else ""))

    @route
    @get(prefix + file, opt=read, include_in_schema=False, name=f"bank-{kind}-file")
    async def file_page(request: Req) -> Response[str]:
        space = await page_space(request)
        if not isinstance(space, Space):
            return space
        return await _file_page(request, space, file_id(request))

    @route
    @get(api + file, opt=read, tags=TAGS, name=f"bank-{kind}-file-api")
    async def file_api(request: Req) -> services.FileDetail:
        """A file: its versions (newest first) and share links."""
        return await services.file_detail(await space_of(request), file_id(request))

    @route
    @post(
        prefix + file + "/upload",
        opt=add,
        include_in_schema=False,
        request_max_body_size=BODY_LIMIT,
        name=f"bank-{kind}-new-version",
    )
    async def new_version_form(request: Req) -> Response[Any]:
        space = await space_of(request)
        fid = file_id(request)

        async def act() -> Any:
            chunks, _name, declared, _ = await _body_source(request)
            await services.upload(
                space,
                None,
                chunks,
                filename=None,
                declared_size=declared,
                ip=_ip(request),
                into_file=fid,
            )
            return redirect(request, f"{space.base_url}/files/{fid}")

        return await _or_rerender(
            request,
            act,
            lambda errors, status: _file_page(request, space, fid, errors=errors, status=status),
        )

    @route
    @post(
        api + file + "/upload",
        opt=add,
        tags=TAGS,
        status_code=HTTP_201_CREATED,
        request_max_body_size=BODY_LIMIT,
        name=f"bank-{kind}-new-version-api",
    )
    async def new_version_api(request: Req) -> services.File:
        """Upload a new version of this file (raw body or multipart ``file``)."""
        space = await space_of(request)
        chunks, _name, declared, _ = await _body_source(request)
        return await services.upload(
            space,
            None,
            chunks,
            filename=None,
            declared_size=declared,
            ip=_ip(request),
            into_file=file_id(request),
        )

    @route
    @get(prefix + file + "/download", opt=read, include_in_schema=False, name=f"bank-{kind}-dl")
    async def download(request: Req) -> Redirect:
        url = await services.download_url(
            await space_of(request), file_id(request), ip=_ip(request)
        )
        return Redirect(url, status_code=302, headers={"Cache-Control": "no-store"})

    @route
    @get(api + file + "/download", opt=read, tags=TAGS, name=f"bank-{kind}-dl-api")
    async def download_api(request: Req) -> DownloadOut:
        """A five-minute download URL of the current version (409 while archived)."""
        url = await services.download_url(
            await space_of(request), file_id(request), ip=_ip(request)
        )
        return DownloadOut(url, EXPIRES_IN)

    version = file + "/versions/{version_id:uuid}"

    def version_id(request: Req) -> uuid.UUID:
        return uuid.UUID(str(request.path_params["version_id"]))

    @route
    @get(
        prefix + version + "/download",
        opt=read,
        include_in_schema=False,
        name=f"bank-{kind}-version-dl",
    )
    async def version_download(request: Req) -> Redirect:
        url = await services.download_url(
            await space_of(request), file_id(request), version_id(request), ip=_ip(request)
        )
        return Redirect(url, status_code=302, headers={"Cache-Control": "no-store"})

    @route
    @get(api + version + "/download", opt=read, tags=TAGS, name=f"bank-{kind}-version-dl-api")
    async def version_download_api(request: Req) -> DownloadOut:
        """A five-minute download URL of one version."""
        url = await services.download_url(
            await space_of(request), file_id(request), version_id(request), ip=_ip(request)
        )
        return DownloadOut(url, EXPIRES_IN)

    @route
    @post(
        prefix + version + "/restore",
        opt=add,
        include_in_schema=False,
        name=f"bank-{kind}-version-restore",
    )
    async def version_restore_form(request: Req) -> Response[Any]:
        space = await space_of(request)
        fid = file_id(request)
        await services.restore_version(space, fid, version_id(request), ip=_ip(request))
        return redirect(request, f"{space.base_url}/files/{fid}")

    @route
    @post(
        api + version + "/restore",
        opt=add,
        tags=TAGS,
        status_code=200,
        name=f"bank-{kind}-version-restore-api",
    )
    async def version_restore_api(request: Req) -> services.File:
        """Make this version current again (kept as a new version; nothing is lost)."""
        return await services.restore_version(
            await space_of(request), file_id(request), version_id(request), ip=_ip(request)
        )

    @route
    @post(
        prefix + file + "/rename",
        opt=add,
        include_in_schema=False,
        name=f"bank-{kind}-rename-file",
    )
    async def rename_file_form(request: Req) -> Response[Any]:
        space = await space_of(request)
        fid = file_id(request)
        form = await _form(request)

        async def act() -> Any:
            await services.rename_file(space, fid, form.get("name", ""))
            return redirect(request, f"{space.base_url}/files/{fid}")

        return await _or_rerender(
            request,
            act,
            lambda errors, status: _file_page(request, space, fid, errors=errors, status=status),
        )

    @route
    @post(
        api + file + "/rename",
        opt=add,
        tags=TAGS,
        status_code=200,
        name=f"bank-{kind}-rename-file-api",
    )
    async def rename_file_api(request: Req, data: RenameIn) -> services.File:
        """Rename a file."""
        return await services.rename_file(await space_of(request), file_id(request), data.name)

    @route
    @post(prefix + file + "/move", opt=add, include_in_schema=False, name=f"bank-{kind}-move-file")
    async def move_file_form(request: Req) -> Response[Any]:
        space = await space_of(request)
        fid = file_id(request)

        async def act() -> Any:
            form = await _form(request)
            await services.move_file(space, fid, _uuid_or_none(form.get("target"), "target"))
            return redirect(request, f"{space.base_url}/files/{fid}")

        return await _or_rerender(
            request,
            act,
            lambda errors, status: _file_page(request, space, fid, errors=errors, status=status),
        )

    @route
    @post(
        api + file + "/move",
        opt=add,
        tags=TAGS,
        status_code=200,
        name=f"bank-{kind}-move-file-api",
    )
    async def move_file_api(request: Req, data: MoveIn) -> services.File:
        """Move a file into another folder (``target_id`` null: the top)."""
        return await services.move_file(await space_of(request), file_id(request), data.target_id)

    @route
    @post(
        prefix + file + "/delete",
        opt=add,
        include_in_schema=False,
        name=f"bank-{kind}-delete-file",
    )
    async def delete_file_form(request: Req) -> Response[Any]:
        space = await space_of(request)
        found = await services.get_file(space, file_id(request))
        await services.delete_file(space, found.id, ip=_ip(request))
        back = f"/folders/{found.folder_id}" if found.folder_id else ""
        return redirect(request, space.base_url + back)

    @route
    @post(
        api + file + "/delete",
        opt=add,
        tags=TAGS,
        status_code=204,
        name=f"bank-{kind}-delete-file-api",
    )
    async def delete_file_api(request: Req) -> None:
        """Move a file to the recycle bin (its share links stop working)."""
        await services.delete_file(await space_of(request), file_id(request), ip=_ip(request))

    # --- share links --------------------------------------------------------------------------

    @route
    @post(prefix + file + "/shares", opt=write, include_in_schema=False, name=f"bank-{kind}-share")
    async def share_form(request: Req) -> Response[Any]:
        space = await space_of(request)
        fid = file_id(request)

        async def act() -> Any:
            form = await _form(request)
            made = await services.create_share(
                space,
                fid,
                days=_int(form.get("days"), "days", 7) or 0,  # "0" is refused, not 7
                max_downloads=_int(form.get("max_downloads"), "max_downloads", None),
                ip=_ip(request),
            )
            return await _file_page(request, space, fid, new_link=_share_url(request, made.token))

        return await _or_rerender(
            request,
            act,
            lambda errors, status: _file_page(request, space, fid, errors=errors, status=status),
        )

    @route
    @post(
        api + file + "/shares",
        opt=write,
        tags=TAGS,
        status_code=HTTP_201_CREATED,
        name=f"bank-{kind}-share-api",
    )
    async def share_api(request: Req, data: ShareIn) -> ShareOut:
        """Make an expiring share link (the URL is shown once; only its hash is kept)."""
        made = await services.create_share(
            await space_of(request),
            file_id(request),
            days=data.days,
            max_downloads=data.max_downloads,
            ip=_ip(request),
        )
        return ShareOut(made.share, _share_url(request, made.token))

    share = file + "/shares/{share_id:uuid}/revoke"

    def share_id(request: Req) -> uuid.UUID:
        return uuid.UUID(str(request.path_params["share_id"]))

    @route
    @post(prefix + share, opt=write, include_in_schema=False, name=f"bank-{kind}-revoke")
    async def revoke_form(request: Req) -> Response[Any]:
        space = await space_of(request)
        fid = file_id(request)
        await services.revoke_share(space, fid, share_id(request), ip=_ip(request))
        return redirect(request, f"{space.base_url}/files/{fid}")

    @route
    @post(api + share, opt=write, tags=TAGS, status_code=204, name=f"bank-{kind}-revoke-api")
    async def revoke_api(request: Req) -> None:
        """Revoke a share link at once."""
        await services.revoke_share(
            await space_of(request), file_id(request), share_id(request), ip=_ip(request)
        )

    # --- the recycle bin ----------------------------------------------------------------------

    async def trash_page_for(
        request: Req, space: Space, errors: list[dict[str, str]] | None = None
    ) -> Response[str]:
        return page(
            request,
            "bank/trash.html",
            {
                "space": space,
                "base": space.base_url,
                "items": await services.list_trash(space),
                "trash_days": services.TRASH_DAYS,
                "errors": errors or [],
                **_rights(space),
            },
        )

    @route
    @get(prefix + "/trash", opt=read, include_in_schema=False, name=f"bank-{kind}-trash")
    async def trash_page(request: Req) -> Response[str]:
        space = await page_space(request)
        if not isinstance(space, Space):
            return space
        return await trash_page_for(request, space)

    @route
    @get(api + "/trash", opt=read, tags=TAGS, name=f"bank-{kind}-trash-api")
    async def trash_api(request: Req) -> list[services.TrashItem]:
        """What is in the recycle bin, and when each item is purged."""
        return await services.list_trash(await space_of(request))

    restore = "/trash/{trash_id:uuid}/restore"

    def trash_id(request: Req) -> uuid.UUID:
        return uuid.UUID(str(request.path_params["trash_id"]))

    @route
    @post(prefix + restore, opt=add, include_in_schema=False, name=f"bank-{kind}-untrash")
    async def untrash_form(request: Req) -> Response[Any]:
        space = await space_of(request)
        await services.restore_trash(space, trash_id(request), ip=_ip(request))
        return redirect(request, f"{space.base_url}/trash")

    @route
    @post(api + restore, opt=add, tags=TAGS, status_code=204, name=f"bank-{kind}-untrash-api")
    async def untrash_api(request: Req) -> None:
        """Put a bin item back where it was (renamed " (2)" if its name was taken since)."""
        await services.restore_trash(await space_of(request), trash_id(request), ip=_ip(request))

    @route
    @post(prefix + "/trash/empty", opt=write, include_in_schema=False, name=f"bank-{kind}-empty")
    async def empty_form(request: Req) -> Response[Any]:
        space = await space_of(request)
        await services.empty_trash(space, ip=_ip(request))
        return redirect(request, f"{space.base_url}/trash")

    @route
    @post(
        api + "/trash/empty", opt=write, tags=TAGS, status_code=200, name=f"bank-{kind}-empty-api"
    )
    async def empty_api(request: Req) -> CountOut:
        """Delete everything in the bin for good (and free its space)."""
        return CountOut(await services.empty_trash(await space_of(request), ip=_ip(request)))

    if not tenant:
        return handlers

    # --- organisations only: archive and backups -----------------------------------------

    @route
    @post(
        prefix + file + "/archive", opt=write, include_in_schema=False, name="bank-tenant-archive"
    )
    async def archive_form(request: Req) -> Response[Any]:
        space = await space_of(request)
        fid = file_id(request)
        await services.archive_file(space, fid, ip=_ip(request))
        return redirect(request, f"{space.base_url}/files/{fid}")

    @route
    @post(
        api + file + "/archive",
        opt=write,
        tags=TAGS,
        status_code=200,
        name="bank-tenant-archive-api",
    )
    async def archive_api(request: Req) -> services.File:
        """Move the file's versions to the cold archive class."""
        return await services.archive_file(
            await space_of(request), file_id(request), ip=_ip(request)
        )

    @route
    @post(
        prefix + file + "/retrieve",
        opt=write,
        include_in_schema=False,
        name="bank-tenant-retrieve",
    )
    async def retrieve_form(request: Req) -> Response[Any]:
        space = await space_of(request)
        fid = file_id(request)
        await services.retrieve_file(space, fid, ip=_ip(request))
        return redirect(request, f"{space.base_url}/files/{fid}")

    @route
    @post(
        api + file + "/retrieve",
        opt=write,
        tags=TAGS,
        status_code=200,
        name="bank-tenant-retrieve-api",
    )
    async def retrieve_api(request: Req) -> services.File:
        """Start a retrieval job; the file shows "retrieving" until it is back."""
        return await services.retrieve_file(
            await space_of(request), file_id(request), ip=_ip(request)
        )

    @route
    @post(
        prefix + folder + "/backup",
        opt=write,
        include_in_schema=False,
        name="bank-tenant-backup-settings",
    )
    async def backup_form(request: Req) -> Response[Any]:
        space = await space_of(request)
        fid = folder_id(request)

        async def act() -> Any:
            form = await _form(request)
            await services.set_backup(
                space,
                fid,
                schedule=form.get("schedule", ""),
                keep=_int(form.get("keep"), "keep", 7) or 0,
                ip=_ip(request),
            )
            return redirect(request, f"{space.base_url}/folders/{fid}")

        return await _or_rerender(
            request,
            act,
            lambda errors, status: _listing_page(request, space, fid, errors=errors, status=status),
        )

    @route
    @post(
        api + folder + "/backup",
        opt=write,
        tags=TAGS,
        status_code=200,
        name="bank-tenant-backup-settings-api",
    )
    async def backup_api(request: Req, data: BackupIn) -> services.Folder:
        """Back the folder up on a schedule ("off", "daily", "weekly"), keeping ``keep``
        copies."""
        return await services.set_backup(
            await space_of(request),
            folder_id(request),
            schedule=data.schedule,
            keep=data.keep,
            ip=_ip(request),
        )

    @route
    @post(
        prefix + folder + "/backup/run",
        opt=write,
        include_in_schema=False,
        name="bank-tenant-backup-now",
    )
    async def backup_now_form(request: Req) -> Response[Any]:
        ctx = tenant_context(request)
        fid = folder_id(request)
        await services.run_backup(ctx, fid, trigger="manual", ip=_ip(request))
        return redirect(request, f"/t/{ctx.tenant.slug}/bank/folders/{fid}")

    @route
    @post(
        api + folder + "/backup/run",
        opt=write,
        tags=TAGS,
        status_code=HTTP_201_CREATED,
        name="bank-tenant-backup-now-api",
    )
    async def backup_now_api(request: Req) -> services.Backup:
        """Make a backup copy of the folder now (retention applies)."""
        return await services.run_backup(
            tenant_context(request), folder_id(request), trigger="manual", ip=_ip(request)
        )

    backup = "/backups/{backup_id:uuid}/restore"

    def backup_id(request: Req) -> uuid.UUID:
        return uuid.UUID(str(request.path_params["backup_id"]))

    @route
    @post(prefix + backup, opt=write, include_in_schema=False, name="bank-tenant-backup-restore")
    async def backup_restore_form(request: Req) -> Response[Any]:
        space = await space_of(request)
        await services.restore_backup(space, backup_id(request), ip=_ip(request))
        return redirect(request, space.base_url)

    @route
    @post(
        api + backup, opt=write, tags=TAGS, status_code=200, name="bank-tenant-backup-restore-api"
    )
    async def backup_restore_api(request: Req) -> CountOut:
        """Restore every file of a kept backup copy as a new version."""
        return CountOut(
            await services.restore_backup(
                await space_of(request), backup_id(request), ip=_ip(request)
            )
        )

    return handlers


# --- the public share link --------------------------------------------------------------------

PUBLIC = {"access": "public"}


@get("/bank/s/{token:str}", opt=PUBLIC, include_in_schema=False)
async def shared_page(request: Req, token: str) -> Response[str]:
    shared = await services.shared_file(token)
    return page(
        request,
        "bank/shared.html",
        {"shared": shared, "token": token, "human": validation.human_size},
    )


@get("/bank/s/{token:str}/download", opt=PUBLIC, include_in_schema=False)
async def shared_download(request: Req, token: str) -> Redirect:
    url = await services.shared_download(token, ip=_ip(request))
    return Redirect(url, status_code=302, headers={"Cache-Control": "no-store"})


@get("/api/v1/bank/s/{token:str}", opt=PUBLIC, tags=TAGS)
async def shared_api(request: Req, token: str) -> SharedOut:
    """What a share link offers (name, size, expiry, downloads left); no download counted."""
    shared = await services.shared_file(token)
    return SharedOut(shared, f"/api/v1/bank/s/{token}/download")


@get("/api/v1/bank/s/{token:str}/download", opt=PUBLIC, tags=TAGS)
async def shared_download_api(request: Req, token: str) -> DownloadOut:
    """Count one download and get a five-minute URL."""
    return DownloadOut(await services.shared_download(token, ip=_ip(request)), EXPIRES_IN)


ROUTES = [
    *_routes("tenant"),
    *_routes("personal"),
    shared_page,
    shared_download,
    shared_api,
    shared_download_api,
]

"""File routes: upload (raw body or multipart, streamed), metadata, download (a redirect to a
short-lived presigned URL), delete, direct browser uploads, and the tenant's storage page.

Bodies are read chunk by chunk and handed to ``ObjectStore.upload``, which stops reading at
the purpose's limit; a multipart body is parsed as it arrives (only the ``file`` part's bytes
are passed on). The rules live in ``canal.platform.storage.services``/``validation``.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Redirect
from litestar.status_codes import HTTP_201_CREATED
from litestar.utils.empty import value_or_default
from litestar.utils.scope.state import ScopeState
from multipart import MultipartSegment, ParserError, ParserLimitReached, PushMultipartParser

from canal.platform.http.errors import CanalError, FieldError
from canal.platform.http.tenancy import tenant_context
from canal.platform.storage import services, validation
from canal.platform.storage.services import PURPOSES, StoredFile, object_store
from canal.web.i18n import request_locale
from canal.web.render import page, redirect

Req = Request[Any, Any, Any]
TAGS = ["files"]
# Members read and download; admins and owners upload, delete and see the storage page.
READ = {"access": "tenant", "permission": ("files", "read")}
WRITE = {"access": "tenant", "permission": ("files", "write")}
# Litestar refuses bodies beyond this before our code runs; the per-purpose limit is ours.
BODY_LIMIT = max(p.max_bytes for p in PURPOSES.values()) + validation.MB
FORM_PURPOSE = "document"
FORM_BODY_LIMIT = PURPOSES[FORM_PURPOSE].max_bytes + validation.MB
CHUNK = 1024 * 1024


# --- shapes ---------------------------------------------------------------------------------


class FileOut(msgspec.Struct):
    id: uuid.UUID
    purpose: str
    name: str
    size: int
    content_type: str
    sha256: str
    created_at: dt.datetime
    uploaded_by: uuid.UUID | None
    links: dict[str, str]


class DownloadOut(msgspec.Struct):
    url: str
    expires_in: int


class PurposeUsageOut(msgspec.Struct):
    purpose: str
    name_zh: str
    name_en: str
    objects: int
    bytes: int


class UsageOut(msgspec.Struct):
    quota_bytes: int
    used_bytes: int
    objects: int
    by_purpose: list[PurposeUsageOut]
    recent: list[FileOut]


class DirectIn(msgspec.Struct, forbid_unknown_fields=True):
    purpose: str
    size: int
    name: str = ""


class DirectOut(msgspec.Struct):
    id: uuid.UUID
    url: str
    method: str
    token: str
    expires_at: dt.datetime
    max_bytes: int


class CompleteIn(msgspec.Struct, forbid_unknown_fields=True):
    token: str


def _out(slug: str, stored: StoredFile) -> FileOut:
    return FileOut(
        id=stored.id,
        purpose=stored.purpose,
        name=stored.original_name,
        size=stored.size,
        content_type=stored.content_type,
        sha256=stored.sha256,
        created_at=stored.created_at,
        uploaded_by=stored.uploaded_by,
        links={
            "self": f"/api/v1/t/{slug}/files/{stored.id}",
            "download": f"/t/{slug}/files/{stored.id}/download",
        },
    )


def _ip(request: Req) -> str:
    return request.client.host if request.client else ""


# --- reading a body as a stream -------------------------------------------------------------


def _no_file() -> CanalError:
    zh, en = "请选择要上传的文件。", "Choose a file to upload."
    return CanalError(
        "file_missing", zh, en, status=422, errors=(FieldError("file", "file_missing", zh, en),)
    )


def _refuse_managed(purpose_key: str) -> None:
    """Files the data bank keeps are changed through the bank (its rows point at them)."""
    purpose = PURPOSES.get(purpose_key)
    if purpose is not None and purpose.managed_by:
        raise CanalError(
            "file_managed",
            "此文件由数据银行管理,请在数据银行中上传或删除。",
            "This file is kept by the data bank: upload or delete it there.",
            status=409,
        )


def _bad_form() -> CanalError:
    return CanalError(
        "bad_request", "上传的表单格式有误。", "The upload form data is malformed.", status=400
    )


class MultipartFile:
    """The ``file`` part of a multipart body, parsed as the body arrives.

    ``open()`` reads up to the file part's header (collecting small text fields before it);
    iterating then yields the file's bytes and stops at the end of that part.
    """

    FIELD_MAX = 64 * 1024

    def __init__(self, stream: AsyncIterator[bytes], boundary: bytes, field: str = "file"):
        self._stream = stream
        self._parser = PushMultipartParser(boundary, max_segment_count=20)
        self._events: Any = iter(())
        self._field = field
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self._done = False

    async def _next(self) -> Any:
        while True:
            for event in self._events:
                return event
            if self._parser.closed:
                return StopAsyncIteration
            chunk = await anext(self._stream, b"")
            try:
                self._events = iter(list(self._parser.parse(chunk)))
            except (ParserError, ParserLimitReached):
                raise _bad_form() from None

    async def open(self) -> None:
        segment: MultipartSegment | None = None
        value = bytearray()
        while True:
            event = await self._next()
            if event is StopAsyncIteration:
                raise _no_file()
            if isinstance(event, MultipartSegment):
                segment, value = event, bytearray()
                if segment.name == self._field and segment.filename is not None:
                    if not segment.filename:
                        raise _no_file()  # a form sent with no file chosen
                    self.filename = segment.filename
                    return
            elif event is None:
                if segment is not None:
                    self.fields[segment.name] = value.decode("utf-8", "replace")
                segment = None
            elif len(value) + len(event) > self.FIELD_MAX:
                raise _bad_form()
            else:
                value += event

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while not self._done:
            event = await self._next()
            if event is None or event is StopAsyncIteration:
                self._done = True
                return
            if isinstance(event, MultipartSegment):
                raise _bad_form()
            yield bytes(event)


async def _upload_file_chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    try:
        while chunk := await upload.read(CHUNK):
            yield chunk
    finally:
        await upload.close()


async def _body_source(
    request: Req, field: str = "file"
) -> tuple[AsyncIterator[bytes], str | None, int | None, dict[str, str]]:
    """(chunks, original file name, declared size, other form fields) for any upload body."""
    content_type, options = request.content_type
    if content_type == "multipart/form-data":
        # The CSRF middleware may already have parsed the form (a browser form without the
        # header): the file was spooled to disk by Litestar; read it from there.
        parsed = value_or_default(ScopeState.from_scope(request.scope).form, None)
        if parsed is not None:
            form = await request.form()
            upload = form.get(field)
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise _no_file()
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            return _upload_file_chunks(upload), upload.filename, None, fields
        boundary = options.get("boundary")
        if not boundary:
            raise _bad_form()
        reader = MultipartFile(request.stream(), boundary.encode("latin-1"), field)
        await reader.open()
        return reader.__aiter__(), reader.filename, None, reader.fields
    # A raw body: the name comes from ?name= or a Content-Disposition header.
    name = request.query_params.get("name")
    disposition = request.headers.get("content-disposition")
    if not name and disposition:
        from litestar._multipart import parse_content_header

        _, params = parse_content_header(disposition)
        star = params.get("filename*")
        if star and star.lower().startswith("utf-8''"):
            from urllib.parse import unquote

            name = unquote(star[7:])
        else:
            name = params.get("filename")
    length = request.headers.get("content-length")
    # ASCII digits only: "²".isdigit() is true but int("²") raises.
    declared = int(length) if length and re.fullmatch(r"[0-9]{1,18}", length) else None
    return request.stream(), name, declared, {}


# --- API ------------------------------------------------------------------------------------


@post(
    "/api/v1/t/{tenant_slug:str}/files",
    opt=WRITE,
    tags=TAGS,
    status_code=HTTP_201_CREATED,
    request_max_body_size=BODY_LIMIT,
)
async def upload_file_api(
    request: Req, tenant_slug: FromPath[str], purpose: FromQuery[str] = FORM_PURPOSE
) -> FileOut:
    """Upload one file. Send the bytes as the raw body (name in ``?name=`` or a
    Content-Disposition header) or as multipart/form-data with a ``file`` part. The type is
    detected from the content; the purpose sets the size limit and allowed types."""
    ctx = tenant_context(request)
    store = object_store()
    store.purpose(purpose)  # an unknown purpose is refused before the body is read
    _refuse_managed(purpose)
    chunks, name, declared, _ = await _body_source(request)
    stored = await store.upload(
        ctx, purpose, chunks, filename=name, declared_size=declared, ip=_ip(request)
    )
    return _out(tenant_slug, stored)


@get("/api/v1/t/{tenant_slug:str}/files/{file_id:uuid}", opt=READ, tags=TAGS)
async def file_metadata_api(
    request: Req, tenant_slug: FromPath[str], file_id: FromPath[uuid.UUID]
) -> FileOut:
    """A file's record (name, size, detected type, SHA-256)."""
    stored = await services.get_object_in_tenant(file_id, tenant_context(request))
    return _out(tenant_slug, stored)


@get("/api/v1/t/{tenant_slug:str}/files/{file_id:uuid}/download", opt=READ, tags=TAGS)
async def file_download_api(
    request: Req, tenant_slug: FromPath[str], file_id: FromPath[uuid.UUID]
) -> DownloadOut:
    """A presigned download URL, valid for five minutes."""
    ctx = tenant_context(request)
    stored = await services.get_object_in_tenant(file_id, ctx)
    url = await object_store().presigned_get(stored, ctx)
    return DownloadOut(url, int(services.DEFAULT_GET_EXPIRY.total_seconds()))


@delete("/api/v1/t/{tenant_slug:str}/files/{file_id:uuid}", opt=WRITE, tags=TAGS, status_code=204)
async def delete_file_api(
    request: Req, tenant_slug: FromPath[str], file_id: FromPath[uuid.UUID]
) -> None:
    """Delete a file (audited). The data bank's files are deleted in the bank (409)."""
    ctx = tenant_context(request)
    _refuse_managed((await services.get_object_in_tenant(file_id, ctx)).purpose)
    await object_store().delete(file_id, ctx, ip=_ip(request))


@post(
    "/api/v1/t/{tenant_slug:str}/files/direct",
    opt=WRITE,
    tags=TAGS,
    status_code=HTTP_201_CREATED,
)
async def direct_upload_api(
    request: Req, tenant_slug: FromPath[str], data: JSONBody[DirectIn]
) -> DirectOut:
    """Start a large upload straight to storage: PUT the bytes to ``url`` before
    ``expires_at``, then POST the token to ``…/files/direct/complete``."""
    ctx = tenant_context(request)
    _refuse_managed(data.purpose)
    direct = await object_store().presigned_put(
        ctx, data.purpose, filename=data.name, size=data.size
    )
    return DirectOut(
        direct.object_id, direct.url, "PUT", direct.token, direct.expires_at, direct.max_bytes
    )


@post(
    "/api/v1/t/{tenant_slug:str}/files/direct/complete",
    opt=WRITE,
    tags=TAGS,
    status_code=HTTP_201_CREATED,
)
async def direct_complete_api(
    request: Req, tenant_slug: FromPath[str], data: JSONBody[CompleteIn]
) -> FileOut:
    """Check the uploaded object (size, type from its first bytes) and record it."""
    stored = await object_store().complete(tenant_context(request), data.token, ip=_ip(request))
    return _out(tenant_slug, stored)


async def _usage_out(request: Req, slug: str) -> UsageOut:
    ctx = tenant_context(request)
    usage = await services.tenant_usage(ctx)
    recent = await services.list_objects_in_tenant(ctx, limit=50)
    return UsageOut(
        usage.quota_bytes,
        usage.used_bytes,
        usage.objects,
        [
            PurposeUsageOut(
                p.purpose,
                PURPOSES[p.purpose].label_zh if p.purpose in PURPOSES else p.purpose,
                PURPOSES[p.purpose].label_en if p.purpose in PURPOSES else p.purpose,
                p.objects,
                p.bytes,
            )
            for p in usage.by_purpose
        ],
        [_out(slug, f) for f in recent],
    )


@get("/api/v1/t/{tenant_slug:str}/storage", opt=WRITE, tags=TAGS)
async def storage_usage_api(request: Req, tenant_slug: FromPath[str]) -> UsageOut:
    """Storage used against the quota, by purpose, and the latest files."""
    return await _usage_out(request, tenant_slug)


# --- pages ----------------------------------------------------------------------------------

TEMPLATE = "storage/storage.html"


async def _storage_page(
    request: Req, slug: str, *, errors: list[dict[str, str]] | None = None, status: int = 200
) -> Response[str]:
    locale = request_locale(request)
    usage = await _usage_out(request, slug)
    purpose = PURPOSES[FORM_PURPOSE]
    zh, en = purpose.rule()
    return page(
        request,
        TEMPLATE,
        {
            "usage": usage,
            "percent": round(100 * usage.used_bytes / usage.quota_bytes, 1)
            if usage.quota_bytes
            else 0,
            "human": validation.human_size,
            "rule": zh if locale.startswith("zh") else en,
            "accept": ",".join(purpose.content_types),
            "slug": slug,
            "errors": errors or [],
            "zh": locale.startswith("zh"),
            "managed": {key for key, p in PURPOSES.items() if p.managed_by},
            "purpose_names": {
                key: (p.label_zh if locale.startswith("zh") else p.label_en)
                for key, p in PURPOSES.items()
            },
        },
        status=status,
    )


@get("/t/{tenant_slug:str}/storage", opt=WRITE, include_in_schema=False)
async def storage_page(request: Req, tenant_slug: FromPath[str]) -> Response[str]:
    return await _storage_page(request, tenant_slug)


@post(
    "/t/{tenant_slug:str}/storage",
    opt=WRITE,
    include_in_schema=False,
    request_max_body_size=FORM_BODY_LIMIT,
)
async def storage_upload_form(request: Req, tenant_slug: FromPath[str]) -> Response[Any]:
    """The page's upload form (purpose "document"): multipart, streamed like the API."""
    ctx = tenant_context(request)
    try:
        chunks, name, declared, _ = await _body_source(request)
        await object_store().upload(
            ctx, FORM_PURPOSE, chunks, filename=name, declared_size=declared, ip=_ip(request)
        )
    except CanalError as error:
        if error.status >= 500 or not error.errors:
            raise
        locale = request_locale(request)
        return await _storage_page(
            request,
            tenant_slug,
            errors=[e.for_locale(locale) for e in error.errors],
            status=error.status,
        )
    return redirect(request, f"/t/{tenant_slug}/storage")


@get("/t/{tenant_slug:str}/files/{file_id:uuid}/download", opt=READ, include_in_schema=False)
async def file_download(
    request: Req, tenant_slug: FromPath[str], file_id: FromPath[uuid.UUID]
) -> Redirect:
    """302 to a presigned URL (five minutes), after the access check."""
    ctx = tenant_context(request)
    stored = await services.get_object_in_tenant(file_id, ctx)
    url = await object_store().presigned_get(stored, ctx)
    return Redirect(url, status_code=302, headers={"Cache-Control": "no-store"})


@post("/t/{tenant_slug:str}/files/{file_id:uuid}/delete", opt=WRITE, include_in_schema=False)
async def file_delete_form(
    request: Req, tenant_slug: FromPath[str], file_id: FromPath[uuid.UUID]
) -> Response[Any]:
    ctx = tenant_context(request)
    _refuse_managed((await services.get_object_in_tenant(file_id, ctx)).purpose)
    await object_store().delete(file_id, ctx, ip=_ip(request))
    return redirect(request, f"/t/{tenant_slug}/storage")


ROUTES = [
    upload_file_api,
    file_metadata_api,
    file_download_api,
    delete_file_api,
    direct_upload_api,
    direct_complete_api,
    storage_usage_api,
    storage_page,
    storage_upload_form,
    file_download,
    file_delete_form,
]

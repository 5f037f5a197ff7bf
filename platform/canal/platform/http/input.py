"""Input hygiene for every request: what no handler should ever have to think about.

One place refuses, before any handler runs, what no field of Canal may hold:

* a JSON body on a route that reads JSON must say ``Content-Type: application/json`` (415);
  it may nest at most ``MAX_JSON_DEPTH`` levels (400) and no string or key in it may hold a
  NUL byte (422, naming the field);
* no form field (name, value, or an uploaded file's name) may hold a NUL byte (422);
* neither the path nor the query string may hold a NUL byte (400).

``CanalRequest`` is the app's ``request_class``, so every handler, the CSRF check and
Litestar's own ``data`` parsing go through it. What the database still refuses as data
(SQLSTATE class 22: a value too long for its column, out of range, a character it cannot
store) is the caller's input too: ``data_error_handler`` answers 422 and the transaction has
rolled back — a safety net under the per-field limits (``canal.platform.text``), never a
substitute for them.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import unquote_to_bytes

from litestar import Request, Response
from litestar.datastructures import FormMultiDict, UploadFile
from litestar.exceptions import SerializationException

from canal.platform.http.errors import CanalError, FieldError, render_error

log = logging.getLogger("canal.input")

# Deep enough for any document Canal takes (a policy's criteria nest 12 in the builder, more
# as JSON), far below where a recursive decoder or walker would fail.
MAX_JSON_DEPTH = 64
JSON_TYPES = {"application/json"}


def unsupported_media_type() -> CanalError:
    return CanalError(
        "unsupported_media_type",
        "此接口只接受 JSON 请求体(Content-Type: application/json)。",
        "This operation accepts only a JSON body (Content-Type: application/json).",
        status=415,
    )


def too_deep(field: str | None = None) -> CanalError:
    where_zh = f"「{field}」" if field else "请求体"
    where_en = f"Field {field}" if field else "The request body"
    return CanalError(
        "json_too_deep",
        f"{where_zh}的 JSON 嵌套超过 {MAX_JSON_DEPTH} 层。",
        f"{where_en} nests JSON more than {MAX_JSON_DEPTH} levels deep.",
        status=400,
    )


def malformed_json(field: str | None = None) -> CanalError:
    where_zh = f"「{field}」" if field else "请求体"
    where_en = f"Field {field}" if field else "The request body"
    return CanalError(
        "malformed_json",
        f"{where_zh}不是有效的 JSON。",
        f"{where_en} is not valid JSON.",
        status=400,
    )


def nul_error(field: str) -> FieldError:
    return FieldError(
        field,
        "nul_character",
        f"「{field}」不能包含空字符(U+0000)。",
        f"Field {field} may not contain a NUL character (U+0000).",
    )


def refuse_nul(fields: list[str]) -> CanalError:
    return CanalError(
        "nul_character",
        "提交的内容包含空字符(U+0000),请删除后重试。",
        "The input contains a NUL character (U+0000); remove it and try again.",
        status=422,
        errors=tuple(nul_error(f) for f in fields[:20]),
    )


def check_json_value(value: Any, field: str | None = None) -> None:
    """Depth and NUL bytes of a decoded JSON value, walked without recursion."""
    bad: list[str] = []
    stack: list[tuple[Any, str, int]] = [(value, field or "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise too_deep(field)
        if isinstance(item, str):
            if "\x00" in item:
                bad.append(path or "body")
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and "\x00" in key:
                    bad.append((path or "body") + " (key)")
                    continue
                stack.append((child, name, depth + 1))
        elif isinstance(item, list):
            for index, child in enumerate(item):
                stack.append((child, f"{path}[{index}]", depth + 1))
    if bad:
        raise refuse_nul(sorted(bad))


def decode_json(raw: bytes | str, field: str | None = None) -> Any:
    """Decode JSON from a client (a body, or a form field or query parameter holding JSON):
    malformed, too deep or carrying a NUL answers 4xx, never a RecursionError."""
    try:
        value = json.loads(raw) if isinstance(raw, str) else json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise too_deep(field) from None
    except (ValueError, UnicodeDecodeError):
        raise malformed_json(field) from None
    check_json_value(value, field)
    return value


def has_nul(raw: bytes) -> bool:
    """A NUL byte in a raw path or query string, literally or percent-encoded."""
    return b"\x00" in raw or b"%00" in raw.lower() or b"\x00" in unquote_to_bytes(raw)


class CanalRequest(Request[Any, Any, Any]):
    """The app's request: JSON and form bodies are checked once, however a handler reads them."""

    async def json(self) -> Any:
        content_type, _ = self.content_type
        if content_type not in JSON_TYPES:
            raise unsupported_media_type()
        checked = self.scope.setdefault("state", {}).get("canal_json_checked")
        try:
            value = await super().json()
        except RecursionError:
            raise too_deep() from None
        except SerializationException:
            raise malformed_json() from None
        if not checked:
            check_json_value(value)
            self.scope["state"]["canal_json_checked"] = True
        return value

    async def form(self) -> FormMultiDict:
        form = await super().form()
        if not self.scope.setdefault("state", {}).get("canal_form_checked"):
            bad = []
            for key, value in form.multi_items():
                text = (value.filename or "") if isinstance(value, UploadFile) else str(value)
                if "\x00" in key:
                    bad.append("form (key)")
                elif "\x00" in text:
                    bad.append(key)
            if bad:
                raise refuse_nul(sorted(set(bad)))
            self.scope["state"]["canal_form_checked"] = True
        return form


def data_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The database refused a value as data (too long, out of range, not storable)."""
    log.warning("database refused input as data: %s", exc)
    return render_error(
        request,
        CanalError(
            "invalid_value",
            "提交的某项内容过长、超出范围或含有无法保存的字符,请修改后重试。",
            "A value is too long, out of range or holds characters that cannot be stored; "
            "please correct it.",
            status=422,
        ),
    )

"""Search over Meilisearch with the tenant boundary enforced by the server, never the caller.

Every search — on the server or in a browser through a tenant token — carries the caller's
visibility rule: ``visibility = "public" OR tenant_id = "<caller's tenant>"``. Callers add
filters only on the attributes their index allows, as structured values that are quoted and
escaped here, so no input can widen the rule. Tenant tokens are signed with a search-only API
key (created once with the master key); the master key never leaves the server.

The ``meilisearch`` client is synchronous (``requests``), and its request method mutates a
shared header dict, so each worker thread gets its own client and calls run in
``asyncio.to_thread``. Searches — the call on the request path — skip it: they go through
``search.http.MeiliHttp`` (kept-alive asyncio connections, msgspec), see docs/decisions/0004.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import meilisearch
import msgspec
from meilisearch.errors import MeilisearchApiError

from canal.platform import clock
from canal.platform.http.context import TenantContext
from canal.platform.http.errors import CanalError, FieldError, invalid
from canal.platform.search.http import MeiliHttp
from canal.platform.search.indexes import (
    VISIBILITY_PUBLIC,
    ZH_CHARS_FIELD,
    Document,
    SearchIndex,
    registry,
)

T = TypeVar("T")

BATCH_SIZE = 5_000
MAX_QUERY_CHARS = 200
MAX_PER_PAGE = 100
MAX_FILTER_VALUES = 50
MAX_VALUE_CHARS = 200
TASK_TIMEOUT_MS = 300_000
TOKEN_MIN = dt.timedelta(minutes=1)
TOKEN_MAX = dt.timedelta(hours=24)
RANGE_OPERATORS = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}

# A caller's structured filter: a string / number (equality), a list of them (IN), or for a
# range attribute a mapping like {"gte": 100, "lte": 500}.
FilterValue = str | int | float | Sequence[str | int | float] | Mapping[str, int | float]


class SearchResult(msgspec.Struct, kw_only=True):
    kind: str
    query: str
    hits: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    per_page: int
    facets: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    facet_stats: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)
    took_ms: int = 0


class TenantToken(msgspec.Struct, kw_only=True):
    """What a browser needs to search one index directly, within the caller's visibility."""

    token: str
    index: str
    expires_at: dt.datetime


def quote(value: str) -> str:
    """A Meilisearch filter string literal: backslashes and double quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def visibility_filter(caller: TenantContext | None) -> str:
    if caller is None:
        return f"visibility = {quote(VISIBILITY_PUBLIC)}"
    tenant = str(uuid.UUID(str(caller.tenant_id)))
    return f"(visibility = {quote(VISIBILITY_PUBLIC)} OR tenant_id = {quote(tenant)})"


def _filter_error(field: str, code: str, zh: str, en: str) -> CanalError:
    return invalid([FieldError(field, code, zh, en)])


def _literal(field: str, value: object) -> str:
    if isinstance(value, bool) or value is None:
        raise _filter_error(
            field,
            "bad_filter_value",
            "筛选值须为文字或数字。",
            "A filter value must be text or a number.",
        )
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise _filter_error(field, "bad_filter_value", "筛选值无效。", "Invalid filter value.")
        return repr(value)
    if isinstance(value, str):
        if not value or len(value) > MAX_VALUE_CHARS or any(ord(c) < 32 for c in value):
            raise _filter_error(
                field,
                "bad_filter_value",
                f"筛选值须为 1–{MAX_VALUE_CHARS} 个字符且不含控制字符。",
                f"A filter value must be 1–{MAX_VALUE_CHARS} characters, no control characters.",
            )
        return quote(value)
    raise _filter_error(
        field,
        "bad_filter_value",
        "筛选值须为文字或数字。",
        "A filter value must be text or a number.",
    )


def filter_clauses(index: SearchIndex, filters: Mapping[str, Any] | None) -> list[str]:
    """The caller's filters as Meilisearch clauses; anything not allowed is refused."""
    clauses: list[str] = []
    for field, value in (filters or {}).items():
        if field in index.ranges and isinstance(value, Mapping):
            if not value or set(value) - set(RANGE_OPERATORS):
                raise _filter_error(
                    field,
                    "bad_filter_range",
                    "范围筛选只支持 gte、gt、lte、lt。",
                    "A range filter takes only gte, gt, lte and lt.",
                )
            for op, bound in value.items():
                if isinstance(bound, bool) or not isinstance(bound, int | float):
                    raise _filter_error(
                        field,
                        "bad_filter_range",
                        "范围的边界须为数字。",
                        "Range bounds must be numbers.",
                    )
                clauses.append(f"{field} {RANGE_OPERATORS[op]} {_literal(field, bound)}")
        elif field in index.filters or field in index.ranges:
            values = list(value) if isinstance(value, list | tuple) else [value]
            if not values or len(values) > MAX_FILTER_VALUES:
                raise _filter_error(
                    field,
                    "bad_filter_value",
                    f"每项筛选最多 {MAX_FILTER_VALUES} 个值。",
                    f"A filter takes 1 to {MAX_FILTER_VALUES} values.",
                )
            literals = [_literal(field, v) for v in values]
            if len(literals) == 1:
                clauses.append(f"{field} = {literals[0]}")
            else:
                clauses.append(f"{field} IN [{', '.join(literals)}]")
        else:
            allowed = ", ".join([*index.filters, *index.ranges]) or "—"
            raise _filter_error(
                field,
                "filter_not_allowed",
                f"不能按「{field}」筛选;可用的筛选项:{allowed}。",
                f"Cannot filter on {field!r}; allowed filters: {allowed}.",
            )
    return clauses


def search_unavailable() -> CanalError:
    return CanalError(
        "search_unavailable",
        "搜索服务暂时无法访问,请稍后再试。",
        "The search service cannot be reached just now; please try again shortly.",
        status=503,
    )


class SearchService:
    """One deployment's indexes (``<prefix>_<kind>``) on one Meilisearch server."""

    def __init__(
        self,
        url: str,
        master_key: str,
        *,
        prefix: str = "canal",
        indexes: Iterable[SearchIndex] | None = None,
        timeout: int = 30,
    ) -> None:
        self.url = url.rstrip("/")
        self._master_key = master_key
        self.prefix = prefix
        self.indexes = {
            i.kind: i for i in (indexes if indexes is not None else registry().values())
        }
        self._timeout = timeout
        self._local = threading.local()
        self._http = MeiliHttp(self.url, master_key, timeout=timeout)
        self._search_key: tuple[str, str] | None = None
        self._ready: set[str] = set()
        self._lock = asyncio.Lock()

    # --- plumbing ---------------------------------------------------------------------

    def client(self) -> meilisearch.Client:
        """This thread's client (the library's request method is not thread-safe)."""
        client: meilisearch.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = meilisearch.Client(self.url, self._master_key, timeout=self._timeout)
            self._local.client = client
        return client

    async def _run(self, function: Callable[[meilisearch.Client], T]) -> T:
        return await asyncio.to_thread(lambda: function(self.client()))

    def index(self, kind: str) -> SearchIndex:
        try:
            return self.indexes[kind]
        except KeyError:
            raise CanalError(
                "unknown_search_kind",
                f"没有名为「{kind}」的搜索类别。",
                f"There is no search kind {kind!r}.",
                status=404,
            ) from None

    def uid(self, kind: str) -> str:
        return f"{self.prefix}_{self.index(kind).kind}"

    async def wait(self, task_uid: int, *, tolerate: str | None = None) -> None:
        """Until Meilisearch has applied the task; a failure raises (unless its code is
        ``tolerate``, e.g. deleting an index that is already gone)."""
        task = await self._run(
            lambda c: c.wait_for_task(task_uid, timeout_in_ms=TASK_TIMEOUT_MS, interval_in_ms=20)
        )
        if task.status != "succeeded":
            if tolerate and (task.error or {}).get("code") == tolerate:
                return
            raise RuntimeError(f"Meilisearch task {task_uid} {task.status}: {task.error}")

    async def _delete_index(self, uid: str) -> None:
        info = await self._run(lambda c: c.delete_index(uid))
        await self.wait(info.task_uid, tolerate="index_not_found")
        self._ready.discard(uid)

    # --- set-up -----------------------------------------------------------------------

    async def ensure_index(self, kind: str, *, uid: str | None = None) -> str:
        """Create the index if missing and apply its settings (idempotent)."""
        spec = self.index(kind)
        uid = uid or self.uid(kind)
        if uid in self._ready:
            return uid

        def apply(c: meilisearch.Client) -> int:
            try:
                c.get_raw_index(uid)
            except MeilisearchApiError as error:
                if error.code != "index_not_found":
                    raise
                task = c.create_index(uid, {"primaryKey": spec.primary_key})
                c.wait_for_task(task.task_uid, timeout_in_ms=TASK_TIMEOUT_MS)
            return c.index(uid).update_settings(spec.meili_settings()).task_uid

        await self.wait(await self._run(apply))
        self._ready.add(uid)
        return uid

    async def setup(self) -> None:
        """Every registered index and the search-only key; safe to call at every start."""
        for kind in self.indexes:
            await self.ensure_index(kind)
        await self.search_key()

    async def search_key(self) -> tuple[str, str]:
        """(uid, key) of the search-only API key for this prefix's indexes, created once."""
        if self._search_key is not None:
            return self._search_key
        name = f"{self.prefix}-search-only"

        def find_or_create(c: meilisearch.Client) -> tuple[str, str]:
            offset = 0
            while True:
                page = c.get_keys({"limit": 100, "offset": offset})
                for key in page.results:
                    if key.name == name:
                        return key.uid, key.key
                offset += 100
                if offset >= page.total:
                    break
            created = c.create_key(
                {
                    "name": name,
                    "description": "Signs tenant tokens for browser-side search (search only).",
                    "actions": ["search"],
                    "indexes": [f"{self.prefix}_*"],
                    "expiresAt": None,
                }
            )
            return created.uid, created.key

        async with self._lock:
            if self._search_key is None:
                self._search_key = await self._run(find_or_create)
        return self._search_key

    # --- writing ----------------------------------------------------------------------

    async def upsert(
        self,
        kind: str,
        documents: Iterable[Document],
        *,
        uid: str | None = None,
        wait: bool = False,
    ) -> int:
        """Add or replace documents by primary key (idempotent); returns how many."""
        spec = self.index(kind)
        uid = await self.ensure_index(kind, uid=uid)
        prepared = [spec.prepare(d) for d in documents]
        tasks: list[int] = []
        for start in range(0, len(prepared), BATCH_SIZE):
            batch = prepared[start : start + BATCH_SIZE]

            def add(c: meilisearch.Client, batch: list[Document] = batch) -> int:
                return c.index(uid).add_documents(batch, primary_key=spec.primary_key).task_uid

            tasks.append(await self._run(add))
        if wait:
            for task in tasks:
                await self.wait(task)
        return len(prepared)

    async def delete(self, kind: str, ids: Iterable[str], *, wait: bool = False) -> int:
        uid = await self.ensure_index(kind)
        keys = [str(i) for i in ids]
        if not keys:
            return 0
        info = await self._run(lambda c: c.index(uid).delete_documents(keys))
        if wait:
            await self.wait(info.task_uid)
        return len(keys)

    async def drop(self, kind: str) -> None:
        """Delete ``kind``'s index with its documents (``reindex`` brings it back)."""
        await self._delete_index(self.uid(kind))

    async def reindex(self, kind: str) -> int:
        """Rebuild one index from its loader into a fresh index, then swap it in atomically.

        Searches keep answering from the old index until the swap. An update indexed while the
        rebuild runs may be lost with the old index; its next change (or reindex) restores it.
        """
        spec = self.index(kind)
        if spec.loader is None:
            raise RuntimeError(f"search kind {kind!r} has no loader to rebuild from")
        live = await self.ensure_index(kind)
        fresh = f"{live}__rebuild"
        await self._delete_index(fresh)  # a crashed earlier rebuild's leftovers
        await self.ensure_index(kind, uid=fresh)
        count = 0
        batch: list[Document] = []
        async for document in spec.loader():
            batch.append(document)
            if len(batch) >= BATCH_SIZE:
                count += await self.upsert(kind, batch, uid=fresh, wait=True)
                batch = []
        count += await self.upsert(kind, batch, uid=fresh, wait=True)
        info = await self._run(lambda c: c.swap_indexes([{"indexes": [live, fresh]}]))
        await self.wait(info.task_uid)
        await self._delete_index(fresh)  # now holds the old documents
        return count

    async def reindex_all(self) -> dict[str, int]:
        """Rebuild every registered index that has a loader; returns documents per kind."""
        return {
            kind: await self.reindex(kind)
            for kind, spec in self.indexes.items()
            if spec.loader is not None
        }

    # --- reading ----------------------------------------------------------------------

    async def search(
        self,
        kind: str,
        query: str,
        *,
        caller: TenantContext | None,
        filters: Mapping[str, Any] | None = None,
        facets: Sequence[str] = (),
        sort: Sequence[str] = (),
        page: int = 1,
        per_page: int = 20,
    ) -> SearchResult:
        """Search ``kind`` as ``caller`` (None = anonymous: public documents only)."""
        spec = self.index(kind)
        query = query.strip()[:MAX_QUERY_CHARS]
        errors = [
            FieldError(
                "facets",
                "facet_not_allowed",
                f"不能按「{f}」统计;可用的统计项:{', '.join(spec.facets) or '—'}。",
                f"Cannot facet on {f!r}; allowed facets: {', '.join(spec.facets) or '—'}.",
            )
            for f in facets
            if f not in spec.facets
        ]
        for item in sort:
            field, _, direction = item.partition(":")
            if field not in spec.sortable or direction not in {"asc", "desc"}:
                errors.append(
                    FieldError(
                        "sort",
                        "sort_not_allowed",
                        f"不能按「{item}」排序。",
                        f"Cannot sort by {item!r}.",
                    )
                )
        if errors:
            raise invalid(errors)
        # The visibility rule is the first clause; the array form ANDs every element.
        clauses = [visibility_filter(caller), *filter_clauses(spec, filters)]
        page = max(1, int(page))
        per_page = min(max(1, int(per_page)), MAX_PER_PAGE)
        params: dict[str, Any] = {
            "q": query,
            "filter": clauses,
            "page": page,
            "hitsPerPage": per_page,
        }
        if facets:
            params["facets"] = list(facets)
        if sort:
            params["sort"] = list(sort)
        uid = self.uid(kind)
        try:
            answer = await self._http.search(uid, params)
        except (OSError, TimeoutError) as error:  # ConnectionError is an OSError
            raise search_unavailable() from error
        hits = answer.get("hits", [])
        for hit in hits:
            hit.pop(ZH_CHARS_FIELD, None)
        return SearchResult(
            kind=kind,
            query=query,
            hits=hits,
            total=int(answer.get("totalHits", 0)),
            page=int(answer.get("page", page)),
            pages=int(answer.get("totalPages", 0)),
            per_page=per_page,
            facets=answer.get("facetDistribution") or {},
            facet_stats=answer.get("facetStats") or {},
            took_ms=int(answer.get("processingTimeMs", 0)),
        )

    async def tenant_token(
        self,
        kind: str,
        caller: TenantContext | None,
        expires_in: dt.timedelta = dt.timedelta(minutes=15),
    ) -> TenantToken:
        """A short-lived JWT for browser-side search of ``kind`` with ``caller``'s visibility."""
        uid = self.uid(kind)
        expires_in = min(max(expires_in, TOKEN_MIN), TOKEN_MAX)
        expires_at = clock.wall_now() + expires_in  # Meilisearch checks it on its clock
        key_uid, key = await self.search_key()
        token = self.client().generate_tenant_token(
            key_uid,
            {uid: {"filter": visibility_filter(caller)}},
            expires_at=expires_at,
            api_key=key,
        )
        return TenantToken(token=token, index=uid, expires_at=expires_at.replace(microsecond=0))


# --- the process's service ----------------------------------------------------------------

_service: SearchService | None = None


def configure(service: SearchService | None) -> SearchService | None:
    """Install the process's service (the app's lifespan, the worker's start-up, tests);
    returns the one it replaces, for a caller that installs its own only for a while."""
    global _service
    previous, _service = _service, service
    return previous


def get_service() -> SearchService:
    """The installed service, or one built from the settings (CANAL_MEILI_URL / master key)."""
    global _service
    if _service is None:
        from canal.platform.settings import get_settings

        settings = get_settings()
        if not settings.meili_url:
            raise RuntimeError(
                "search is not configured: start EmbeddedMeilisearch and call "
                "canal.platform.search.services.configure(), or set CANAL_MEILI_URL"
            )
        _service = SearchService(settings.meili_url, settings.meili_master_key)
    return _service


async def reindex_all() -> dict[str, int]:
    """Rebuild every registered index from the database (``canal search reindex``)."""
    return await get_service().reindex_all()

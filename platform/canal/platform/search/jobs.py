"""Indexing as background jobs, enqueued only after the change they mirror has committed.

A service changes a row and, in the same transaction, calls ``index_documents`` /
``delete_documents``; the arq job is enqueued once the transaction commits (``db.on_commit``),
so a rolled-back change never reaches the index. The jobs are idempotent: documents are
upserted by primary key and deleting a missing id is a no-op, so arq may run them twice.
Un-publishing = upsert with ``visibility: "tenant"`` (still found by its own tenant), or
``delete_documents`` when nobody should find it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from canal.platform.search.indexes import Document
from canal.platform.search.services import SearchService, get_service


def _service(ctx: dict[str, Any]) -> SearchService:
    service = ctx.get("search")
    return service if isinstance(service, SearchService) else get_service()


async def search_index(ctx: dict[str, Any], kind: str, documents: list[Document]) -> int:
    """Upsert ``documents`` into ``kind``'s index and wait until Meilisearch applied them."""
    return await _service(ctx).upsert(kind, documents, wait=True)


async def search_delete(ctx: dict[str, Any], kind: str, ids: list[str]) -> int:
    """Remove documents by primary key (missing ones are ignored)."""
    return await _service(ctx).delete(kind, ids, wait=True)


async def search_reindex(ctx: dict[str, Any], kind: str | None = None) -> dict[str, int]:
    """Rebuild one kind (or every kind) from the database."""
    service = _service(ctx)
    if kind is None:
        return await service.reindex_all()
    return {kind: await service.reindex(kind)}


JOBS = (search_index, search_delete, search_reindex)


async def index_documents(kind: str, documents: Sequence[Document]) -> None:
    """Index ``documents`` in the same transaction as the change (the transactional outbox):
    the job runs once the caller commits, and never if it rolls back."""
    from canal.platform.jobs.outbox import enqueue_after_commit

    docs = [dict(d) for d in documents]
    if docs:
        await enqueue_after_commit("search_index", kind, docs)


async def delete_documents(kind: str, ids: Sequence[str]) -> None:
    """Remove documents once the caller commits (through the outbox, like indexing)."""
    from canal.platform.jobs.outbox import enqueue_after_commit

    keys = [str(i) for i in ids]
    if keys:
        await enqueue_after_commit("search_delete", kind, keys)

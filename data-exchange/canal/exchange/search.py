"""The catalogue's Chinese full-text search through the shared search service.

Only published listings are indexed, as public documents (they are public by design); the
category, sensitivity and price filters and the provider are applied in PostgreSQL on the ids
Meilisearch returns, so the index holds nothing the catalogue page does not show anyway.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from canal.platform import db
from canal.platform.search.indexes import VISIBILITY_PUBLIC, SearchIndex

KIND = "exchange_datasets"
log = logging.getLogger(__name__)


def listing_document(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "tenant_id": str(row["provider_tenant_id"]),
        "visibility": VISIBILITY_PUBLIC,
        "title": row["title"],
        "description": row["description"][:2000],
        "tags": list(row["tags"] or []),
        "provider_name": row["provider_name"],
        "category": row["category"],
        "sensitivity": row["sensitivity"],
        "price_model": row["price_model"],
    }


async def load_listings() -> AsyncIterator[dict[str, Any]]:
    from canal.exchange.tables import Listing

    async with db.transaction():
        rows = await Listing.select().output(load_json=True).where(Listing.withdrawn == False)  # noqa: E712
    for row in rows:
        yield listing_document(row)


DATASETS = SearchIndex(
    kind=KIND,
    searchable=("title", "description", "tags", "provider_name"),
    filters=("category", "sensitivity", "price_model"),
    facets=("category", "sensitivity", "price_model"),
    chinese=("title", "description", "provider_name"),
    loader=load_listings,
)


async def index_listing(dataset_id: uuid.UUID) -> None:
    """Index now (the reviewer expects to find it at once); if the search server is down,
    leave it to a job so the approval itself never fails on the index."""
    from canal.exchange.tables import Listing
    from canal.platform.search.services import get_service

    async with db.transaction():
        row = await Listing.select().output(load_json=True).where(Listing.id == dataset_id).first()
    if row is None:
        return
    try:
        await get_service().upsert(KIND, [listing_document(row)], wait=True)
    except Exception:
        log.warning("search indexing of listing %s deferred to a job", dataset_id, exc_info=True)
        from canal.platform.search.jobs import index_documents

        async with db.transaction():
            await index_documents(KIND, [listing_document(row)])


async def search_ids(
    query: str, *, filters: dict[str, str] | None = None, page: int = 1, per_page: int = 100
) -> tuple[list[uuid.UUID], int]:
    """One page of matching listing ids, best first, and how many pages there are. The
    category, sensitivity and price filters go to Meilisearch too, so a filtered search is
    not cut short by unfiltered hits (PostgreSQL still applies them, and the provider)."""
    from canal.platform.search.services import get_service

    result = await get_service().search(
        KIND,
        query,
        caller=None,
        filters={k: v for k, v in (filters or {}).items() if v},
        page=page,
        per_page=per_page,
    )
    return [uuid.UUID(h["id"]) for h in result.hits], result.pages

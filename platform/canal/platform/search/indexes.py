"""The index registry: one Meilisearch index per searchable kind, declared once.

Each kind says what is searchable, which attributes a caller may filter, facet and sort on,
which hold Chinese text, and how to rebuild it from the database (an async loader). The
platform declares ``organisations``; a module adds its kinds through
``ModuleSpec.search_indexes``.

Every document carries ``tenant_id`` (owning tenant) and ``visibility`` (``public`` or
``tenant``); both are always filterable and never caller-controlled (see ``services``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Document = dict[str, Any]
Loader = Callable[[], AsyncIterator[Document]]

VISIBILITY_PUBLIC = "public"
VISIBILITY_TENANT = "tenant"
VISIBILITIES = (VISIBILITY_PUBLIC, VISIBILITY_TENANT)
# Fields the platform owns on every document: filterable for the visibility rule only.
SYSTEM_FILTERS = ("tenant_id", "visibility")
# Hidden searchable field: the distinct Han characters of the Chinese attributes, so a
# one-character query also finds a character inside a longer word (区 → 苏州工业园区).
ZH_CHARS_FIELD = "_zh_chars"


@dataclass(frozen=True)
class SearchIndex:
    kind: str  # also the index name after the deployment's prefix
    searchable: Sequence[str]
    primary_key: str = "id"
    # Attributes a caller may filter on with equality (``category = …``, ``IN [...]``).
    filters: Sequence[str] = ()
    # Numeric attributes a caller may filter on with a range (``price >= …``).
    ranges: Sequence[str] = ()
    facets: Sequence[str] = ()
    sortable: Sequence[str] = ()
    # Attributes holding Chinese text: localized as ``cmn`` and feeding ZH_CHARS_FIELD.
    chinese: Sequence[str] = ()
    loader: Loader | None = None
    # Words that must stay whole (domain terms jieba would split).
    dictionary: Sequence[str] = field(default=())

    def meili_settings(self) -> dict[str, Any]:
        searchable = list(self.searchable)
        if self.chinese:
            searchable.append(ZH_CHARS_FIELD)  # last: a word match ranks above a char match
        filterable = sorted({*SYSTEM_FILTERS, *self.filters, *self.ranges, *self.facets})
        settings: dict[str, Any] = {
            "searchableAttributes": searchable,
            "filterableAttributes": filterable,
            "sortableAttributes": sorted(set(self.sortable)),
            # Latin typo tolerance stays on; ids, slugs and numbers must match exactly.
            "typoTolerance": {
                "enabled": True,
                "minWordSizeForTypos": {"oneTypo": 5, "twoTypos": 9},
                "disableOnNumbers": True,
                "disableOnAttributes": [ZH_CHARS_FIELD],
            },
            "pagination": {"maxTotalHits": 10_000},
            "faceting": {"maxValuesPerFacet": 100},
        }
        if self.chinese:
            settings["localizedAttributes"] = [
                {"attributePatterns": [*self.chinese, ZH_CHARS_FIELD], "locales": ["cmn"]}
            ]
        if self.dictionary:
            settings["dictionary"] = list(self.dictionary)
        return settings

    def prepare(self, document: Document) -> Document:
        """Check the platform fields and add the derived Chinese field; returns a copy."""
        if self.primary_key not in document:
            raise ValueError(f"{self.kind}: document without {self.primary_key!r}")
        doc = dict(document)
        doc[self.primary_key] = str(doc[self.primary_key])
        if doc.get("visibility") not in VISIBILITIES:
            raise ValueError(f"{self.kind}: visibility must be one of {VISIBILITIES}")
        doc["tenant_id"] = str(uuid.UUID(str(doc["tenant_id"])))
        if self.chinese:
            doc[ZH_CHARS_FIELD] = han_characters(*(str(doc.get(a) or "") for a in self.chinese))
        return doc


def han_characters(*texts: str) -> str:
    seen: dict[str, None] = {}
    for text in texts:
        for char in text:
            if "\u3400" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff":
                seen.setdefault(char, None)
    return " ".join(seen)


# --- the platform's kinds ------------------------------------------------------------------


async def load_organisations() -> AsyncIterator[Document]:
    """Every active organisation, public with name / kind / slug only (nothing else leaks)."""
    from canal.platform import db
    from canal.tenants.tables import Tenant

    async with db.transaction():
        rows = await Tenant.select(Tenant.id, Tenant.slug, Tenant.name, Tenant.kind).where(
            Tenant.status == "active"
        )
    for row in rows:
        yield organisation_document(row)


def organisation_document(row: dict[str, Any]) -> Document:
    return {
        "id": str(row["id"]),
        "tenant_id": str(row["id"]),
        "visibility": VISIBILITY_PUBLIC,
        "name": row["name"],
        "slug": row["slug"],
        "kind": row["kind"],
    }


ORGANISATIONS = SearchIndex(
    kind="organisations",
    searchable=("name", "slug"),
    filters=("kind",),
    facets=("kind",),
    sortable=("name",),
    chinese=("name",),
    loader=load_organisations,
)

# The shape the marketplace's listings take (category / price / region facets). The
# marketplace module registers it with its loader once its tables exist; the tests and the
# benchmark use it as is.
LISTINGS = SearchIndex(
    kind="listings",
    searchable=("title", "summary", "tags"),
    filters=("category", "region", "tags"),
    ranges=("price",),
    facets=("category", "region", "price"),
    sortable=("price", "published_at"),
    chinese=("title", "summary"),
)


def registry() -> dict[str, SearchIndex]:
    """The platform's kinds plus every module's ``search_indexes``."""
    from canal.platform.modules import registry as modules

    indexes: dict[str, SearchIndex] = {ORGANISATIONS.kind: ORGANISATIONS}
    for module in modules().values():
        for index in module.search_indexes:
            if index.kind in indexes:
                raise ValueError(f"search index {index.kind!r} registered twice")
            indexes[index.kind] = index
    return indexes

"""A real Meilisearch (the embedded binary, or CANAL_MEILI_URL) for the search tests.

Each run uses its own index prefix, so runs sharing one server never see each other's
documents (tenant tokens and the search-only key are scoped to the prefix too).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from canal.platform.search.indexes import LISTINGS, ORGANISATIONS, registry
from canal.platform.search.services import SearchService, configure


@pytest.fixture(scope="session")
def meili(settings) -> tuple[str, str]:
    if settings.meili_url:
        return settings.meili_url, settings.meili_master_key
    from canal.platform.search.local import EmbeddedMeilisearch

    # Left running afterwards, like the embedded PostgreSQL: the next run reuses it.
    return EmbeddedMeilisearch(settings.var_dir, settings.embedded_meili_port).start()


@pytest.fixture(scope="session")
async def search(meili) -> AsyncIterator[SearchService]:
    url, master_key = meili
    prefix = f"test{uuid.uuid4().hex[:8]}"
    # Every registered kind as well: this service is installed for the whole session, and a
    # burst worker in these tests also runs index jobs other tests left (modules' kinds).
    kinds = {i.kind: i for i in (*registry().values(), ORGANISATIONS, LISTINGS)}
    service = SearchService(url, master_key, prefix=prefix, indexes=kinds.values())
    await service.setup()
    configure(service)
    yield service
    configure(None)
    for kind in service.indexes:
        await service.drop(kind)
    key_uid, _ = await service.search_key()
    await service._run(lambda c: c.delete_key(key_uid))

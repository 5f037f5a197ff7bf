"""A real Meilisearch (the embedded binary, or CANAL_MEILI_URL) for the search tests.

Each run uses its own index prefix, so runs sharing one server never see each other's
documents (tenant tokens and the search-only key are scoped to the prefix too).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

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
async def search_service(meili) -> AsyncIterator[SearchService]:
    url, master_key = meili
    prefix = f"test{uuid.uuid4().hex[:8]}"
    # Every registered kind as well: a burst worker in these tests also runs index jobs
    # other tests left (modules' kinds).
    kinds = {i.kind: i for i in (*registry().values(), ORGANISATIONS, LISTINGS)}
    service = SearchService(url, master_key, prefix=prefix, indexes=kinds.values())
    await service.setup()
    yield service
    for kind in service.indexes:
        await service.drop(kind)
    key_uid, _ = await service.search_key()
    await service._run(lambda c: c.delete_key(key_uid))


@pytest.fixture
def search(search_service: SearchService) -> Iterator[SearchService]:
    """The test's service, installed as the process's for this test only. Function-scoped,
    so it is installed after the session's app (which installs its own at start, whenever
    that is) and the app's is back afterwards: an index job run by a worker here lands in
    this service's indexes, and later tests' pages search the app's own."""
    previous = configure(search_service)
    yield search_service
    configure(previous)

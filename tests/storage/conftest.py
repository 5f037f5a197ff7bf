"""Storage fixtures: a real S3 server (embedded SeaweedFS under var/, or CANAL_S3_ENDPOINT),
the object store on it, and the app with the storage routes mounted.

Until the lead wires storage into ``runtime``/``app``, the ``app`` fixture here adds the
storage routes itself and this file sets up the process's object store; once the app's
lifespan does both, these fixtures just use what it made.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar

from tests.asgi import lifespan
from tests.storage.helpers import Org, make_org


@pytest.fixture(scope="session")
def s3_server(settings) -> tuple[str, str, str]:
    """(endpoint, access key, secret key) of a running S3 server."""
    if settings.s3_endpoint:
        return settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key
    from canal.platform.storage.local import EmbeddedS3

    # Left running afterwards, like the embedded PostgreSQL: the next run reuses it.
    return EmbeddedS3(settings.var_dir, settings.embedded_s3_port).start()


@pytest.fixture(scope="session")
async def app(runtime, s3_server) -> AsyncIterator[Litestar]:
    from canal.platform import app as app_module
    from canal.platform.storage.controllers import ROUTES

    original = app_module._route_groups

    def with_storage() -> list[Any]:
        routes = original()
        if not any(handler in routes for handler in ROUTES):
            routes.extend(ROUTES)
        return routes

    app_module._route_groups = with_storage  # type: ignore[assignment]
    try:
        application = app_module.create_app(runtime, pool_size=10)
    finally:
        app_module._route_groups = original  # type: ignore[assignment]
    async with lifespan(application):
        yield application


@pytest.fixture(scope="session")
async def store(app, settings, s3_server):
    from canal.platform.storage import services

    if services._store is None:
        endpoint, access_key, secret_key = s3_server
        made = services.ObjectStore.from_settings(
            settings, endpoint=endpoint, access_key=access_key, secret_key=secret_key
        )
        await made.start()
        services.set_object_store(made)
    return services.object_store()


@pytest.fixture
async def org(app) -> Org:
    return await make_org()

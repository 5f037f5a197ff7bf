"""Where the servers are: embedded ones under var/ or those the settings name.

``prepare()`` starts what is missing (embedded mode only) and works out the owner and
application connection strings; ``migrate()`` creates the database and roles, applies every
app's migrations as the owner, then grants and row-level security.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from canal.platform import db
from canal.platform.local import EmbeddedPostgres, EmbeddedRedis
from canal.platform.settings import Settings

log = logging.getLogger("canal.runtime")


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    server_url: str  # owner credentials, any database
    owner_dsn: str
    app_dsn: str
    redis_url: str
    s3_endpoint: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""
    embedded_postgres: EmbeddedPostgres | None = None
    embedded_redis: EmbeddedRedis | None = None
    meili_url: str = ""
    meili_key: str = ""
    embedded_s3: Any = None  # canal.platform.storage.local.EmbeddedS3
    embedded_meili: Any = None  # canal.platform.search.local.EmbeddedMeilisearch

    def stop_embedded(self) -> None:
        for server in (
            self.embedded_meili,
            self.embedded_s3,
            self.embedded_redis,
            self.embedded_postgres,
        ):
            if server is not None:
                server.stop()


def prepare(settings: Settings) -> Runtime:
    pg = redis = None
    if settings.database_url:
        server_url = settings.database_url
    else:
        pg = EmbeddedPostgres(settings.var_dir, settings.embedded_pg_port)
        server_url = pg.start()
    if settings.redis_url:
        redis_url = settings.redis_url
    else:
        redis = EmbeddedRedis(settings.var_dir, settings.embedded_redis_port)
        redis_url = redis.start()
    s3 = None
    if settings.s3_endpoint:
        s3_endpoint = settings.s3_endpoint
        s3_access, s3_secret = settings.s3_access_key, settings.s3_secret_key
    else:
        from canal.platform.storage.local import EmbeddedS3

        s3 = EmbeddedS3(settings.var_dir, settings.embedded_s3_port)
        s3_endpoint, s3_access, s3_secret = s3.start()
    meili = None
    if settings.meili_url:
        meili_url, meili_key = settings.meili_url, settings.meili_master_key
    else:
        from canal.platform.search.local import EmbeddedMeilisearch

        meili = EmbeddedMeilisearch(settings.var_dir, settings.embedded_meili_port)
        meili_url, meili_key = meili.start()
    return Runtime(
        settings=settings,
        meili_url=meili_url,
        meili_key=meili_key,
        embedded_meili=meili,
        s3_endpoint=s3_endpoint,
        s3_access_key=s3_access,
        s3_secret_key=s3_secret,
        embedded_s3=s3,
        server_url=server_url,
        owner_dsn=db.owner_url(settings, server_url),
        app_dsn=db.app_url(settings, server_url),
        redis_url=redis_url,
        embedded_postgres=pg,
        embedded_redis=redis,
    )


async def migrate(runtime: Runtime) -> None:
    from piccolo.apps.migrations.commands.forwards import run_forwards

    await db.ensure_database(runtime.settings, runtime.server_url)
    db.configure(runtime.owner_dsn)
    result = await run_forwards(app_name="all", migration_id="all", fake=False)
    if not result.success:
        raise RuntimeError(f"migrations failed: {result.message}")
    await db.apply_security(runtime.owner_dsn, runtime.settings.app_db_role)
    # Role lines follow the module catalogue; run as the owner (no RLS on casbin_rule anyway).
    from canal.platform.access.services import sync_all_tenant_roles

    await db.start_pool(runtime.owner_dsn, min_size=1, max_size=2)
    try:
        await sync_all_tenant_roles()
    finally:
        await db.close_pool()


async def open_services(runtime: Runtime) -> None:
    """Connect this process to object storage and search (the web app and the worker alike).

    Idempotent on the servers: buckets and indexes are created only when missing.
    """
    from canal.platform.search import services as search_services
    from canal.platform.storage.services import ObjectStore, set_object_store

    store = ObjectStore.from_settings(
        runtime.settings,
        endpoint=runtime.s3_endpoint,
        access_key=runtime.s3_access_key,
        secret_key=runtime.s3_secret_key,
    )
    await store.start()
    set_object_store(store)
    search = search_services.SearchService(
        runtime.meili_url, runtime.meili_key, prefix=runtime.settings.meili_index_prefix
    )
    await search.setup()
    search_services.configure(search)


def close_services() -> None:
    from canal.platform.search import services as search_services
    from canal.platform.storage.services import set_object_store

    set_object_store(None)
    search_services.configure(None)

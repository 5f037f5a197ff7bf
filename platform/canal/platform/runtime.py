"""Where the servers are: embedded ones under var/ or those the settings name.

``prepare()`` starts what is missing (embedded mode only) and works out the owner and
application connection strings; ``migrate()`` creates the database and roles, applies every
app's migrations as the owner, then grants and row-level security.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

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
    embedded_postgres: EmbeddedPostgres | None = None
    embedded_redis: EmbeddedRedis | None = None

    def stop_embedded(self) -> None:
        if self.embedded_postgres:
            self.embedded_postgres.stop()
        if self.embedded_redis:
            self.embedded_redis.stop()


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
    return Runtime(
        settings=settings,
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

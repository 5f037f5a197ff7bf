"""Database access: two roles, tenant-scoped transactions, and row-level security.

The owner role runs migrations and owns every table; the application connects as a role that
owns nothing and cannot bypass row-level security. Every table with a ``tenant_id`` column gets
ENABLE + FORCE row-level security with a policy on ``app.tenant_id``, which is set with
``set_config(..., true)`` inside the request's transaction (never a session-level SET: pooled
connections would leak it). BEGIN and set_config go to the server in one round trip.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.engine.postgres import PostgresEngine, PostgresTransaction
from piccolo.table import Table

from canal.platform import clock
from canal.platform.settings import Settings

log = logging.getLogger("canal.db")

PLATFORM_SCOPE = "platform"


def _clock_now(_: TimestamptzNow) -> Any:
    return clock.now()


# Piccolo fills ``default=TimestamptzNow()`` columns in Python when a row is saved: let them read
# the one clock too, so a ``created_at`` agrees with the rules that compare it with ``now()``.
setattr(TimestamptzNow, "python", _clock_now)  # noqa: B010


def engine() -> PostgresEngine:
    from canal.platform.piccolo_conf import DB

    return DB


def _with_user_and_db(url: str, user: str | None, database: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        hostpart = netloc.rsplit("@", 1)[-1]
        netloc = f"{user}@{hostpart}"
    return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, parts.fragment))


def owner_url(settings: Settings, server_url: str) -> str:
    return _with_user_and_db(server_url, None, settings.database_name)


def app_url(settings: Settings, server_url: str) -> str:
    if settings.database_app_url:
        return settings.database_app_url
    return _with_user_and_db(server_url, settings.app_db_role, settings.database_name)


def configure(dsn: str) -> None:
    """Point the shared Piccolo engine at ``dsn`` (pool started separately)."""
    db = engine()
    db.config.clear()
    db.config["dsn"] = dsn


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Pool reset hook: nothing to undo.

    asyncpg's default reset sends ``RESET ALL`` and friends on every release — one more round
    trip per request. Canal never changes session state (settings are transaction-local via
    ``set_config(..., true)``), and asyncpg still ends any open transaction before this runs.
    """


async def start_pool(dsn: str, *, min_size: int = 2, max_size: int = 20) -> None:
    configure(dsn)
    db = engine()
    await db.start_connection_pool(min_size=min_size, max_size=max_size, reset=_keep_session)


async def close_pool() -> None:
    db = engine()
    if db.pool is not None:
        await db.close_connection_pool()


# --- after-commit callbacks -------------------------------------------------------------

_after_commit: contextvars.ContextVar[list[Callable[[], Awaitable[None] | None]] | None] = (
    contextvars.ContextVar("canal_after_commit", default=None)
)


def on_commit(callback: Callable[[], Awaitable[None] | None]) -> None:
    """Run ``callback`` once the current transaction commits (at once if there is none).

    In-memory state that mirrors a row (the casbin enforcer, caches) changes only after the
    row is durable, so a rolled-back request leaves no trace anywhere.
    """
    pending = _after_commit.get()
    if pending is None:
        result = callback()
        if result is not None:
            import asyncio

            task = asyncio.ensure_future(result)
            task.add_done_callback(lambda t: t.exception())
        return
    pending.append(callback)


async def _run_callbacks(callbacks: list[Callable[[], Awaitable[None] | None]]) -> None:
    for callback in callbacks:
        result = callback()
        if result is not None:
            await result


# --- scoped transactions ----------------------------------------------------------------


class ScopedTransaction(PostgresTransaction):
    """A Piccolo transaction whose BEGIN carries the row-level-security settings."""

    def __init__(self, engine: PostgresEngine, settings: dict[str, str]) -> None:
        super().__init__(engine, allow_nested=True)
        self.scope_settings = settings

    async def begin(self) -> None:
        # One round trip: BEGIN and the settings together.
        await self.connection.execute(f"BEGIN; {_set_config_sql(self.scope_settings)}")

    async def commit(self) -> None:
        await self.connection.execute("COMMIT")
        self._committed = True

    async def rollback(self) -> None:
        await self.connection.execute("ROLLBACK")
        self._rolled_back = True


def _set_config_sql(settings: dict[str, str]) -> str:
    """``SELECT set_config(...)`` for the scope's settings, transaction-local. The values are
    UUIDs or fixed words produced by scope() itself, never input, so inlining them is safe."""
    assignments = ", ".join(f"set_config('{k}', '{v}', true)" for k, v in settings.items())
    return f"SELECT {assignments}"


def _setting(value: uuid.UUID | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(uuid.UUID(str(value)))


@asynccontextmanager
async def scope(
    *,
    tenant_id: uuid.UUID | str | None = None,
    user_id: uuid.UUID | str | None = None,
    platform: bool = False,
) -> AsyncIterator[PostgresTransaction]:
    """A transaction in which row-level security sees one tenant (and/or one user's rows).

    Nested inside an open transaction it re-applies the settings on that transaction, so a
    service can always open its own scope whether or not a request already did.
    """
    settings = {
        "app.tenant_id": _setting(tenant_id),
        "app.user_id": _setting(user_id),
        "app.scope": PLATFORM_SCOPE if platform else "",
    }
    db = engine()
    current = db.current_transaction.get()
    if current is not None:
        previous = getattr(current, "scope_settings", None)
        if previous != settings:
            await current.connection.execute(_set_config_sql(settings))
            current.scope_settings = settings  # type: ignore[attr-defined]
        yield current
        # Only reached when the block succeeded: an aborted transaction is rolled back anyway.
        if previous is not None and previous != settings:
            await current.connection.execute(_set_config_sql(previous))
            current.scope_settings = previous  # type: ignore[attr-defined]
        return

    callbacks: list[Callable[[], Awaitable[None] | None]] = []
    token = _after_commit.set(callbacks)
    committed = False
    try:
        async with ScopedTransaction(db, settings) as txn:
            yield txn
        committed = True
    finally:
        _after_commit.reset(token)
    if committed and callbacks:
        await _run_callbacks(callbacks)


def tenant_scope(tenant_id: uuid.UUID | str, user_id: uuid.UUID | str | None = None) -> Any:
    return scope(tenant_id=tenant_id, user_id=user_id)


def user_scope(user_id: uuid.UUID | str) -> Any:
    return scope(user_id=user_id)


def platform_scope(user_id: uuid.UUID | str | None = None) -> Any:
    """Operator-console reads across tenants; call only after a platform-role access check."""
    return scope(user_id=user_id, platform=True)


def transaction() -> Any:
    """A plain transaction for global tables (users, sessions, tenants) — no tenant visible."""
    return scope()


# --- database, roles and row-level security (run as the owner) ----------------------------

SECURITY_FUNCTIONS = """
CREATE OR REPLACE FUNCTION canal_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;
CREATE OR REPLACE FUNCTION canal_current_user() RETURNS uuid
    LANGUAGE sql STABLE AS $$ SELECT NULLIF(current_setting('app.user_id', true), '')::uuid $$;
CREATE OR REPLACE FUNCTION canal_platform_scope() RETURNS boolean
    LANGUAGE sql STABLE
    AS $$ SELECT coalesce(current_setting('app.scope', true), '') = 'platform' $$;
"""


async def ensure_database(settings: Settings, server_url: str) -> None:
    """Create the database and the application role when missing (owner connection)."""
    admin = await asyncpg.connect(_with_user_and_db(server_url, None, "postgres"))
    try:
        exists = await admin.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", settings.database_name
        )
        if not exists:
            await admin.execute(f'CREATE DATABASE "{settings.database_name}"')
        if not settings.database_app_url:
            role = await admin.fetchval(
                "SELECT 1 FROM pg_roles WHERE rolname = $1", settings.app_db_role
            )
            if not role:
                await admin.execute(
                    f'CREATE ROLE "{settings.app_db_role}" LOGIN NOSUPERUSER NOBYPASSRLS '
                    "NOCREATEDB NOCREATEROLE"
                )
    finally:
        await admin.close()


async def drop_database(settings: Settings, server_url: str) -> None:
    admin = await asyncpg.connect(_with_user_and_db(server_url, None, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{settings.database_name}" WITH (FORCE)')
    finally:
        await admin.close()


def all_tables() -> list[type[Table]]:
    from piccolo.conf.apps import Finder

    return Finder().get_table_classes()


def tenant_owned_tables() -> list[type[Table]]:
    return [
        t for t in all_tables() if "tenant_id" in {c._meta.db_column_name for c in t._meta.columns}
    ]


async def apply_security(owner_dsn: str, app_role: str) -> None:
    """Grant the app role what it needs, and put row-level security on tenant-owned tables.

    Idempotent; runs after every migration. A table opts into extra read access for its own
    rows' user (``rls_user_column = "user_id"``), into a second owning tenant
    (``rls_counterparty_column``) or into append-only (``append_only = True``).
    """
    conn = await asyncpg.connect(owner_dsn)
    try:
        async with conn.transaction():
            await conn.execute(SECURITY_FUNCTIONS)
            await conn.execute(f'GRANT USAGE ON SCHEMA public TO "{app_role}"')
            await conn.execute(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public "
                f'TO "{app_role}"'
            )
            await conn.execute(
                f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{app_role}"'
            )
            await conn.execute(f'REVOKE ALL ON TABLE migration FROM "{app_role}"')
            for table in all_tables():
                name = table._meta.tablename
                if getattr(table, "append_only", False):
                    await conn.execute(
                        f'REVOKE UPDATE, DELETE, TRUNCATE ON "{name}" FROM "{app_role}"'
                    )
            for table in tenant_owned_tables():
                name = table._meta.tablename
                await conn.execute(f'ALTER TABLE "{name}" ENABLE ROW LEVEL SECURITY')
                await conn.execute(f'ALTER TABLE "{name}" FORCE ROW LEVEL SECURITY')
                await conn.execute(f'DROP POLICY IF EXISTS canal_tenant ON "{name}"')
                # A row about two organisations (a marketplace order: buyer and provider)
                # names the second one in ``rls_counterparty_column``; both see and change it.
                counterparty = getattr(table, "rls_counterparty_column", None)
                rule = "tenant_id = canal_current_tenant() OR canal_platform_scope()"
                if counterparty:
                    rule += f' OR "{counterparty}" = canal_current_tenant()'
                await conn.execute(
                    f'CREATE POLICY canal_tenant ON "{name}" USING ({rule}) WITH CHECK ({rule})'
                )
                await conn.execute(f'DROP POLICY IF EXISTS canal_own_rows ON "{name}"')
                user_column = getattr(table, "rls_user_column", None)
                if user_column:
                    await conn.execute(
                        f'CREATE POLICY canal_own_rows ON "{name}" FOR SELECT '
                        f'USING ("{user_column}" = canal_current_user())'
                    )
            # The audit trail: the app role may read it and append only through its function.
            from canal.platform.audit.grants import audit_security_sql

            for statement in audit_security_sql(app_role):
                await conn.execute(statement)
    finally:
        await conn.close()

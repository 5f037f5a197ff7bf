"""The app factory: builds the Litestar app from the platform's routes and the module registry."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.static_files import create_static_files_router
from redis.asyncio import Redis

from canal.platform import clock, db, invalidation, jobs
from canal.platform.access.services import access
from canal.platform.http.auth import AuthenticationMiddleware
from canal.platform.http.csrf import CSRFMiddleware
from canal.platform.http.errors import (
    CanalError,
    canal_error_handler,
    http_exception_handler,
    internal_error_handler,
)
from canal.platform.http.input import CanalRequest, data_error_handler
from canal.platform.http.middleware import (
    RequestContextMiddleware,
    add_security_headers,
    configure_logging,
)
from canal.platform.http.tenancy import access_guard, check_routes
from canal.platform.identity import throttle
from canal.platform.modules import registry
from canal.platform.notifications.controllers import populate_unread
from canal.platform.runtime import Runtime, close_services, open_services
from canal.tenants.shell import populate_shell
from canal.web.render import STATIC_DIR, add_template_dir, use_display_timezone

log = logging.getLogger("canal.app")


def _route_groups() -> list[Any]:
    """Every domain's routes. Domains own their controllers; the factory only collects."""
    from canal.exchange.bank.controllers import ROUTES as bank_routes
    from canal.platform.audit.controllers import ROUTES as audit_routes
    from canal.platform.billing.controllers import ROUTES as billing_routes
    from canal.platform.http.pages import ROUTES as page_routes
    from canal.platform.identity.controllers import ROUTES as identity_routes
    from canal.platform.jobs.controllers import ROUTES as jobs_routes
    from canal.platform.notifications.controllers import ROUTES as notification_routes
    from canal.platform.storage.controllers import ROUTES as storage_routes
    from canal.tenants.controllers import ROUTES as tenant_routes

    routes: list[Any] = [
        *page_routes,
        *identity_routes,
        *tenant_routes,
        *audit_routes,
        *storage_routes,
        *billing_routes,
        *jobs_routes,
        *notification_routes,
        # The data bank is for every organisation and verified resident, not a module.
        *bank_routes,
    ]
    for module in registry().values():
        routes.extend(module.public_handlers)
        if module.route_handlers:
            routes.append(
                Router(
                    path=f"/t/{{tenant_slug:str}}/m/{module.key}",
                    route_handlers=list(module.route_handlers),
                    opt={"module": module.key},
                )
            )
        if module.api_handlers:
            routes.append(
                Router(
                    path=f"/api/v1/t/{{tenant_slug:str}}/m/{module.key}",
                    route_handlers=list(module.api_handlers),
                    opt={"module": module.key},
                )
            )
        if module.operator_handlers:
            routes.append(
                Router(
                    path=f"/operator/m/{module.key}",
                    route_handlers=list(module.operator_handlers),
                )
            )
        if module.operator_api_handlers:
            routes.append(
                Router(
                    path=f"/api/v1/operator/m/{module.key}",
                    route_handlers=list(module.operator_api_handlers),
                )
            )
    return routes


def _template_dirs() -> list[Path]:
    """Each domain keeps ``templates/`` beside its code, in any component of ``canal``."""
    import canal

    web = Path(STATIC_DIR).parent.resolve()
    dirs: list[Path] = []
    for root in canal.__path__:
        for path in sorted(Path(root).rglob("templates")):
            if path.is_dir() and web not in path.resolve().parents:
                dirs.append(path)
    return dirs


async def _listen_for_invalidations(redis: Redis) -> None:
    """Other processes changed a cached fact (roles, a tenant, a session): forget it here."""
    pubsub = redis.pubsub()
    await pubsub.subscribe(invalidation.CHANNEL)
    try:
        async for message in pubsub.listen():
            if message.get("type") == "message":
                try:
                    await invalidation.handle(message["data"].decode())
                except Exception:  # one bad notice must not stop the listener
                    log.exception("invalidation notice failed")
    finally:
        await pubsub.aclose()


async def _shell_data(request: Any) -> None:
    """The header's data for HTML pages: my organisations, the tenant's nav, unread count."""
    await populate_shell(request)
    await populate_unread(request)


def create_app(runtime: Runtime, *, pool_size: int = 20) -> Litestar:
    settings = runtime.settings
    configure_logging(settings.log_json)
    use_display_timezone(clock.display_tz())
    for path in _template_dirs():
        add_template_dir(path)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await db.start_pool(runtime.app_dsn, min_size=2, max_size=pool_size)
        redis = Redis.from_url(runtime.redis_url)
        app.state.redis = redis
        throttle.attach(redis)  # sign-in waits by address (identity/throttle.py)
        app.state.runtime = runtime
        await access().reload()
        await open_services(runtime)
        jobs.attach(runtime.redis_url)  # push outbox jobs right after commit

        async def publish(message: str) -> None:
            await redis.publish(invalidation.CHANNEL, message)

        invalidation.attach(publish)
        listener = asyncio.create_task(_listen_for_invalidations(Redis.from_url(runtime.redis_url)))
        try:
            yield
        finally:
            invalidation.attach(None)
            throttle.attach(None)
            close_services()
            await jobs.detach()
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
            await redis.aclose()
            await db.close_pool()

    app = Litestar(
        route_handlers=[
            *_route_groups(),
            create_static_files_router(
                path="/static",
                directories=[STATIC_DIR],
                opt={"access": "public"},
                include_in_schema=False,
            ),
        ],
        guards=[access_guard],
        # After the guard (tenant context known), before the handler: the header's data.
        before_request=_shell_data,
        middleware=[
            DefineMiddleware(RequestContextMiddleware, access_log=settings.access_log),
            DefineMiddleware(AuthenticationMiddleware, settings=settings),
            DefineMiddleware(CSRFMiddleware, settings=settings),
        ],
        # Every request reads its body through CanalRequest (input hygiene: http/input.py).
        request_class=CanalRequest,
        # Security headers on every answer, also those routing makes (404, 405).
        before_send=[add_security_headers],
        exception_handlers={
            CanalError: canal_error_handler,
            HTTPException: http_exception_handler,
            # The database refused a value as data (SQLSTATE class 22): the caller's input.
            asyncpg.exceptions.DataError: data_error_handler,
            Exception: internal_error_handler,
        },
        openapi_config=OpenAPIConfig(
            title="Canal API",
            version="1",
            path="/api/schema",
            description="数字东昌 Canal 平台接口 — Canal platform API. Authenticate with "
            "`Authorization: Bearer <API token>`.",
            render_plugins=[ScalarRenderPlugin()],
        ),
        lifespan=[lifespan],
        state=State({"settings": settings}),
        request_max_body_size=10 * 1024 * 1024,
        debug=False,
    )
    check_routes(app)
    return app

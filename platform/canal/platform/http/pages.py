"""Platform pages that belong to no domain: home, health, metrics, preferences."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from canal.platform.http.context import Principal
from canal.web.render import page, redirect


@get("/", opt={"access": "public"}, include_in_schema=False)
async def home(request: Request[Any, Any, Any]) -> Response[str]:
    from canal.platform.modules import registry

    principal = request.scope.get("user")
    tenants: list[Any] = []
    if isinstance(principal, Principal) and principal.fully_signed_in:
        from canal.tenants.services import my_tenants

        tenants = await my_tenants(principal.user_id)
    return page(request, "home.html", {"modules": list(registry().values()), "tenants": tenants})


@get("/api/v1/modules", opt={"access": "public"}, tags=["modules"])
async def module_catalogue_api() -> list[dict[str, Any]]:
    """The module catalogue (the home page's twin): every module, its names, plans, status."""
    from canal.platform.modules import registry

    return [
        {
            "key": m.key,
            "name_zh": m.name_zh,
            "name_en": m.name_en,
            "summary_zh": m.summary_zh,
            "summary_en": m.summary_en,
            "status": m.status,
            "tenant_kinds": list(m.tenant_kinds),
            "plans": [
                {
                    "key": p.key,
                    "name_zh": p.zh,
                    "name_en": p.en,
                    "monthly_price_fen": p.monthly_price_fen,
                }
                for p in m.plans
            ],
        }
        for m in registry().values()
    ]


@get("/healthz", opt={"access": "public"}, tags=["operations"])
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@get("/readyz", opt={"access": "public"}, tags=["operations"])
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Readiness: the database and Redis answer."""
    checks: dict[str, str] = {}
    try:
        from canal.platform.identity.tables import User

        await User.raw("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # readiness must report, not raise
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        await request.app.state.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return Response(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )


@get("/api/v1/t/{tenant_slug:str}/context", opt={"access": "tenant"}, tags=["tenancy"])
async def tenant_context_api(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Who am I in this organisation: the tenant, my roles, and the modules switched on."""
    from canal.platform.http.tenancy import tenant_context
    from canal.tenants.services import enabled_modules

    ctx = tenant_context(request)
    return {
        "tenant": {"slug": ctx.tenant.slug, "name": ctx.tenant.name, "kind": ctx.tenant.kind},
        "user_id": str(ctx.user_id),
        "roles": list(ctx.roles),
        "modules": sorted(await enabled_modules(ctx.tenant_id)),
    }


@get("/api/v1/t/{tenant_slug:str}/nav", opt={"access": "tenant"}, tags=["tenancy"])
async def tenant_nav_api(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    """The organisation's menu as I see it (the page shell's twin): its pages I may open and
    each module switched on with the module's own entries for my permissions and this kind
    of organisation."""
    import msgspec

    from canal.platform.http.tenancy import tenant_context
    from canal.tenants.services import enabled_modules
    from canal.tenants.shell import tenant_menu

    ctx = tenant_context(request)
    return [msgspec.to_builtins(e) for e in tenant_menu(ctx, await enabled_modules(ctx.tenant_id))]


def metrics_allowed(request: Request[Any, Any, Any]) -> bool:
    """A scrape from this machine (loopback, not relayed by a proxy), or one presenting
    ``CANAL_METRICS_TOKEN`` as a bearer token. Route names, job names and their counts are an
    internal map of the service, not for anyone on the internet."""
    settings = request.app.state.settings
    token = settings.metrics_token
    presented = request.headers.get("authorization", "")
    if token and presented[:7].lower() == "bearer ":
        return hmac.compare_digest(presented[7:].strip().encode(), token.encode())
    relayed = "x-forwarded-for" in request.headers or "forwarded" in request.headers
    host = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return loopback and not relayed


@get("/metrics", opt={"access": "public"}, include_in_schema=False)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus: request counts and latency by route, and the background jobs."""
    from canal.platform.http.errors import CanalError
    from canal.platform.jobs import job_metrics

    if not metrics_allowed(request):
        raise CanalError(
            "metrics_forbidden",
            "监控指标只对本机或持有监控令牌的请求开放。",
            "Metrics answer only to this machine or to a request with the metrics token.",
            status=403,
        )
    jobs = await job_metrics(request.app.state.redis)
    # Litestar adds the charset itself: the exposition type without it, so it is sent once.
    media_type = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")
    return Response(generate_latest() + jobs.encode(), media_type=media_type)


@post("/preferences/care-mode", opt={"access": "public"}, include_in_schema=False)
async def toggle_care_mode(request: Request[Any, Any, Any]) -> Response[Any]:
    """关怀模式: larger type and higher contrast; remembered per browser and per account."""
    principal = request.scope.get("user")
    enabled = request.cookies.get("canal_care") != "1"
    if isinstance(principal, Principal):
        from canal.platform.identity.tables import User

        enabled = not principal.care_mode
        await User.update({User.care_mode: enabled}).where(User.id == principal.user_id)
        from canal.platform.http.auth import forget

        forget()
    form = await request.form()
    back = str(form.get("next") or "/")
    # Only a local path: "//host" or "https://…" would make this an open redirect.
    if not back.startswith("/") or back.startswith("//") or "\\" in back:
        back = "/"
    response = redirect(request, back)
    response.cookies.append(
        Cookie(
            key="canal_care",
            value="1" if enabled else "0",
            path="/",
            samesite="lax",
            max_age=365 * 86400,
        )
    )
    return response


ROUTES = [
    home,
    module_catalogue_api,
    healthz,
    readyz,
    metrics,
    toggle_care_mode,
    tenant_context_api,
    tenant_nav_api,
]

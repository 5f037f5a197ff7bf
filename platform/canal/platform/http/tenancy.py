"""Tenant resolution from the path and the single access guard every route passes.

Each route handler declares ``opt={"access": ...}``:

* ``"public"``  — anyone;
* ``"user"``    — any signed-in person;
* ``"tenant"``  — a member of the path's tenant holding ``opt["permission"]`` (resource,
  action); with ``opt["module"]`` the tenant must also have that module switched on;
* ``"platform"`` — operator staff holding ``opt["permission"]`` in the operator tenant.

A route that declares nothing fails at start-up (``check_routes``). A tenant the caller does
not belong to answers exactly like a missing one: 404.
"""

from __future__ import annotations

import time
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from canal.platform.access.services import access
from canal.platform.http.context import Principal, TenantContext, TenantRef
from canal.platform.http.errors import CanalError, not_found

ACCESS_KINDS = {"public", "user", "tenant", "platform"}

_tenant_cache: dict[str, tuple[float, TenantRef | None]] = {}
_TENANT_TTL = 30.0
_operator: TenantRef | None = None


def forget_tenant(slug: str | None = None, *, broadcast_change: bool = True) -> None:
    """Drop cached tenants (all, or one slug) here and in the other processes."""
    global _operator
    if slug is None:
        _tenant_cache.clear()
        _operator = None
    else:
        _tenant_cache.pop(slug, None)
    if broadcast_change:
        from canal.platform.invalidation import broadcast

        broadcast("tenant", slug or "")


def _ref(row: dict[str, Any]) -> TenantRef:
    return TenantRef(
        id=row["id"], slug=row["slug"], name=row["name"], kind=row["kind"], status=row["status"]
    )


async def tenant_by_slug(slug: str) -> TenantRef | None:
    from canal.tenants.tables import Tenant

    now = time.monotonic()
    cached = _tenant_cache.get(slug)
    if cached and cached[0] > now:
        return cached[1]
    row = (
        await Tenant.select(Tenant.id, Tenant.slug, Tenant.name, Tenant.kind, Tenant.status)
        .where(Tenant.slug == slug)
        .first()
    )
    ref = _ref(row) if row else None
    if len(_tenant_cache) > 10_000:
        _tenant_cache.clear()
    _tenant_cache[slug] = (now + _TENANT_TTL, ref)
    return ref


async def operator_tenant() -> TenantRef | None:
    global _operator
    if _operator is None:
        from canal.tenants.tables import Tenant

        row = (
            await Tenant.select(Tenant.id, Tenant.slug, Tenant.name, Tenant.kind, Tenant.status)
            .where(Tenant.kind == "operator")
            .first()
        )
        _operator = _ref(row) if row else None
    return _operator


def mfa_required() -> CanalError:
    return CanalError(
        "mfa_required",
        "运营方工作人员须先开启并验证两步验证(TOTP)。",
        "Operator staff must turn on and pass two-factor authentication (TOTP) first.",
        status=403,
    )


def module_not_enabled(name_zh: str, name_en: str) -> CanalError:
    return CanalError(
        "module_not_enabled",
        f"本组织尚未开通「{name_zh}」模块,管理员可在模块目录中开通。",
        f"This organisation has not switched on the {name_en} module; an admin can do so in "
        "the module catalogue.",
        status=403,
    )


def forbidden_by_role() -> CanalError:
    """The guard's answer when the person's roles in the organisation lack the route's
    permission (a member of the organisation: an outsider gets 404)."""
    return CanalError(
        "forbidden",
        "您在本组织中没有执行此操作的权限。",
        "Your role in this organisation does not allow this.",
        status=403,
    )


def _require_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    user = connection.scope.get("user")
    if not isinstance(user, Principal):
        raise NotAuthorizedException()
    return user


def _require_mfa(principal: Principal) -> None:
    """Operator staff act only with two-factor: a session that passed the TOTP step, or an API
    token of an account that has TOTP turned on (a token never passes a step of its own)."""
    if principal.via == "token":
        if not principal.totp_enabled:
            raise mfa_required()
        return
    if not principal.mfa_passed:
        raise mfa_required()


async def access_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    kind = handler.opt.get("access")
    if kind == "public" or (kind is None and _framework_public(connection.url.path, handler)):
        return
    principal = _require_principal(connection)
    # Half signed in (password passed, TOTP not yet): only the TOTP step itself is open.
    if (
        principal.via == "session"
        and principal.totp_enabled
        and not principal.mfa_passed
        and not handler.opt.get("mfa_pending_ok")
    ):
        raise mfa_required()
    # A token bound to one organisation works on that organisation's routes and nowhere else
    # (not on the account, not on the operator console).
    if principal.token_tenant is not None and kind != "tenant":
        raise not_found()
    if kind == "user":
        return
    permission: tuple[str, str] = handler.opt.get("permission", ("tenant", "read"))
    if kind == "platform":
        operator = await operator_tenant()
        if operator is None or not access().enforce(principal.user_id, operator.id, *permission):
            raise not_found()
        _require_mfa(principal)
        connection.state.operator = operator
        return
    if kind != "tenant":
        raise RuntimeError(f"route {handler} declares no access kind")
    slug = connection.path_params.get("tenant_slug")
    tenant = await tenant_by_slug(str(slug)) if slug else None
    if tenant is None or tenant.status != "active":
        raise not_found()
    if principal.token_tenant is not None and principal.token_tenant != tenant.id:
        raise not_found()
    roles = access().roles_in(principal.user_id, tenant.id)
    if not roles:
        raise not_found()
    if tenant.kind == "operator":
        _require_mfa(principal)
    if not access().enforce(principal.user_id, tenant.id, *permission):
        raise forbidden_by_role()
    module_key = handler.opt.get("module")
    if module_key == "{module_key}":
        module_key = str(connection.path_params.get("module_key", ""))
    if module_key:
        from canal.platform.modules import get_module
        from canal.tenants.services import module_enabled

        spec = get_module(module_key)
        if spec is None:
            raise not_found()
        if not await module_enabled(tenant.id, module_key):
            raise module_not_enabled(spec.name_zh, spec.name_en)
    connection.state.tenant_ctx = TenantContext(
        tenant=tenant, user_id=principal.user_id, roles=tuple(roles)
    )


def tenant_context(request: Any) -> TenantContext:
    """Dependency for tenant routes: the context the guard resolved."""
    ctx = request.state.get("tenant_ctx") if hasattr(request.state, "get") else None
    if ctx is None:
        ctx = getattr(request.state, "tenant_ctx", None)
    if ctx is None:
        raise not_found()
    return ctx


def current_principal(request: Any) -> Principal:
    user = request.scope.get("user")
    if not isinstance(user, Principal):
        raise NotAuthorizedException()
    return user


# Routes Litestar itself adds (the OpenAPI document and its viewer) are public by nature.
FRAMEWORK_PUBLIC_PREFIXES = ("/api/schema",)


def _framework_public(path: str, handler: Any = None) -> bool:
    # Litestar adds an OPTIONS handler to every path; it only lists the allowed methods.
    if handler is not None and getattr(handler, "handler_name", "") == "options_handler":
        return True
    return path.startswith(FRAMEWORK_PUBLIC_PREFIXES)


def check_routes(app: Any) -> None:
    """Refuse to start if a route handler does not say who may call it."""
    missing = []
    for route in app.routes:
        if _framework_public(route.path):
            continue
        for handler in getattr(route, "route_handlers", []):
            if _framework_public(route.path, handler):
                continue
            kind = handler.opt.get("access")
            if kind not in ACCESS_KINDS:
                missing.append(f"{route.path} ({handler.handler_name})")
            elif kind == "tenant" and "{tenant_slug" not in route.path:
                missing.append(f"{route.path}: tenant access without {{tenant_slug}}")
            elif kind != "tenant" and "{tenant_slug" in route.path:
                missing.append(f"{route.path}: a tenant path must use tenant access")
    if missing:
        raise RuntimeError("routes without an access declaration: " + ", ".join(missing))

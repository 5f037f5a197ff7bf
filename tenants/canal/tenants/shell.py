"""What the page shell shows about organisations: the switcher and the tenant navigation."""

from __future__ import annotations

from typing import Any

from canal.platform.access.services import access
from canal.platform.http.context import Principal, TenantContext
from canal.platform.http.errors import wants_json
from canal.platform.modules import registry
from canal.tenants.services import enabled_modules, my_tenants
from canal.web.i18n import gettext, request_locale

# (path under /t/{slug}, English label, permission needed to see the entry)
_TENANT_PAGES: tuple[tuple[str, str, tuple[str, str]], ...] = (
    ("", "Overview", ("tenant", "read")),
    ("/members", "Members", ("members", "read")),
    ("/roles", "Roles", ("members", "manage")),
    ("/modules", "Modules", ("modules", "read")),
    ("/storage", "Files and storage", ("files", "write")),
    ("/bank", "Data bank", ("files", "read")),
    ("/billing", "Billing", ("modules", "manage")),
    ("/audit", "Audit trail", ("audit", "read")),
)


def tenant_nav(
    ctx: TenantContext, modules_on: set[str], locale: str, current_path: str
) -> list[dict[str, Any]]:
    """The tenant's menu: its pages the person may open, then each module switched on."""
    base = f"/t/{ctx.tenant.slug}"
    enforce = access().enforce
    items: list[dict[str, Any]] = []
    for suffix, label, (resource, action) in _TENANT_PAGES:
        if not enforce(ctx.user_id, ctx.tenant_id, resource, action):
            continue
        href = base + suffix
        active = current_path == href if not suffix else current_path.startswith(href)
        items.append({"href": href, "label": gettext(locale, label), "active": active})
    for key, spec in registry().items():
        if key in modules_on:
            href = f"{base}/m/{key}"
            items.append(
                {
                    "href": href,
                    "label": spec.name(locale),
                    "active": current_path == href or current_path.startswith(href + "/"),
                }
            )
    return items


async def populate_shell(request: Any) -> None:
    """Fill ``my_tenants`` (and ``nav`` on tenant pages) for HTML pages of a signed-in person.

    Two queries at most: one person's memberships, one tenant's active modules. Run it after
    the access guard (Litestar runs ``before_request`` hooks after guards), so the tenant
    context is known.
    """
    principal = request.scope.get("user")
    if not isinstance(principal, Principal) or not principal.fully_signed_in or wants_json(request):
        return
    state = request.scope.setdefault("state", {})
    state["my_tenants"] = await my_tenants(principal.user_id)
    ctx = state.get("tenant_ctx")
    if isinstance(ctx, TenantContext):
        modules_on = await enabled_modules(ctx.tenant_id)
        state["nav"] = tenant_nav(ctx, modules_on, request_locale(request), request.url.path)
    elif request.url.path.startswith("/operator"):
        state["nav"] = operator_nav(request_locale(request), request.url.path)


def operator_nav(locale: str, path: str) -> list[dict[str, Any]]:
    """The operator console's sections (the guard has already checked the platform role)."""
    entries = [
        ("/operator/tenants", "All organisations"),
        ("/operator/audit", "Platform audit trail"),
        ("/operator/jobs", "Background jobs"),
    ]
    return [
        {"href": href, "label": gettext(locale, label), "active": path.startswith(href)}
        for href, label in entries
    ]

"""What the page shell shows about organisations: the switcher and the tenant navigation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from canal.platform.access.services import access
from canal.platform.http.context import Principal, TenantContext
from canal.platform.http.errors import wants_json
from canal.platform.modules import registry, visible_nav
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


@dataclass
class MenuEntry:
    """One entry of an organisation's menu, in both languages; a module's own entries (those
    the person may use in this kind of organisation: ``NavEntry.permission``/``kinds``)
    are its ``children``."""

    href: str
    label_zh: str
    label_en: str
    module: str | None = None
    children: list[MenuEntry] = field(default_factory=list)

    def label(self, locale: str) -> str:
        return self.label_zh if locale.startswith("zh") else self.label_en


def tenant_menu(ctx: TenantContext, modules_on: set[str]) -> list[MenuEntry]:
    """The tenant's menu: its pages the person may open, then each module switched on."""
    base = f"/t/{ctx.tenant.slug}"
    enforce = access().enforce
    items: list[MenuEntry] = []
    for suffix, label, (resource, action) in _TENANT_PAGES:
        if enforce(ctx.user_id, ctx.tenant_id, resource, action):
            items.append(MenuEntry(base + suffix, gettext("zh_CN", label), label))
    for key, spec in registry().items():
        if key in modules_on:
            href = f"{base}/m/{key}"
            children = [MenuEntry(href + e.path, e.zh, e.en) for e in visible_nav(spec, ctx)]
            items.append(MenuEntry(href, spec.name_zh, spec.name_en, key, children))
    return items


def tenant_nav(
    ctx: TenantContext, modules_on: set[str], locale: str, current_path: str
) -> list[dict[str, Any]]:
    """The menu for the page shell; the open module's own entries follow it, indented."""
    base = f"/t/{ctx.tenant.slug}"
    items: list[dict[str, Any]] = []
    for entry in tenant_menu(ctx, modules_on):
        if entry.module is None:
            exact = entry.href == base
            active = current_path == entry.href if exact else current_path.startswith(entry.href)
            items.append({"href": entry.href, "label": entry.label(locale), "active": active})
            continue
        inside = current_path == entry.href or current_path.startswith(entry.href + "/")
        children = [c for c in entry.children if c.href != entry.href] if inside else []
        here = next(
            (
                c
                for c in children
                if current_path == c.href or current_path.startswith(c.href + "/")
            ),
            None,
        )
        # One current page: the module's entry, unless one of its own entries is open.
        items.append(
            {"href": entry.href, "label": entry.label(locale), "active": inside and here is None}
        )
        items.extend(
            {"href": c.href, "label": c.label(locale), "active": c is here, "sub": True}
            for c in children
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
    else:
        state["nav"] = person_nav(request_locale(request), request.url.path)


def person_nav(locale: str, path: str) -> list[dict[str, Any]]:
    """Outside an organisation: the pages any signed-in person may use (the modules'
    ``person_nav``, e.g. the data catalogue residents browse read-only)."""
    return [
        {
            "href": entry.path,
            "label": entry.label(locale),
            "active": path == entry.path or path.startswith(entry.path + "/"),
        }
        for spec in registry().values()
        if spec.status == "available"
        for entry in spec.person_nav
    ]


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

"""The module registry: every subscribable module declares itself once, in its ``module.py``.

Modules are found through the ``canal.modules`` entry-point group (pyproject.toml), so adding
a module touches no platform file. The app factory mounts their routes behind the entitlement
guard, the navigation lists their entries, the access layer gives their permissions to roles,
and the catalogue shows their names and plans — all from this one declaration.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any, Literal


@dataclass(frozen=True)
class Permission:
    resource: str
    action: str
    zh: str
    en: str


@dataclass(frozen=True)
class NavEntry:
    """One entry of a module's menu, with who sees it.

    ``permission``: shown only to a person holding this (resource, action) in the
    organisation; ``kinds``: only in organisations of these kinds (empty = every kind the
    module is offered to). The route's own guard still decides; this only keeps the menu to
    what the person can use — an authority sees no "my matches", a buyer no provider centre.
    """

    path: str  # relative to /t/{slug}/m/{module_key}
    zh: str
    en: str
    permission: tuple[str, str] | None = None
    kinds: Sequence[str] = ()

    def label(self, locale: str) -> str:
        return self.zh if locale.startswith("zh") else self.en

    def shown_to(self, tenant_kind: str, may: Callable[[str, str], bool]) -> bool:
        if self.kinds and tenant_kind not in self.kinds:
            return False
        return self.permission is None or may(*self.permission)


@dataclass(frozen=True)
class Plan:
    key: str
    zh: str
    en: str
    monthly_price_fen: int = 0  # CNY in fen; 0 = free (resident services are always free)


@dataclass(frozen=True)
class ScheduledJob:
    """A job function the worker runs on a schedule (arq cron; times in UTC).

    ``None`` means "every": ``ScheduledJob(f, minute={0})`` runs hourly at :00.
    """

    function: Callable[..., Any]
    minute: set[int] | None = None
    hour: set[int] | None = None
    weekday: set[int] | None = None  # 0 = Monday
    timeout: int = 600


@dataclass(frozen=True)
class ModuleSpec:
    key: str
    name_zh: str
    name_en: str
    summary_zh: str
    summary_en: str
    # "coming_soon" modules appear in the catalogue but cannot be switched on yet.
    status: Literal["available", "coming_soon"] = "coming_soon"
    # Which kinds of organisation may switch the module on.
    tenant_kinds: Sequence[str] = ("enterprise", "park", "community", "government", "operator")
    route_handlers: Sequence[Any] = ()
    api_handlers: Sequence[Any] = ()
    # Operator-console routes, mounted at /operator/m/{key} and /api/v1/operator/m/{key};
    # they declare opt["access"] = "platform" (review queues, disputes, settings).
    operator_handlers: Sequence[Any] = ()
    operator_api_handlers: Sequence[Any] = ()
    # Routes at their own absolute paths, outside the tenant prefix (a public catalogue);
    # each still declares its access in ``opt``.
    public_handlers: Sequence[Any] = ()
    nav: Sequence[NavEntry] = ()
    # The signed-in person's own menu outside any organisation (a resident without one too):
    # entries at absolute paths, usually pages among ``public_handlers`` with access "user".
    person_nav: Sequence[NavEntry] = ()
    permissions: Sequence[Permission] = ()
    # role key -> (resource, action) pairs; module roles appear on the roles page.
    roles: dict[str, Sequence[tuple[str, str]]] = field(default_factory=dict)
    role_names: dict[str, tuple[str, str]] = field(default_factory=dict)
    plans: Sequence[Plan] = (Plan("free", "免费版", "Free"),)
    piccolo_apps: Sequence[str] = ()
    jobs: Sequence[Callable[..., Any]] = ()
    # Jobs the worker runs on a schedule (digests, reminders, backups).
    cron: Sequence[ScheduledJob] = ()
    # canal.platform.search.indexes.SearchIndex declarations for this module's kinds.
    search_indexes: Sequence[Any] = ()
    # Audit action code -> English label (the Chinese goes in the module's .po file).
    audit_labels: Mapping[str, str] = field(default_factory=dict)
    # Demo data: called by ``canal demo`` after the organisations exist, with a
    # ``canal.platform.demo.DemoWorld`` (contexts per organisation slug, people by login).
    seed_demo: Callable[[Any], Awaitable[None]] | None = None

    def name(self, locale: str) -> str:
        return self.name_zh if locale.startswith("zh") else self.name_en

    def summary(self, locale: str) -> str:
        return self.summary_zh if locale.startswith("zh") else self.summary_en


@lru_cache(maxsize=1)
def registry() -> dict[str, ModuleSpec]:
    modules: dict[str, ModuleSpec] = {}
    for ep in sorted(entry_points(group="canal.modules"), key=lambda e: e.name):
        spec = ep.load()
        if not isinstance(spec, ModuleSpec):
            raise TypeError(f"entry point {ep.name} is not a ModuleSpec")
        if spec.key in modules:
            raise ValueError(f"module key {spec.key!r} registered twice")
        modules[spec.key] = spec
    return modules


def get_module(key: str) -> ModuleSpec | None:
    return registry().get(key)


def visible_nav(spec: ModuleSpec, ctx: Any) -> list[NavEntry]:
    """``spec``'s menu entries the person in ``ctx`` (a TenantContext) should see."""
    from canal.platform.access.services import access

    enforce = access().enforce

    def may(resource: str, action: str) -> bool:
        return enforce(ctx.user_id, ctx.tenant_id, resource, action)

    return [e for e in spec.nav if e.shown_to(ctx.tenant.kind, may)]

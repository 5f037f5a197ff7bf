"""Access control: one casbin enforcer for every check, its policies kept in PostgreSQL.

``enforce(user, tenant, resource, action)`` is the only question the rest of the code asks.
Role assignments and role permissions are stored as casbin lines in ``casbin_rule`` through
``PiccoloAdapter``; the in-memory enforcer changes only after the writing transaction commits
(``db.on_commit``), and other processes reload when told over Redis.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from pathlib import Path

import casbin
from casbin import persist

from canal.platform import db
from canal.platform.access.roles import RoleDef, role_catalog
from canal.platform.access.tables import CasbinRule

log = logging.getLogger("canal.access")

MODEL_PATH = Path(__file__).with_name("model.conf")
# p lines: (sub, dom, obj, act); FastEnforcer indexes them by dom (1) and act (3).
CACHE_KEY_ORDER = [1, 3]


def subject(user_id: uuid.UUID | str) -> str:
    return f"user:{user_id}"


def role_subject(role: str) -> str:
    return f"role:{role}"


class PiccoloAdapter(persist.Adapter):
    """casbin adapter over the ``casbin_rule`` table.

    casbin's adapter interface is synchronous while our database access is async, so loading
    is split in two: ``fetch()`` reads the rows, ``load_policy()`` hands them to the model.
    Writes go through the async functions below, not through casbin's auto-save.
    """

    def __init__(self) -> None:
        self._rows: list[list[str]] = []

    async def fetch(self) -> None:
        rows = await CasbinRule.select(
            CasbinRule.ptype,
            CasbinRule.v0,
            CasbinRule.v1,
            CasbinRule.v2,
            CasbinRule.v3,
            CasbinRule.v4,
            CasbinRule.v5,
        ).output(as_list=False)
        self._rows = [
            [r["ptype"]] + [v for v in (r["v0"], r["v1"], r["v2"], r["v3"], r["v4"], r["v5"]) if v]
            for r in rows
        ]

    def load_policy(self, model: casbin.Model) -> None:
        # What casbin's load_policy_line ends with, minus re-parsing each row as text
        # character by character (three quarters of a 100,000-line reload).
        sections = model.model
        for ptype, *values in self._rows:
            section = sections.get(ptype[:1])
            if section is not None and ptype in section:
                section[ptype].policy.append(values)

    def save_policy(self, model: casbin.Model) -> bool:  # pragma: no cover - unused
        raise NotImplementedError("policies are written through canal.platform.access.services")

    def add_policy(self, sec: str, ptype: str, rule: list[str]) -> None:
        return None

    def remove_policy(self, sec: str, ptype: str, rule: list[str]) -> None:
        return None

    def remove_filtered_policy(self, sec: str, ptype: str, field_index: int, *values: str) -> None:
        return None


class Access:
    """The process's enforcer and the operations that change what it knows."""

    def __init__(self) -> None:
        self.adapter = PiccoloAdapter()
        self.enforcer = self._new_enforcer()
        self._lock = asyncio.Lock()
        # Decisions are pure functions of the policy, so they are memoised until it changes.
        # casbin evaluates its matcher per candidate line (~150 µs a check); a hit costs ~1 µs.
        self._decisions: dict[tuple[str, str, str, str], bool] = {}
        self._roles: dict[tuple[str, str], list[str]] = {}
        self._applied = 0  # counts in-memory changes; see reload()

    def _changed(self) -> None:
        self._applied += 1
        self._decisions.clear()
        self._roles.clear()

    def _new_enforcer(self) -> casbin.FastEnforcer:
        enforcer = casbin.FastEnforcer(
            str(MODEL_PATH), self.adapter, cache_key_order=CACHE_KEY_ORDER
        )
        enforcer.enable_auto_save(False)
        return enforcer

    async def reload(self) -> None:
        """Re-read every line; the new enforcer is built off the event loop and swapped in,
        so requests keep being answered by the old one meanwhile (~0.5 s at 100k lines).

        A change this process commits while the new one is being built is applied to the old
        enforcer only, so the build starts over until no change slipped in between.
        """
        async with self._lock:
            while True:
                applied = self._applied
                await self.adapter.fetch()
                enforcer = await asyncio.to_thread(self._new_enforcer)
                if applied == self._applied:
                    break
            self.enforcer = enforcer
            self._changed()

    def enforce(
        self, user_id: uuid.UUID | str, tenant_id: uuid.UUID | str, resource: str, action: str
    ) -> bool:
        key = (subject(user_id), str(tenant_id), resource, action)
        decision = self._decisions.get(key)
        if decision is None:
            decision = bool(self.enforcer.enforce(*key))
            if len(self._decisions) > 100_000:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision

    def roles_in(self, user_id: uuid.UUID | str, tenant_id: uuid.UUID | str) -> list[str]:
        key = (subject(user_id), str(tenant_id))
        roles = self._roles.get(key)
        if roles is None:
            roles = sorted(
                r.removeprefix("role:") for r in self.enforcer.get_roles_for_user_in_domain(*key)
            )
            if len(self._roles) > 100_000:
                self._roles.clear()
            self._roles[key] = roles
        return list(roles)

    def users_in(self, tenant_id: uuid.UUID | str) -> dict[str, list[str]]:
        """user id -> role keys, for one tenant."""
        result: dict[str, list[str]] = {}
        for line in self.enforcer.get_filtered_grouping_policy(2, str(tenant_id)):
            result.setdefault(line[0].removeprefix("user:"), []).append(
                line[1].removeprefix("role:")
            )
        return result

    # -- writes: row now (inside the caller's transaction), memory after commit ------------

    def _notify(self) -> None:
        from canal.platform.invalidation import broadcast

        broadcast("casbin")

    async def install_tenant_roles(self, tenant_id: uuid.UUID | str, tenant_kind: str) -> None:
        """Write the per-tenant permission lines of every role of this tenant's kind."""
        wanted = _role_lines(str(tenant_id), role_catalog(tenant_kind).values())
        existing = {
            (r["v0"], r["v1"], r["v2"], r["v3"])
            for r in await CasbinRule.select(
                CasbinRule.v0, CasbinRule.v1, CasbinRule.v2, CasbinRule.v3
            ).where((CasbinRule.ptype == "p") & (CasbinRule.v1 == str(tenant_id)))
        }
        missing = [line for line in wanted if line not in existing]
        stale = [line for line in existing if line not in set(wanted)]
        if missing:
            await CasbinRule.insert(
                *[CasbinRule(ptype="p", v0=a, v1=b, v2=c, v3=d) for a, b, c, d in missing]
            )
        for a, b, c, d in stale:
            await CasbinRule.delete().where(
                (CasbinRule.ptype == "p")
                & (CasbinRule.v0 == a)
                & (CasbinRule.v1 == b)
                & (CasbinRule.v2 == c)
                & (CasbinRule.v3 == d)
            )

        def apply() -> None:
            if missing:
                self.enforcer.add_policies([list(line) for line in missing])
            if stale:
                self.enforcer.remove_policies([list(line) for line in stale])
            self._changed()

        db.on_commit(apply)
        db.on_commit(self._notify)

    async def assign_role(
        self, user_id: uuid.UUID | str, role: str, tenant_id: uuid.UUID | str
    ) -> bool:
        line = (subject(user_id), role_subject(role), str(tenant_id))
        exists = await CasbinRule.exists().where(
            (CasbinRule.ptype == "g")
            & (CasbinRule.v0 == line[0])
            & (CasbinRule.v1 == line[1])
            & (CasbinRule.v2 == line[2])
        )
        if exists:
            return False
        await CasbinRule.insert(CasbinRule(ptype="g", v0=line[0], v1=line[1], v2=line[2]))

        def apply() -> None:
            self.enforcer.add_grouping_policy(*line)
            self._changed()

        db.on_commit(apply)
        db.on_commit(self._notify)
        return True

    async def revoke_role(
        self, user_id: uuid.UUID | str, role: str, tenant_id: uuid.UUID | str
    ) -> bool:
        line = (subject(user_id), role_subject(role), str(tenant_id))
        deleted = (
            await CasbinRule.delete()
            .where(
                (CasbinRule.ptype == "g")
                & (CasbinRule.v0 == line[0])
                & (CasbinRule.v1 == line[1])
                & (CasbinRule.v2 == line[2])
            )
            .returning(CasbinRule.id)
        )
        if not deleted:
            return False

        def apply() -> None:
            self.enforcer.remove_grouping_policy(*line)
            self._changed()

        db.on_commit(apply)
        db.on_commit(self._notify)
        return True

    async def revoke_all(self, user_id: uuid.UUID | str, tenant_id: uuid.UUID | str) -> None:
        sub = subject(user_id)
        await CasbinRule.delete().where(
            (CasbinRule.ptype == "g") & (CasbinRule.v0 == sub) & (CasbinRule.v2 == str(tenant_id))
        )

        def apply() -> None:
            self.enforcer.remove_filtered_grouping_policy(0, sub, "", str(tenant_id))
            self._changed()

        db.on_commit(apply)
        db.on_commit(self._notify)


def _role_lines(tenant_id: str, roles: Iterable[RoleDef]) -> list[tuple[str, str, str, str]]:
    return sorted(
        (role_subject(role.key), tenant_id, resource, action)
        for role in roles
        for resource, action in role.permissions
    )


_access: Access | None = None


def access() -> Access:
    global _access
    if _access is None:
        _access = Access()
    return _access


async def sync_all_tenant_roles() -> int:
    """Bring every tenant's role lines in line with the catalogue (after a module changes)."""
    from canal.tenants.tables import Tenant

    tenants = await Tenant.select(Tenant.id, Tenant.kind)
    async with db.transaction():
        for tenant in tenants:
            await access().install_tenant_roles(tenant["id"], tenant["kind"])
    return len(tenants)

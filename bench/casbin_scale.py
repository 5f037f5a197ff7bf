"""Does a permission check cost the same with 1,000 tenants as with 10?

Builds, in one process and without a database, the enforcer the portal uses
(``canal.platform.access.services.Access``: the project's model.conf, ``casbin.FastEnforcer``
indexed by (domain, action)) twice — 10 tenants, and 1,000 tenants with 100,000 policy lines
in all — plus a plain ``casbin.Enforcer`` (no index) over the 1,000-tenant lines for
comparison. The lines are the ones the project writes: ``p, role:<key>, <tenant>, <resource>,
<action>`` from the role catalogue (``role_catalog`` + ``_role_lines``) and
``g, user:<uuid>, role:<key>, <tenant>``. They are loaded through a small in-memory adapter
that is ``PiccoloAdapter`` itself with its rows given instead of fetched.

Modules that declare no permissions get a plausible set from the bench (records
read/update, settings manage; a ``<module>_operator`` role with the records ones). The ``p``
lines per tenant are whatever the role catalogue makes of that (~98 a tenant today: owner and
admin get every module's permissions, as ``role_catalog`` does); each tenant then gets
``ASSIGNMENTS_PER_TENANT`` role assignments (``g`` lines), so the workload grows with the
catalogue instead of running out of room (1,000 tenants: ~123,000 lines today).

Every check's answer is compared with the answer computed from the generated data, so the
bench fails loudly if the model is wrong. Exit status 1 if the goal is missed:
mean check latency with 1,000 tenants <= 2x the latency with 10.

Run: ``.venv/bin/python bench/casbin_scale.py`` (~40 s on a 2-core machine; ``--smoke``: 2 and
20 tenants, a few hundred checks, a second or two).
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from importlib import metadata
from unittest import mock

import benchkit
import casbin

from canal.platform.access import roles as roles_mod
from canal.platform.access.services import (
    CACHE_KEY_ORDER,
    MODEL_PATH,
    Access,
    PiccoloAdapter,
    _role_lines,
    role_subject,
    subject,
)
from canal.platform.modules import Permission, registry

SEED = 20240601
TENANTS_SMALL = benchkit.size(10, 2)
TENANTS_LARGE = benchkit.size(1_000, 20)
# Role assignments (g lines) per tenant: an owner, two admins, members, some with module roles.
ASSIGNMENTS_PER_TENANT = 25
CHECKS = benchkit.size(20_000, 400)
CHECKS_PLAIN_MAX = benchkit.size(200, 40)
# the unindexed enforcer stops early when its checks take this long
PLAIN_BUDGET_S = benchkit.size(25.0, 2.0)
GOAL_RATIO_MAX = 2.0
# Same kind mix in both sets (per ten tenants), so a tenant looks the same in both.
KIND_PATTERN = ("enterprise",) * 5 + ("park",) * 2 + ("community",) + ("government",) * 2

Check = tuple[str, str, str, str, bool]  # user id, tenant id, resource, action, expected


# -- the data --------------------------------------------------------------------------------


def bench_registry() -> dict:
    """The real module registry, with plausible permissions for modules that declare none."""
    modules = {}
    for key, spec in registry().items():
        if not spec.permissions:
            perms = [
                Permission(f"{key}.records", "read", "", ""),
                Permission(f"{key}.records", "update", "", ""),
                Permission(f"{key}.settings", "manage", "", ""),
            ]
            spec = dataclasses.replace(
                spec,
                permissions=perms,
                roles={f"{key}_operator": [(p.resource, p.action) for p in perms[:2]]},
                role_names={f"{key}_operator": (f"{key} 操作员", f"{key} operator")},
            )
        modules[key] = spec
    return modules


def catalogues() -> dict[str, dict[str, frozenset[tuple[str, str]]]]:
    """tenant kind -> role key -> permissions, from the project's own catalogue code."""
    fake = bench_registry()
    with mock.patch.object(roles_mod, "registry", lambda: fake):
        return {
            kind: {key: role.permissions for key, role in roles_mod.role_catalog(kind).items()}
            for kind in set(KIND_PATTERN)
        }


@dataclasses.dataclass
class Workload:
    tenants: list[str]
    rows: list[list[str]]  # ["p", ...] / ["g", ...], as PiccoloAdapter hands them to casbin
    p_lines: int
    g_lines: int
    # tenant -> user -> permissions held there (the expected answers)
    grants: dict[str, dict[str, set[tuple[str, str]]]]
    universe: dict[str, list[tuple[str, str]]]  # tenant -> every permission of its kind


def build_workload(
    n_tenants: int,
    rng: random.Random,
    cats: dict[str, dict[str, frozenset[tuple[str, str]]]],
) -> Workload:
    """Every tenant's role lines as the catalogue writes them (however many that is), plus
    ``ASSIGNMENTS_PER_TENANT`` role assignments in each."""
    tenants = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n_tenants)]
    kinds = [KIND_PATTERN[i % len(KIND_PATTERN)] for i in range(n_tenants)]
    p_rows: list[list[str]] = []
    for tenant, kind in zip(tenants, kinds, strict=True):
        roles = [roles_mod.RoleDef(key, key, key, perms) for key, perms in cats[kind].items()]
        p_rows += [["p", *line] for line in _role_lines(tenant, roles)]
    p_lines = len(p_rows)
    g_total = ASSIGNMENTS_PER_TENANT * n_tenants

    grants: dict[str, dict[str, set[tuple[str, str]]]] = {t: {} for t in tenants}
    g_rows: list[list[str]] = []
    everyone: list[str] = []

    def assign(user: str, role: str, tenant: str, kind: str) -> None:
        g_rows.append(["g", subject(user), role_subject(role), tenant])
        grants[tenant].setdefault(user, set()).update(cats[kind][role])

    for i, (tenant, kind) in enumerate(zip(tenants, kinds, strict=True)):
        quota = g_total // n_tenants + (1 if i < g_total % n_tenants else 0)
        module_roles = [r for r in cats[kind] if r.endswith("_operator")]
        start = len(g_rows)
        for role in ("owner", "admin", "admin"):
            user = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            everyone.append(user)
            assign(user, role, tenant, kind)
        while len(g_rows) - start < quota:
            # one member in twenty is somebody already in another organisation
            if everyone and rng.random() < 0.05:
                user = rng.choice(everyone)
                if user in grants[tenant]:
                    continue
            else:
                user = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                everyone.append(user)
            assign(user, "member", tenant, kind)
            if module_roles and len(g_rows) - start < quota and rng.random() < 0.3:
                assign(user, rng.choice(module_roles), tenant, kind)

    universe = {
        t: sorted(set().union(*cats[k].values())) for t, k in zip(tenants, kinds, strict=True)
    }
    rows = p_rows + g_rows
    rng.shuffle(rows)  # the database returns them in no particular order
    return Workload(tenants, rows, p_lines, len(g_rows), grants, universe)


def make_checks(w: Workload, n: int, rng: random.Random) -> list[Check]:
    """Half allowed; half denied: a permission the user lacks in their own tenant, or a
    user of another tenant asking for something there."""
    checks: list[Check] = []
    members = {t: sorted(users) for t, users in w.grants.items()}
    while len(checks) < n:
        tenant = rng.choice(w.tenants)
        draw = rng.random()
        if draw < 0.5:
            user = rng.choice(members[tenant])
            resource, action = rng.choice(sorted(w.grants[tenant][user]))
            checks.append((user, tenant, resource, action, True))
        elif draw < 0.8:
            user = rng.choice(members[tenant])
            lacking = [p for p in w.universe[tenant] if p not in w.grants[tenant][user]]
            if not lacking:
                continue
            resource, action = rng.choice(lacking)
            checks.append((user, tenant, resource, action, False))
        else:
            other = rng.choice(w.tenants)
            user = rng.choice(members[other])
            if user in w.grants[tenant]:
                continue
            resource, action = rng.choice(w.universe[tenant])
            checks.append((user, tenant, resource, action, False))
    return checks


# -- the enforcers ---------------------------------------------------------------------------


class MemoryAdapter(PiccoloAdapter):
    """The project's PiccoloAdapter with its rows given, instead of fetched with SQL."""

    def __init__(self, rows: list[list[str]]) -> None:
        super().__init__()
        self._rows = rows


def fast_access(w: Workload) -> tuple[Access, float]:
    """The project's Access (FastEnforcer, cache_key_order) fed from memory; load seconds."""
    access = Access()
    assert isinstance(access.enforcer, casbin.FastEnforcer)
    access.enforcer.set_adapter(MemoryAdapter(w.rows))  # what Access.reload() loads, minus SQL
    t0 = time.perf_counter()
    access.enforcer.load_policy()
    return access, time.perf_counter() - t0


def plain_enforcer(w: Workload) -> tuple[Callable[[str, str, str, str], bool], float]:
    enforcer = casbin.Enforcer(str(MODEL_PATH), MemoryAdapter(w.rows))
    enforcer.enable_auto_save(False)
    t0 = time.perf_counter()
    enforcer.load_policy()
    load_s = time.perf_counter() - t0

    def enforce(user: str, tenant: str, resource: str, action: str) -> bool:
        return bool(enforcer.enforce(subject(user), tenant, resource, action))

    return enforce, load_s


@dataclasses.dataclass
class Timing:
    n: int
    mean_us: float
    p50_us: float
    p99_us: float
    max_us: float


def run_checks(
    enforce: Callable[[str, str, str, str], bool],
    checks: list[Check],
    label: str,
    budget_s: float | None = None,
) -> Timing:
    times: list[float] = []
    wrong: list[Check] = []
    started = time.perf_counter()
    for check in checks:
        user, tenant, resource, action, expected = check
        t0 = time.perf_counter_ns()
        got = enforce(user, tenant, resource, action)
        times.append((time.perf_counter_ns() - t0) / 1000)
        if got is not expected:
            wrong.append(check)
        if budget_s is not None and time.perf_counter() - started > budget_s and len(times) >= 20:
            break
    checked = checks[: len(times)]
    allowed = sum(c[4] for c in checked)
    assert allowed and allowed < len(checked), f"{label}: need both allowed and denied checks"
    assert not wrong, (
        f"{label}: {len(wrong)} of {len(checked)} checks answered wrongly, e.g. "
        f"{wrong[:3]} (expected value last)"
    )
    times.sort()
    return Timing(
        n=len(times),
        mean_us=statistics.fmean(times),
        p50_us=times[len(times) // 2],
        p99_us=times[min(len(times) - 1, int(len(times) * 0.99))],
        max_us=times[-1],
    )


def first_touch(access: Access, w: Workload) -> float:
    """One check in every tenant: casbin builds each domain's role manager on first use.
    Returns the mean cost of that first check, in microseconds."""
    t0 = time.perf_counter()
    for tenant in w.tenants:
        user = next(iter(w.grants[tenant]))
        access.enforce(user, tenant, "tenant", "read")
    return (time.perf_counter() - t0) / len(w.tenants) * 1e6


def assign_revoke_us(access: Access, w: Workload) -> tuple[float, float]:
    """What Access.assign_role / revoke_role do to the enforcer after commit, in microseconds."""
    tenant = w.tenants[0]
    user = subject(uuid.uuid4())
    t0 = time.perf_counter()
    assert access.enforcer.add_grouping_policy(user, role_subject("member"), tenant)
    t1 = time.perf_counter()
    assert access.enforcer.remove_grouping_policy(user, role_subject("member"), tenant)
    t2 = time.perf_counter()
    return (t1 - t0) * 1e6, (t2 - t1) * 1e6


# -- main ------------------------------------------------------------------------------------


def fmt(t: Timing) -> str:
    return (
        f"n={t.n:>6}  mean={t.mean_us:9.1f} us  p50={t.p50_us:9.1f} us  "
        f"p99={t.p99_us:9.1f} us  max={t.max_us:10.1f} us"
    )


def main() -> int:
    rng = random.Random(SEED)
    cats = catalogues()
    # same lines per tenant in both sets: only the number of tenants differs
    small = build_workload(TENANTS_SMALL, rng, cats)
    large = build_workload(TENANTS_LARGE, rng, cats)
    assert large.g_lines == ASSIGNMENTS_PER_TENANT * TENANTS_LARGE

    print("casbin_scale: permission-check latency vs number of tenants")
    print(
        f"  model: {MODEL_PATH.name}, FastEnforcer cache_key_order={CACHE_KEY_ORDER}, "
        f"casbin {metadata.version('casbin')}"
    )
    for name, w in (("small", small), ("large", large)):
        users = len({u for g in w.grants.values() for u in g})
        print(
            f"  {name}: {len(w.tenants):>5} tenants, {w.p_lines + w.g_lines:>7} lines "
            f"({w.p_lines} p = {w.p_lines / len(w.tenants):.1f}/tenant, {w.g_lines} g), "
            f"{users} users"
        )

    checks_small = make_checks(small, CHECKS, rng)
    checks_large = make_checks(large, CHECKS, rng)
    print(
        f"  checks: {CHECKS} per indexed enforcer (50% allowed, 30% denied in own tenant, "
        f"20% denied cross-tenant), random users/tenants; plain Enforcer: up to "
        f"{CHECKS_PLAIN_MAX} or {PLAIN_BUDGET_S:.0f} s"
    )

    acc_small, load_small = fast_access(small)
    acc_large, load_large = fast_access(large)
    plain, load_plain = plain_enforcer(large)
    print(
        f"  load_policy: small {load_small * 1000:.1f} ms, large {load_large * 1000:.1f} ms, "
        f"large plain {load_plain * 1000:.1f} ms"
    )

    cold_small = first_touch(acc_small, small)
    cold_large = first_touch(acc_large, large)
    print(
        f"  first check per tenant (builds its role manager): small {cold_small:.1f} us, "
        f"large {cold_large:.1f} us"
    )

    t_small = run_checks(acc_small.enforce, checks_small, "small")
    t_large = run_checks(acc_large.enforce, checks_large, "large")
    t_plain = run_checks(
        plain, checks_large[:CHECKS_PLAIN_MAX], "large plain", budget_s=PLAIN_BUDGET_S
    )
    print(f"  FastEnforcer   small: {fmt(t_small)}")
    print(f"  FastEnforcer   large: {fmt(t_large)}")
    print(f"  plain Enforcer large: {fmt(t_plain)}")
    print("  every answer matched the expected one")

    add_s, rm_s = assign_revoke_us(acc_small, small)
    add_l, rm_l = assign_revoke_us(acc_large, large)
    print(
        f"  assign/revoke one role in memory: small {add_s:.0f}/{rm_s:.0f} us, "
        f"large {add_l:.0f}/{rm_l:.0f} us"
    )

    ratio = t_large.mean_us / t_small.mean_us
    goal_met = ratio <= GOAL_RATIO_MAX
    print(
        f"  ratio large/small (mean): {ratio:.2f} (goal <= {GOAL_RATIO_MAX}) -> "
        f"{'met' if goal_met else 'MISSED'}; p99 ratio {t_large.p99_us / t_small.p99_us:.2f}"
    )
    return benchkit.finish(
        {
            "bench": "casbin_scale",
            "tenants_small": len(small.tenants),
            "tenants_large": len(large.tenants),
            "policy_lines_small": small.p_lines + small.g_lines,
            "policy_lines_large": large.p_lines + large.g_lines,
            "p_lines_large": large.p_lines,
            "g_lines_large": large.g_lines,
            "checks": CHECKS,
            "checks_plain": t_plain.n,
            "load_ms_small": round(load_small * 1000, 1),
            "load_ms_large": round(load_large * 1000, 1),
            "load_ms_large_plain": round(load_plain * 1000, 1),
            "check_us_small": round(t_small.mean_us, 1),
            "check_us_small_p99": round(t_small.p99_us, 1),
            "check_us_large": round(t_large.mean_us, 1),
            "check_us_large_p99": round(t_large.p99_us, 1),
            "check_us_large_plain": round(t_plain.mean_us, 1),
            "check_us_large_plain_p99": round(t_plain.p99_us, 1),
            "first_check_us_small": round(cold_small, 1),
            "first_check_us_large": round(cold_large, 1),
            "ratio_large_vs_small": round(ratio, 2),
            "goal_ratio_max": GOAL_RATIO_MAX,
            "goal_met": goal_met,
        }
    )


if __name__ == "__main__":
    sys.exit(main())

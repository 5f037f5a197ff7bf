"""How fast does policy matching (惠企政策) put every enterprise in a group for every policy?

Workload, in one process, no database: 100,000 synthetic enterprise portraits (industry codes
from a GB/T 4754-like set, 12 区划 codes, establishment dates 1995–2025, capital, employees,
revenue, tax, R&D spend, tax credit grade, patents, 0–3 certifications with validity windows;
each fact missing for ~3 % of enterprises) × 1,000 synthetic policies of 5–10 top-level
criteria each (certified on the window-open day, established ≥ N years, R&D/revenue ratio,
grade in A/B, industry prefix, region, numeric ranges, ``any`` of two, ``not``).

Measured:

* ``encode_s``: ``PortraitTable`` from the 100,000 portrait dicts (once; reused afterwards);
* ``matrix_s``: ``match_matrix`` — the group of all 100,000,000 (enterprise, policy) pairs and,
  for nearly eligible, the missing criterion (goal ≤ 10 s);
* ``reference_pairs_per_s``: ``rules.evaluate`` (the explanatory reference evaluator) on a
  sample of pairs in the same run, extrapolated to the full matrix; ``speedup`` = reference
  time for the full matrix / ``matrix_s`` (goal ≥ 50×). The sample's groups and missing
  criteria are checked against the matrix — a disagreement fails the bench;
* ``one_enterprise_ms``: one changed enterprise against all 1,000 policies (goal ≤ 20 ms);
* ``one_policy_ms``: one new policy against all 100,000 enterprises (goal ≤ 1 s);
* ``peak_rss_mb``: the process's peak resident memory (``resource.getrusage``), which includes
  the 100,000 portrait dicts themselves; ``matrix_mb`` is the result matrix (int8).

Then the results are stored (skipped with ``--no-store``) through the application's own store,
``canal.park.policy.store.store_matrix`` inside ``lock_for_full_run`` — the path of the nightly
``services.rematch_all`` — into a scratch database ``canal_bench_policy`` (dropped and migrated
first; 100,000 enterprise tenants made outside the timing), as the application role under
row-level security: one ``policy_match_sets`` row per enterprise with one byte per policy,
binary COPY into a temporary table, ``INSERT … ON CONFLICT`` (docs/decisions/0015). Twice:
``store_first_s`` into the empty table (every eligible pair is announced — the synthetic
enterprises have no members, so no message is written) and ``store_again_s`` over the stored
state (the nightly case: old announcements read back and kept). ``store_s`` is the slower of the
two, printed with its phases. Then, on the full table, ``store_one_policy_s`` (one policy's codes
for all enterprises, set-based SQL) and ``store_one_enterprise_ms`` (one enterprise's row).
The stored bytes of every row are checked against the matrix afterwards.
``end_to_end_s`` = ``encode_s`` + ``matrix_s`` + ``store_s`` (goal ≤ 30 s). Reading 100,000
portraits out of ``policy_facts`` (``services._all_portraits``) is not part of it.
``load_avg`` is the 1-minute load average when the run ends (the machine is shared).

Run: ``.venv/bin/python bench/policy_matching.py`` (~2 min on a 2-core machine; starts the
embedded PostgreSQL like ``canal demo``). ``--smoke``: 2,000 enterprises × 50 policies, its
own scratch database.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import resource
import statistics
import sys
import time
from typing import Any

import benchkit
import numpy as np

from canal.park.policy.facts import KNOWN_CERTIFICATIONS, Certification
from canal.park.policy.matcher import (
    CompiledPolicies,
    PortraitTable,
    code_to_group,
    match_matrix,
    match_policy,
)
from canal.park.policy.rules import Rule, evaluate, parse_rule

N_ENTERPRISES = benchkit.size(100_000, 2_000)
N_POLICIES = benchkit.size(1_000, 50)
SAMPLE_ENTERPRISES = benchkit.size(400, 50)
SAMPLE_POLICIES = benchkit.size(100, 20)
AS_OF = dt.date(2025, 6, 1)
REFS = {"window_open": dt.date(2025, 3, 1)}

GOAL_MATRIX_S = 10.0
GOAL_END_TO_END_S = 30.0
DATABASE = benchkit.scratch("canal_bench_policy")
POLICIES_PER_BATCH = 50
GOAL_SPEEDUP = 50.0
GOAL_ONE_ENTERPRISE_MS = 20.0
GOAL_ONE_POLICY_MS = 1000.0

SECTIONS = ["C", "I", "M", "F", "G", "E", "A", "L"]
INDUSTRIES = [f"{s}{n:04d}" for s in SECTIONS for n in range(1300, 4000, 17)]
REGIONS = [f"3715{n:02d}" for n in range(1, 13)]
GRADES = ["A", "B", "M", "C", "D"]


def day(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=rng.randrange((end - start).days + 1))


def make_portrait(rng: random.Random) -> dict[str, Any]:
    revenue = round(rng.lognormvariate(7, 1.5), 1)
    p: dict[str, Any] = {
        "industry_code": rng.choice(INDUSTRIES),
        "region_code": rng.choice(REGIONS),
        "established_on": day(rng, dt.date(1995, 1, 1), dt.date(2025, 5, 31)),
        "registered_capital_wan": round(rng.lognormvariate(6, 1.2), 1),
        "employees": int(rng.lognormvariate(3.5, 1.2)),
        "revenue_wan": revenue if rng.random() > 0.02 else 0.0,
        "tax_paid_wan": round(revenue * rng.uniform(0, 0.1), 1),
        "rd_spend_wan": round(revenue * rng.uniform(0, 0.08), 1),
        "tax_credit_grade": rng.choices(GRADES, weights=[35, 35, 15, 10, 5])[0],
        "patents": int(rng.expovariate(0.2)),
        "certifications": [
            Certification(name, start, start + dt.timedelta(days=3 * 365))
            for name in rng.sample(KNOWN_CERTIFICATIONS, rng.choice([0, 0, 1, 1, 2, 3]))
            for start in [day(rng, dt.date(2020, 1, 1), dt.date(2025, 5, 1))]
        ],
    }
    for fact in list(p):
        if rng.random() < 0.03:
            del p[fact]
    return p


def make_policy(rng: random.Random) -> dict[str, Any]:
    pool = [
        lambda: {"op": "certified", "name": rng.choice(KNOWN_CERTIFICATIONS), "on": "window_open"},
        lambda: {
            "fact": "established_on",
            "op": "years_before",
            "years": rng.randint(1, 5),
            "date": "window_open",
        },
        lambda: {
            "op": "ratio_min",
            "numerator": "rd_spend_wan",
            "denominator": "revenue_wan",
            "min": rng.choice([0.02, 0.03, 0.04, 0.05]),
        },
        lambda: {"fact": "tax_credit_grade", "op": "in", "values": ["A", "B"]},
        lambda: {
            "fact": "industry_code",
            "op": "prefix_in",
            "prefixes": rng.sample(SECTIONS, rng.randint(1, 3)),
        },
        lambda: {"fact": "region_code", "op": "in", "values": rng.sample(REGIONS, 6)},
        lambda: {"fact": "employees", "op": "range", "min": rng.choice([10, 20, 50, 100])},
        lambda: {
            "fact": "revenue_wan",
            "op": "range",
            "min": rng.choice([100, 500, 2000]),
            "max": rng.choice([20000, 50000, 200000]),
        },
        lambda: {"fact": "tax_paid_wan", "op": "range", "min": rng.choice([10, 50, 100])},
        lambda: {
            "fact": "established_on",
            "op": "range",
            "min": "2000-01-01",
            "max": rng.choice(["2020-12-31", "2023-12-31"]),
        },
        lambda: {
            "any": [
                {"op": "certified", "name": "专精特新", "on": "window_open"},
                {"fact": "patents", "op": "range", "min": rng.choice([3, 5, 10])},
            ]
        },
        lambda: {"not": {"fact": "tax_credit_grade", "op": "in", "values": ["C", "D"]}},
        lambda: {"fact": "registered_capital_wan", "op": "range", "max": rng.choice([500, 2000])},
    ]
    return {"all": [f() for f in rng.sample(pool, rng.randint(5, 10))]}


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


# --- storing ----------------------------------------------------------------------------------


async def store_results(
    matrix: np.ndarray, table: PortraitTable, rules: list[Rule]
) -> dict[str, Any]:
    """Store the matrix through the application's own store (``canal.park.policy.store``) into
    a scratch database, as the application role, twice: into an empty table and again over
    the stored state (the nightly re-match). Then the incremental paths on the full table."""
    import uuid

    import asyncpg
    import msgspec

    from canal.park.policy import store
    from canal.platform import db
    from canal.platform.runtime import prepare
    from canal.platform.settings import load_settings

    settings = msgspec.structs.replace(load_settings(), database_name=DATABASE, log_json=False)
    runtime = prepare(settings)
    await benchkit.fresh_database(runtime)
    await db.close_pool()
    tenants = [uuid.uuid4() for _ in range(matrix.shape[1])]
    owner = await asyncpg.connect(runtime.owner_dsn)
    try:
        await owner.copy_records_to_table(
            "tenants",
            records=[(t, f"b{i}", f"企业{i}", "enterprise") for i, t in enumerate(tenants)],
            columns=["id", "slug", "name", "kind"],
        )
    finally:
        await owner.close()
    policies = [
        {"id": uuid.uuid4(), "version_number": 1, "title": f"政策{j}"}
        for j in range(matrix.shape[0])
    ]
    out: dict[str, Any] = {}
    await db.start_pool(runtime.app_dsn, min_size=1, max_size=2)
    try:
        for name in ("store_first_s", "store_again_s"):
            phases: dict[str, float] = {}
            start = time.perf_counter()
            async with store.lock_for_full_run():
                await store.store_matrix(tenants, policies, matrix, AS_OF, timings=phases)
            out[name] = time.perf_counter() - start
            detail = ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
            print(f"  store_matrix ({name}): {out[name]:.2f} s ({detail}, commit after)")

        # One policy against every enterprise, stored set-based on the full table.
        rule_j = 0
        codes = match_policy(table, rules[rule_j], AS_OF, REFS)
        start = time.perf_counter()
        await store.store_policy(policies[rule_j], tenants, codes, AS_OF)
        out["store_one_policy_s"] = time.perf_counter() - start
        # One enterprise against every policy.
        i = 12345 % len(tenants)
        start = time.perf_counter()
        await store.store_enterprise(tenants[i], policies, [int(c) for c in matrix[:, i]], AS_OF)
        out["store_one_enterprise_ms"] = (time.perf_counter() - start) * 1000
        print(
            f"  one policy stored for all enterprises {out['store_one_policy_s']:.2f} s, "
            f"one enterprise for all policies {out['store_one_enterprise_ms']:.1f} ms"
        )
    finally:
        await db.close_pool()

    # Check what is stored against the matrix, as the owner (not timed): every row's bytes
    # against the matrix column of its enterprise, all announced (no one was told before).
    owner = await asyncpg.connect(runtime.owner_dsn)
    try:
        await owner.execute("SELECT set_config('app.scope', 'platform', false)")
        rows = await owner.fetch("SELECT tenant_id, codes FROM policy_match_sets")
        columns = await owner.fetch("SELECT policy_id, position FROM policy_match_columns")
    finally:
        await owner.close()
    index = {t: i for i, t in enumerate(tenants)}
    position = {c["policy_id"]: c["position"] for c in columns}
    order = [position[p["id"]] for p in policies]
    expected_bytes = store.to_bytes(matrix.T)
    expected_bytes[expected_bytes == 1] |= store.ANNOUNCED
    wrong = 0
    for row in rows:
        got = np.frombuffer(row["codes"], dtype=np.uint8)[order]
        wrong += not np.array_equal(got, expected_bytes[index[row["tenant_id"]]])
    expected = int((matrix != -2).sum())
    if len(rows) != len(tenants) or wrong:
        raise SystemExit(f"{wrong} of {len(rows)} stored rows differ from the matrix")
    out["stored_pairs"] = expected
    return out


def main() -> int:
    rng = random.Random(20251124)
    gen_s, portraits = timed(lambda: [make_portrait(rng) for _ in range(N_ENTERPRISES)])
    rules: list[Rule] = [parse_rule(make_policy(rng)) for _ in range(N_POLICIES)]
    n_criteria = [len(r.items) for r in rules]
    print(
        f"workload: {N_ENTERPRISES:,} enterprises x {N_POLICIES:,} policies "
        f"({min(n_criteria)}-{max(n_criteria)} criteria, mean {statistics.mean(n_criteria):.1f}); "
        f"generated in {gen_s:.1f} s"
    )

    encode_s, table = timed(lambda: PortraitTable(portraits))
    print(f"encode portraits column-wise: {encode_s:.2f} s")
    matrix_s, matrix = timed(lambda: match_matrix(table, rules, AS_OF, REFS))
    counts = {
        "eligible": int((matrix == -1).sum()),
        "nearly": int((matrix >= 0).sum()),
        "not_eligible": int((matrix == -2).sum()),
    }
    print(f"fast matrix ({matrix.size:,} pairs): {matrix_s:.2f} s  groups: {counts}")

    # Reference evaluator on a sample of pairs; every answer must equal the matrix's.
    ent_sample = rng.sample(range(N_ENTERPRISES), SAMPLE_ENTERPRISES)
    pol_sample = rng.sample(range(N_POLICIES), SAMPLE_POLICIES)
    start = time.perf_counter()
    answers = [
        (j, i, evaluate(rules[j], portraits[i], AS_OF, REFS))
        for j in pol_sample
        for i in ent_sample
    ]
    ref_s = time.perf_counter() - start
    pairs = len(answers)
    mismatches = sum(
        1
        for j, i, res in answers
        if code_to_group(int(matrix[j, i])) != (res.group, res.missing_criterion)
    )
    ref_full_s = ref_s / pairs * matrix.size
    speedup = ref_full_s / matrix_s
    print(
        f"reference evaluator: {pairs:,} pairs in {ref_s:.2f} s ({pairs / ref_s:,.0f} pairs/s) "
        f"-> full matrix ~{ref_full_s:,.0f} s; fast is {speedup:,.0f}x; mismatches: {mismatches}"
    )

    # One changed enterprise against all policies (policies compiled once, outside the timing).
    compile_s, compiled = timed(lambda: CompiledPolicies(rules, AS_OF, REFS))
    print(f"compile {N_POLICIES:,} policies for single enterprises: {compile_s * 1000:.0f} ms")
    one_ent = []
    for _ in range(20):
        i = rng.randrange(N_ENTERPRISES)
        changed = dict(portraits[i], employees=rng.randint(0, 500))
        t, codes = timed(lambda changed=changed: compiled.enterprise(changed))
        one_ent.append(t * 1000)
        for j in rng.sample(range(N_POLICIES), 20):
            res = evaluate(rules[j], changed, AS_OF, REFS)
            if code_to_group(int(codes[j])) != (res.group, res.missing_criterion):
                mismatches += 1
    one_ent_ms = statistics.median(one_ent)
    print(f"one changed enterprise x {N_POLICIES:,} policies: median {one_ent_ms:.1f} ms")

    # One new policy against all enterprises.
    one_pol = []
    for _ in range(10):
        rule = parse_rule(make_policy(rng))
        t, codes = timed(lambda rule=rule: match_policy(table, rule, AS_OF, REFS))
        one_pol.append(t * 1000)
        for i in rng.sample(range(N_ENTERPRISES), 50):
            res = evaluate(rule, portraits[i], AS_OF, REFS)
            if code_to_group(int(codes[i])) != (res.group, res.missing_criterion):
                mismatches += 1
    one_pol_ms = statistics.median(one_pol)
    print(f"one new policy x {N_ENTERPRISES:,} enterprises: median {one_pol_ms:.1f} ms")

    store_s = None
    stored: dict[str, Any] = {}
    if "--no-store" not in sys.argv:
        import asyncio

        stored = asyncio.run(store_results(matrix, table, rules))
        store_s = max(stored["store_first_s"], stored["store_again_s"])
        print(
            f"stored {stored['stored_pairs']:,} eligible/nearly pairs: {store_s:.2f} s (slower run)"
        )
    end_to_end_s = encode_s + matrix_s + (store_s or 0.0)
    print(f"end to end (encode + matrix + store): {end_to_end_s:.2f} s")
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    matrix_mb = matrix.nbytes / 2**20
    print(f"peak RSS {peak_rss_mb:,.0f} MB (result matrix {matrix_mb:,.0f} MB, {matrix.dtype})")

    goal_met = (
        mismatches == 0
        and matrix_s <= GOAL_MATRIX_S
        and speedup >= GOAL_SPEEDUP
        and one_ent_ms <= GOAL_ONE_ENTERPRISE_MS
        and one_pol_ms <= GOAL_ONE_POLICY_MS
        and (store_s is None or end_to_end_s <= GOAL_END_TO_END_S)
    )
    return benchkit.finish(
        {
            "bench": "policy_matching",
            "enterprises": N_ENTERPRISES,
            "policies": N_POLICIES,
            "criteria_mean": round(statistics.mean(n_criteria), 2),
            "encode_s": round(encode_s, 2),
            "matrix_s": round(matrix_s, 2),
            "reference_pairs_per_s": round(pairs / ref_s),
            "reference_full_matrix_s": round(ref_full_s),
            "speedup": round(speedup, 1),
            "compile_ms": round(compile_s * 1000, 1),
            "one_enterprise_ms": round(one_ent_ms, 2),
            "one_policy_ms": round(one_pol_ms, 2),
            "store_s": None if store_s is None else round(store_s, 2),
            **{k: round(v, 2) for k, v in stored.items() if k != "stored_pairs"},
            "stored_pairs": stored.get("stored_pairs", 0),
            "end_to_end_s": round(end_to_end_s, 2),
            "goal_end_to_end_s": GOAL_END_TO_END_S,
            "peak_rss_mb": round(peak_rss_mb),
            "matrix_mb": round(matrix_mb),
            "mismatches": mismatches,
            "groups": counts,
            "goal_matrix_s": GOAL_MATRIX_S,
            "goal_speedup": GOAL_SPEEDUP,
            "goal_one_enterprise_ms": GOAL_ONE_ENTERPRISE_MS,
            "goal_one_policy_ms": GOAL_ONE_POLICY_MS,
            "load_avg": round(os.getloadavg()[0], 1),
            "goal_met": goal_met,
        },
        correct=mismatches == 0,
    )


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())

"""Property tests: the fast matcher agrees exactly with the reference evaluator."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canal.park.policy.facts import Certification
from canal.park.policy.matcher import (
    CompiledPolicies,
    PortraitTable,
    code_to_group,
    match_enterprise,
    match_matrix,
    match_policy,
)
from canal.park.policy.rules import evaluate, parse_rule, rule_to_json

AS_OF = dt.date(2025, 3, 1)
REFS = {"window_open": dt.date(2024, 2, 29)}

# Small domains so that equalities and boundaries are hit often.
DAYS = st.dates(dt.date(2019, 1, 1), dt.date(2026, 12, 31))
# The reference days (as_of, window_open, a literal date), their neighbours, and the anniversaries
# that years_before compares with.
EDGE_DAYS = st.sampled_from(
    [
        dt.date(2025, 3, 1),
        dt.date(2025, 3, 2),
        dt.date(2025, 2, 28),
        dt.date(2024, 2, 29),
        dt.date(2024, 3, 1),
        dt.date(2024, 2, 28),
        dt.date(2024, 12, 31),
        dt.date(2025, 1, 1),
        dt.date(2023, 2, 28),
        dt.date(2023, 3, 1),
        dt.date(2022, 3, 1),
    ]
)
DAY = st.one_of(EDGE_DAYS, DAYS)
NUM = st.one_of(st.integers(-2, 60), st.sampled_from([0.0, 0.5, 2.5, 3.0, 100.0, 1e-9, 49.99]))
INDUSTRY = st.sampled_from(["C3451", "C3452", "C34", "C3", "C", "I6510", "M7320", ""])
REGION = st.sampled_from(["371502", "371503", "3715"])
GRADE = st.sampled_from(["A", "B", "M", "C", "D"])
CERT = st.sampled_from(["高新技术企业", "专精特新", "科技型中小企业"])
REF = st.sampled_from(["as_of", "window_open", "2024-12-31"])

TEXT_FACTS = {"industry_code": INDUSTRY, "region_code": REGION, "tax_credit_grade": GRADE}
NUM_FACTS = ["registered_capital_wan", "revenue_wan", "tax_paid_wan", "rd_spend_wan"]
INT_FACTS = ["employees", "patents"]


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


certification = st.builds(
    lambda name, a, b: Certification(name, min(a, b), max(a, b)), CERT, DAY, EDGE_DAYS
)

portrait = st.fixed_dictionaries(
    {},
    optional={
        "industry_code": maybe(INDUSTRY),
        "region_code": REGION,
        "tax_credit_grade": GRADE,
        "established_on": maybe(DAY),
        "registered_capital_wan": maybe(NUM),
        "revenue_wan": NUM,
        "tax_paid_wan": NUM,
        "rd_spend_wan": NUM,
        "employees": st.integers(0, 60),
        "patents": maybe(st.integers(0, 12)),
        "certifications": st.lists(certification, max_size=3),
    },
)


def iso(day: dt.date) -> str:
    return day.isoformat()


def text_predicate(draw: st.DrawFn) -> dict[str, Any]:
    fact = draw(st.sampled_from(sorted(TEXT_FACTS)))
    values = TEXT_FACTS[fact]
    op = draw(st.sampled_from(["eq", "in", "prefix_in"]))
    if op == "eq":
        return {"fact": fact, "op": "eq", "value": draw(values)}
    if op == "in":
        return {"fact": fact, "op": "in", "values": draw(st.lists(values, min_size=1, max_size=3))}
    prefixes = st.sampled_from(["C", "C34", "C345", "I", "3715", "37150", "A", "Z"])
    return {
        "fact": fact,
        "op": "prefix_in",
        "prefixes": draw(st.lists(prefixes, min_size=1, max_size=3)),
    }


@st.composite
def predicate(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["text", "num", "date", "years", "cert", "ratio"]))
    if kind == "text":
        return text_predicate(draw)
    if kind == "num":
        fact = draw(st.sampled_from(NUM_FACTS + INT_FACTS))
        op = draw(st.sampled_from(["range", "eq", "in"]))
        if op == "eq":
            return {"fact": fact, "op": "eq", "value": draw(NUM)}
        if op == "in":
            return {"fact": fact, "op": "in", "values": draw(st.lists(NUM, min_size=1, max_size=3))}
        lo, hi = draw(maybe(NUM)), draw(maybe(NUM))
        if lo is None and hi is None:
            lo = draw(NUM)
        if lo is not None and hi is not None and lo > hi:
            lo, hi = hi, lo
        out: dict[str, Any] = {"fact": fact, "op": "range"}
        if lo is not None:
            out["min"] = lo
        if hi is not None:
            out["max"] = hi
        return out
    if kind == "date":
        op = draw(st.sampled_from(["range", "eq", "in"]))
        if op == "eq":
            return {"fact": "established_on", "op": "eq", "value": iso(draw(DAY))}
        if op == "in":
            days = draw(st.lists(DAY, min_size=1, max_size=3))
            return {"fact": "established_on", "op": "in", "values": [iso(d) for d in days]}
        a, b = sorted([draw(DAY), draw(DAY)])
        return {"fact": "established_on", "op": "range", "min": iso(a), "max": iso(b)}
    if kind == "years":
        return {
            "fact": "established_on",
            "op": "years_before",
            "years": draw(st.integers(0, 6)),
            "date": draw(REF),
        }
    if kind == "cert":
        return {
            "op": "certified",
            "name": draw(st.sampled_from(["高新技术企业", "专精特新", "规上企业"])),
            "on": draw(REF),
        }
    return {
        "op": "ratio_min",
        "numerator": draw(st.sampled_from(NUM_FACTS + INT_FACTS)),
        "denominator": draw(st.sampled_from(NUM_FACTS + INT_FACTS)),
        "min": draw(st.sampled_from([0, 0.03, 0.5, 1, 1.5, -1])),
    }


rule_data = st.recursive(
    predicate(),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=8,
)
policy_data = st.builds(lambda xs: {"all": xs}, st.lists(rule_data, min_size=1, max_size=6))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policies=st.lists(policy_data, min_size=1, max_size=4),
    portraits=st.lists(portrait, min_size=1, max_size=12),
)
def test_fast_matcher_equals_reference(policies: list[Any], portraits: list[Any]) -> None:
    rules = [parse_rule(p) for p in policies]
    table = PortraitTable(portraits)
    matrix = match_matrix(table, rules, AS_OF, REFS)
    for j, rule in enumerate(rules):
        single = match_policy(table, rule, AS_OF, REFS)
        assert (single == matrix[j]).all()
        for i, p in enumerate(portraits):
            ref = evaluate(rule, p, AS_OF, REFS)
            assert code_to_group(int(matrix[j, i])) == (ref.group, ref.missing_criterion), (
                rule_to_json(rule),
                p,
            )
    compiled = CompiledPolicies(rules, AS_OF, REFS)
    for i, p in enumerate(portraits):
        assert (compiled.enterprise(p) == matrix[:, i]).all()
        assert (match_enterprise(p, rules, AS_OF, REFS) == matrix[:, i]).all()
        assert (match_matrix(PortraitTable([p]), rules, AS_OF, REFS)[:, 0] == matrix[:, i]).all()


@settings(max_examples=200, deadline=None)
@given(data=rule_data)
def test_round_trip(data: Any) -> None:
    rule = parse_rule(data)
    assert parse_rule(rule_to_json(rule)) == rule
    assert rule_to_json(rule) == data

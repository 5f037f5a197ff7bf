"""Reference evaluator and rule parsing: hand-made enterprises and policies (pure, no database)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from canal.park.policy.facts import Certification, validate_portrait
from canal.park.policy.matcher import PortraitTable, code_to_group, match_matrix
from canal.park.policy.rules import (
    Group,
    MissingReference,
    RuleError,
    evaluate,
    parse_rule,
    rule_to_json,
)

AS_OF = dt.date(2025, 3, 1)
REFS = {"window_open": dt.date(2025, 3, 1)}

HIGH_TECH = {
    "all": [
        {"op": "certified", "name": "高新技术企业", "on": "window_open"},
        {"fact": "established_on", "op": "years_before", "years": 1, "date": "window_open"},
        {"op": "ratio_min", "numerator": "rd_spend_wan", "denominator": "revenue_wan", "min": 0.03},
        {"fact": "tax_credit_grade", "op": "in", "values": ["A", "B"]},
    ]
}
MANUFACTURING = {
    "all": [
        {"fact": "industry_code", "op": "prefix_in", "prefixes": ["C34", "C35"]},
        {"fact": "employees", "op": "range", "min": 50},
        {"fact": "region_code", "op": "eq", "value": "371502"},
        {
            "any": [
                {"op": "certified", "name": "专精特新", "on": "as_of"},
                {"fact": "patents", "op": "range", "min": 10},
            ]
        },
        {"not": {"fact": "tax_credit_grade", "op": "in", "values": ["C", "D"]}},
    ]
}
STARTUP = {
    "all": [
        {"fact": "established_on", "op": "range", "min": "2022-03-01", "max": "2025-03-01"},
        {"fact": "registered_capital_wan", "op": "range", "max": 500},
    ]
}


def cert(name: str, start: str, end: str) -> Certification:
    return Certification(name, dt.date.fromisoformat(start), dt.date.fromisoformat(end))


GOOD_TECH: dict[str, Any] = {
    "certifications": [cert("高新技术企业", "2022-12-01", "2025-11-30")],
    "established_on": dt.date(2015, 6, 1),
    "rd_spend_wan": 120,
    "revenue_wan": 3000,
    "tax_credit_grade": "A",
}


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(base)
    for k, v in changes.items():
        if v is ...:
            out.pop(k, None)
        else:
            out[k] = v
    return out


# (policy, portrait, expected group, expected unmet criteria indices)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], Group, tuple[int, ...]]] = [
    ("tech all met", HIGH_TECH, GOOD_TECH, Group.ELIGIBLE, ()),
    (
        "cert expires on the window-open day: still valid",
        HIGH_TECH,
        with_(GOOD_TECH, certifications=[cert("高新技术企业", "2022-03-02", "2025-03-01")]),
        Group.ELIGIBLE,
        (),
    ),
    (
        "cert expired the day before",
        HIGH_TECH,
        with_(GOOD_TECH, certifications=[cert("高新技术企业", "2022-03-01", "2025-02-28")]),
        Group.NEARLY,
        (0,),
    ),
    (
        "cert starts the day after",
        HIGH_TECH,
        with_(GOOD_TECH, certifications=[cert("高新技术企业", "2025-03-02", "2028-03-01")]),
        Group.NEARLY,
        (0,),
    ),
    (
        "renewed cert: second interval valid",
        HIGH_TECH,
        with_(
            GOOD_TECH,
            certifications=[
                cert("高新技术企业", "2019-01-01", "2021-12-31"),
                cert("专精特新", "2020-01-01", "2030-01-01"),
                cert("高新技术企业", "2024-01-01", "2026-12-31"),
            ],
        ),
        Group.ELIGIBLE,
        (),
    ),
    (
        "established exactly one year before",
        HIGH_TECH,
        with_(GOOD_TECH, established_on=dt.date(2024, 3, 1)),
        Group.ELIGIBLE,
        (),
    ),
    (
        "established one day short of a year",
        HIGH_TECH,
        with_(GOOD_TECH, established_on=dt.date(2024, 3, 2)),
        Group.NEARLY,
        (1,),
    ),
    (
        "ratio exactly 3%",
        HIGH_TECH,
        with_(GOOD_TECH, rd_spend_wan=90, revenue_wan=3000),
        Group.ELIGIBLE,
        (),
    ),
    (
        "ratio just below 3%",
        HIGH_TECH,
        with_(GOOD_TECH, rd_spend_wan=89.9, revenue_wan=3000),
        Group.NEARLY,
        (2,),
    ),
    (
        "zero revenue: ratio unknown",
        HIGH_TECH,
        with_(GOOD_TECH, rd_spend_wan=50, revenue_wan=0),
        Group.NEARLY,
        (2,),
    ),
    (
        "grade C and no certificate list",
        HIGH_TECH,
        with_(GOOD_TECH, tax_credit_grade="C", certifications=...),
        Group.NOT_ELIGIBLE,
        (0, 3),
    ),
    ("empty portrait", HIGH_TECH, {}, Group.NOT_ELIGIBLE, (0, 1, 2, 3)),
    (
        "manufacturing: C3451 matches prefix C34",
        MANUFACTURING,
        {
            "industry_code": "C3451",
            "employees": 50,
            "region_code": "371502",
            "patents": 10,
            "tax_credit_grade": "B",
        },
        Group.ELIGIBLE,
        (),
    ),
    (
        "manufacturing: C3360 does not match; 49 employees",
        MANUFACTURING,
        {
            "industry_code": "C3360",
            "employees": 49,
            "region_code": "371502",
            "patents": 10,
            "tax_credit_grade": "B",
        },
        Group.NOT_ELIGIBLE,
        (0, 1),
    ),
    (
        "manufacturing: prefix C3 alone is not C34",
        MANUFACTURING,
        {
            "industry_code": "C3",
            "employees": 80,
            "region_code": "371502",
            "patents": 12,
            "tax_credit_grade": "A",
        },
        Group.NEARLY,
        (0,),
    ),
    (
        "manufacturing: missing grade makes not(...) unknown",
        MANUFACTURING,
        {"industry_code": "C3511", "employees": 80, "region_code": "371502", "patents": 12},
        Group.NEARLY,
        (4,),
    ),
    (
        "manufacturing: any() true through certification though patents unknown",
        MANUFACTURING,
        {
            "industry_code": "C3511",
            "employees": 80,
            "region_code": "371502",
            "certifications": [cert("专精特新", "2024-01-01", "2026-12-31")],
            "tax_credit_grade": "M",
        },
        Group.ELIGIBLE,
        (),
    ),
    (
        "startup: date range inclusive at both ends",
        STARTUP,
        {"established_on": dt.date(2022, 3, 1), "registered_capital_wan": 500},
        Group.ELIGIBLE,
        (),
    ),
    (
        "startup: one day too old, capital too high",
        STARTUP,
        {"established_on": dt.date(2022, 2, 28), "registered_capital_wan": 500.5},
        Group.NOT_ELIGIBLE,
        (0, 1),
    ),
]


@pytest.mark.parametrize(
    ("policy", "portrait", "group", "unmet"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_reference_and_matcher_agree_with_hand_made_cases(
    policy: dict[str, Any], portrait: dict[str, Any], group: Group, unmet: tuple[int, ...]
) -> None:
    validate_portrait(portrait)
    rule = parse_rule(policy)
    result = evaluate(rule, portrait, AS_OF, REFS)
    assert result.group is group
    assert tuple(c.index for c in result.unmet) == unmet
    codes = match_matrix(PortraitTable([portrait]), [rule], AS_OF, REFS)
    expected_missing = unmet[0] if group is Group.NEARLY else None
    assert code_to_group(int(codes[0, 0])) == (group, expected_missing)
    assert result.missing_criterion == expected_missing


def test_reasons_name_values_and_what_would_satisfy() -> None:
    portrait = with_(GOOD_TECH, certifications=[], rd_spend_wan=30)
    result = evaluate(parse_rule(HIGH_TECH), portrait, AS_OF, REFS)
    assert result.group is Group.NOT_ELIGIBLE
    cert_c, est_c, ratio_c, grade_c = result.criteria
    assert not cert_c.met and cert_c.truth is False
    assert cert_c.requirement_zh.startswith("需持有有效的高新技术企业证书")
    assert "2025-03-01" in cert_c.requirement_en
    assert cert_c.leaves[0].path == "$.all[0]"
    assert est_c.met and est_c.leaves[0].values == {"established_on": dt.date(2015, 6, 1)}
    assert "2024-03-01" in est_c.requirement_en
    assert not ratio_c.met and ratio_c.leaves[0].values == {"rd_spend_wan": 30, "revenue_wan": 3000}
    assert ratio_c.requirement_en == "rd_spend_wan / revenue_wan ≥ 3%"
    assert grade_c.met and grade_c.requirement_en == "tax_credit_grade in {A, B}"

    manu = evaluate(parse_rule(MANUFACTURING), {"employees": 10}, AS_OF, REFS)
    employees = manu.criteria[1]
    assert employees.requirement_en == "employees ≥ 50"
    assert employees.requirement_zh == "从业人数(人) ≥ 50"
    assert employees.leaves[0].values == {"employees": 10}
    grade = manu.criteria[4]
    assert grade.truth is None and grade.missing_facts == ("tax_credit_grade",)
    assert grade.leaves[0].path == "$.all[4].not"
    either = manu.criteria[3]
    assert [leaf.path for leaf in either.leaves] == ["$.all[3].any[0]", "$.all[3].any[1]"]


def test_single_criterion_root_and_missing_reference() -> None:
    rule = parse_rule({"fact": "employees", "op": "range", "min": 5})
    assert evaluate(rule, {"employees": 5}, AS_OF).group is Group.ELIGIBLE
    result = evaluate(rule, {"employees": 4}, AS_OF)
    assert result.group is Group.NEARLY and result.criteria[0].path == "$"
    with pytest.raises(MissingReference):
        evaluate(parse_rule(HIGH_TECH), GOOD_TECH, AS_OF, {})
    literal = parse_rule({"op": "certified", "name": "高新技术企业", "on": "2025-11-30"})
    assert evaluate(literal, GOOD_TECH, AS_OF).group is Group.ELIGIBLE


def test_years_before_from_29_february() -> None:
    rule = parse_rule({"fact": "established_on", "op": "years_before", "years": 1})
    leap = dt.date(2024, 2, 29)
    assert evaluate(rule, {"established_on": dt.date(2023, 2, 28)}, leap).group is Group.ELIGIBLE
    assert evaluate(rule, {"established_on": dt.date(2023, 3, 1)}, leap).group is Group.NEARLY


@pytest.mark.parametrize("policy", [HIGH_TECH, MANUFACTURING, STARTUP])
def test_round_trip(policy: dict[str, Any]) -> None:
    rule = parse_rule(policy)
    assert rule_to_json(rule) == policy
    assert parse_rule(rule_to_json(rule)) == rule


def test_defaults_are_written_out() -> None:
    rule = parse_rule({"op": "certified", "name": "专精特新"})
    assert rule_to_json(rule) == {"op": "certified", "name": "专精特新", "on": "as_of"}


# (data, path, code)
BAD: list[tuple[str, Any, str, str]] = [
    (
        "unknown fact deep",
        {"all": [{}, {}, {"any": [{"fact": "staff", "op": "eq", "value": 3}]}]},
        "$.all[0]",
        "missing_op",
    ),
    (
        "unknown fact",
        {
            "all": [
                {"fact": "employees", "op": "range", "min": 1},
                {"op": "certified", "name": "专精特新"},
                {"any": [{"fact": "staff", "op": "eq", "value": 3}]},
            ]
        },
        "$.all[2].any[0].fact",
        "unknown_fact",
    ),
    (
        "string for a number range",
        {"all": [{"fact": "employees", "op": "range", "min": "50"}]},
        "$.all[0].min",
        "type_mismatch",
    ),
    (
        "bool is not a number",
        {"fact": "revenue_wan", "op": "range", "max": True},
        "$.max",
        "type_mismatch",
    ),
    (
        "bad date in a date range",
        {"not": {"fact": "established_on", "op": "range", "min": "2024-02-30"}},
        "$.not.min",
        "type_mismatch",
    ),
    (
        "number for a text value in a list",
        {"fact": "tax_credit_grade", "op": "in", "values": ["A", 2]},
        "$.values[1]",
        "type_mismatch",
    ),
    (
        "prefix_in on a number fact",
        {"fact": "employees", "op": "prefix_in", "prefixes": ["C"]},
        "$.fact",
        "type_mismatch",
    ),
    (
        "ratio over a text fact",
        {"op": "ratio_min", "numerator": "rd_spend_wan", "denominator": "region_code", "min": 0.1},
        "$.denominator",
        "type_mismatch",
    ),
    ("empty all", {"all": []}, "$.all", "empty_group"),
    ("empty nested any", {"all": [{"any": []}]}, "$.all[0].any", "empty_group"),
    (
        "unknown op",
        {"all": [{"fact": "employees", "op": "gte", "value": 3}]},
        "$.all[0].op",
        "unknown_op",
    ),
    ("unknown key", {"fact": "employees", "op": "range", "min": 3, "mx": 4}, "$.mx", "unknown_key"),
    ("missing key", {"fact": "employees", "op": "eq"}, "$.value", "missing_key"),
    ("empty values", {"fact": "region_code", "op": "in", "values": []}, "$.values", "empty_list"),
    (
        "min above max",
        {"fact": "employees", "op": "range", "min": 5, "max": 4},
        "$.max",
        "empty_range",
    ),
    (
        "bad reference",
        {"op": "certified", "name": "专精特新", "on": "Window Open"},
        "$.on",
        "bad_reference",
    ),
    (
        "negative years",
        {"fact": "established_on", "op": "years_before", "years": -1},
        "$.years",
        "type_mismatch",
    ),
    ("not an object", {"any": [3]}, "$.any[0]", "not_an_object"),
]


@pytest.mark.parametrize(("data", "path", "code"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_parse_errors_carry_the_exact_path(data: Any, path: str, code: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rule(data)
    err = caught.value
    assert (err.path, err.code) == (path, code)
    assert err.zh and err.en and err.zh != err.en
    assert any("\u4e00" <= ch <= "\u9fff" for ch in err.zh)
    assert str(err).startswith(path + ": ")


def test_parse_error_messages_zh_and_en() -> None:
    with pytest.raises(RuleError) as caught:
        parse_rule({"all": [{"fact": "staff", "op": "eq", "value": 1}]})
    assert caught.value.zh == "未知的企业画像字段:'staff'"
    assert caught.value.en == "unknown fact 'staff'"
    with pytest.raises(RuleError) as caught:
        parse_rule({"all": [{"fact": "employees", "op": "range", "min": "50"}]})
    assert caught.value.en == "fact employees needs a number, not '50'"
    assert caught.value.zh == "字段 employees 需要数值,而不是 '50'"

"""The criteria builder's form state ⇄ rule conversion: every construct round-trips, actions
reshape the tree, and errors land on the node their JSON path points into."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

from canal.park.policy.builder import (
    apply_action,
    depth,
    error_owner,
    field_of,
    form_to_tree,
    rule_to_tree,
    tree_to_form,
    tree_to_rule,
)
from canal.park.policy.rules import RuleError, parse_rule, rule_to_json
from tests.policy.test_properties import rule_data

EXAMPLE = {
    "all": [
        {"fact": "region_code", "op": "eq", "value": "371502"},
        {"op": "certified", "name": "高新技术企业", "on": "window_open"},
        {"fact": "established_on", "op": "years_before", "years": 1, "date": "window_open"},
        {"op": "ratio_min", "numerator": "rd_spend_wan", "denominator": "revenue_wan", "min": 0.03},
        {"fact": "tax_credit_grade", "op": "in", "values": ["A", "B"]},
        {"fact": "industry_code", "op": "prefix_in", "prefixes": ["C34", "C35"]},
        {"fact": "employees", "op": "range", "min": 50},
        {
            "any": [
                {"op": "certified", "name": "专精特新", "on": "2025-12-31"},
                {"fact": "patents", "op": "range", "min": 10, "max": 99},
            ]
        },
        {"not": {"fact": "tax_credit_grade", "op": "in", "values": ["C", "D"]}},
        {"fact": "established_on", "op": "range", "min": "2000-01-01", "max": "2023-12-31"},
        {"fact": "revenue_wan", "op": "in", "values": [1.5, 200, 1e-09]},
        {"fact": "established_on", "op": "eq", "value": "2020-02-29"},
        {"fact": "established_on", "op": "years_before", "years": 3, "date": "2024-02-29"},
    ]
}


def round_trip(data: Any) -> Any:
    form = tree_to_form(rule_to_tree(data))
    rule, problems = tree_to_rule(form_to_tree(form))
    assert problems == []
    return rule


def without_empty_list_texts(data: Any) -> Any:
    """The builder drops empty texts from a list (an empty input line adds nothing)."""
    if isinstance(data, dict):
        if data.get("op") == "in" and "" in data["values"]:
            kept = [v for v in data["values"] if v != ""]
            return dict(data, values=kept) if kept else None
        items = {k: without_empty_list_texts(v) for k, v in data.items()}
        return None if None in items.values() else items
    if isinstance(data, list):
        items = [without_empty_list_texts(v) for v in data]
        return None if None in items else items
    return data


def test_every_construct_round_trips():
    assert round_trip(EXAMPLE) == EXAMPLE
    parse_rule(round_trip(EXAMPLE))


def test_a_lone_condition_and_a_lone_group_round_trip():
    for data in (
        {"fact": "employees", "op": "eq", "value": 7},
        {"not": {"any": [{"fact": "region_code", "op": "in", "values": ["3715", "371502"]}]}},
    ):
        assert round_trip(data) == data


@settings(max_examples=300, deadline=None)
@given(data=rule_data)
def test_any_valid_rule_round_trips_through_the_form(data):
    data = without_empty_list_texts(rule_to_json(parse_rule(data)))  # as stored
    if data is not None:
        assert round_trip(data) == data


def test_form_text_becomes_typed_values_and_bad_text_is_named_at_its_path():
    form = {
        "cb.r.kind": ["all"],
        "cb.r-0.kind": ["cond"],
        "cb.r-0.subject": ["employees"],
        "cb.r-0.op": ["range"],
        "cb.r-0.min": [" 50 "],
        "cb.r-1.kind": ["cond"],
        "cb.r-1.subject": ["revenue_wan"],
        "cb.r-1.op": ["range"],
        "cb.r-1.max": ["lots"],
    }
    tree = form_to_tree(form)
    rule, _problems = tree_to_rule(tree)
    assert rule["all"][0] == {"fact": "employees", "op": "range", "min": 50}
    try:
        parse_rule(rule)
    except RuleError as exc:
        assert exc.path == "$.all[1].max"
        owner = error_owner(tree, exc.path)
        assert owner.id == "r-1" and field_of(owner, exc.path) == "max"
    else:
        raise AssertionError("'lots' is not a number")


def test_changing_the_subject_offers_its_operators():
    form = {"cb.r.kind": ["cond"], "cb.r.subject": ["certifications"], "cb.r.op": ["range"]}
    rule, _ = tree_to_rule(form_to_tree(form))
    assert rule == {"op": "certified", "name": "", "on": "as_of"}
    form = {"cb.r.kind": ["cond"], "cb.r.subject": ["_ratio"], "cb.r.op": ["eq"]}
    assert tree_to_rule(form_to_tree(form))[0]["op"] == "ratio_min"


def test_actions_add_and_remove_conditions_and_groups():
    tree = rule_to_tree({"fact": "employees", "op": "range", "min": 1})
    tree, focus = apply_action(tree, "add_cond:r")  # a lone root condition becomes an "all"
    assert tree.kind == "all" and len(tree.children) == 2 and focus == "r-1"
    tree, focus = apply_action(tree, "add_group:r:any")
    assert tree.children[2].kind == "any" and focus == "r-2-0"
    tree, _ = apply_action(tree, "remove:r-0")
    assert [c.kind for c in tree.children] == ["cond", "any"]
    assert [c.id for c in tree.children] == ["r-0", "r-1"]
    tree, _ = apply_action(tree, "add_value:r-0")
    assert tree.children[0].values == [""]
    # Unknown targets change nothing.
    assert apply_action(tree, "remove:r-9")[1] is None


def test_a_not_group_with_two_items_is_named_at_the_group():
    tree = rule_to_tree({"all": [{"not": {"fact": "employees", "op": "eq", "value": 1}}]})
    tree, _ = apply_action(tree, "add_cond:r-0")
    _, problems = tree_to_rule(tree)
    assert [p.path for p in problems] == ["$.all[0]"]
    assert error_owner(tree, problems[0].path).id == "r-0"


def test_an_empty_group_error_belongs_to_the_group():
    tree = rule_to_tree({"all": [{"any": [{"fact": "employees", "op": "eq", "value": 1}]}]})
    tree, _ = apply_action(tree, "remove:r-0-0")
    rule, _ = tree_to_rule(tree)
    with pytest.raises(RuleError) as refused:
        parse_rule(rule)
    assert refused.value.code == "empty_group"
    assert error_owner(tree, refused.value.path).id == "r-0"


def test_depth_counts_group_levels():
    assert depth({"fact": "employees", "op": "eq", "value": 1}) == 0
    assert depth(EXAMPLE) == 2
    assert depth({"not": {"all": [{"any": [{"op": "certified", "name": "x"}]}]}}) == 3

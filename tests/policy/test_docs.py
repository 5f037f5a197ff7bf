"""The examples in docs/policy-rules.md parse and mean what the text says."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import re

import pytest

from canal.park.policy.facts import Certification, validate_portrait
from canal.park.policy.rules import Group, evaluate, parse_rule

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "policy-rules.md"
BLOCKS = re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S)
POLICIES = [json.loads(block) for block in BLOCKS if '"op"' in block]


def test_doc_has_policies() -> None:
    assert len(POLICIES) == 2


@pytest.mark.parametrize("policy", POLICIES)
def test_doc_policies_parse(policy: object) -> None:
    parse_rule(policy)


def test_worked_example() -> None:
    portrait = {
        "region_code": "371502",
        "certifications": [
            Certification("高新技术企业", dt.date(2023, 12, 1), dt.date(2026, 11, 30))
        ],
        "established_on": dt.date(2018, 5, 1),
        "rd_spend_wan": 80,
        "revenue_wan": 4000,
        "tax_credit_grade": "B",
    }
    validate_portrait(portrait)
    refs = {"window_open": dt.date(2025, 3, 1)}
    result = evaluate(parse_rule(POLICIES[0]), portrait, dt.date(2025, 3, 10), refs)
    assert (result.group, result.missing_criterion) == (Group.NEARLY, 3)
    missing = result.criteria[3]
    assert missing.requirement_zh == "研发费用(万元) / 营业收入(万元) ≥ 3%"
    assert missing.leaves[0].values == {"rd_spend_wan": 80, "revenue_wan": 4000}
    zh = [c.requirement_zh for c in result.criteria]
    assert zh[1] == "需持有有效的高新技术企业证书(申报开始日 2025-03-01 在有效期内)"
    assert zh[2] == "成立日期不晚于 2024-03-01(截至申报开始日 2025-03-01 满 1 年)"
    assert zh[4] == "纳税信用等级为 A、B 之一"


def test_validate_portrait_rejects_unknown_and_mistyped_facts() -> None:
    validate_portrait({"employees": None, "revenue_wan": 1.5, "patents": 3})
    with pytest.raises(ValueError, match="unknown fact"):
        validate_portrait({"staff": 3})
    with pytest.raises(ValueError, match="employees"):
        validate_portrait({"employees": "50"})
    with pytest.raises(ValueError, match="established_on"):
        validate_portrait({"established_on": dt.datetime(2020, 1, 1, tzinfo=dt.UTC)})

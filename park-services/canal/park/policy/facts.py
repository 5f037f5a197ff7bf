"""The enterprise-fact schema of policy matching (惠企政策).

A *portrait* is a plain ``dict`` of fact name → value. Any fact may be missing (absent key or
``None``); a missing fact makes every predicate that reads it *unknown* (see
``canal.park.policy.rules``). ``validate_portrait`` checks a portrait against ``FACTS``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
from collections.abc import Mapping
from typing import Any


class FactType(enum.Enum):
    STR = "str"  # categorical text: codes, grades
    NUMBER = "number"  # int or float, finite
    INT = "int"
    DATE = "date"
    CERTS = "certifications"  # list of Certification


@dataclasses.dataclass(frozen=True, slots=True)
class FactSpec:
    name: str
    type: FactType
    label_zh: str
    label_en: str
    unit_zh: str = ""
    unit_en: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Certification:
    """A certificate held by an enterprise, valid on ``valid_from`` … ``valid_to`` inclusive."""

    name: str
    valid_from: dt.date
    valid_to: dt.date

    def valid_on(self, day: dt.date) -> bool:
        return self.valid_from <= day <= self.valid_to


FACTS: dict[str, FactSpec] = {
    spec.name: spec
    for spec in (
        FactSpec("industry_code", FactType.STR, "国民经济行业代码", "industry code (GB/T 4754)"),
        FactSpec("region_code", FactType.STR, "注册地区划代码", "region code"),
        FactSpec("established_on", FactType.DATE, "成立日期", "date of establishment"),
        FactSpec(
            "registered_capital_wan",
            FactType.NUMBER,
            "注册资本",
            "registered capital",
            "万元",
            "10k CNY",
        ),
        FactSpec("employees", FactType.INT, "从业人数", "employees", "人", "people"),
        FactSpec("revenue_wan", FactType.NUMBER, "营业收入", "revenue", "万元", "10k CNY"),
        FactSpec("tax_paid_wan", FactType.NUMBER, "纳税额", "tax paid", "万元", "10k CNY"),
        FactSpec("rd_spend_wan", FactType.NUMBER, "研发费用", "R&D spending", "万元", "10k CNY"),
        FactSpec("tax_credit_grade", FactType.STR, "纳税信用等级", "tax credit grade"),
        FactSpec("patents", FactType.INT, "有效专利数", "patents", "件", "patents"),
        FactSpec("certifications", FactType.CERTS, "资质认定", "certifications"),
    )
}

# Certification names in use in 东昌府区 policies (others are allowed).
KNOWN_CERTIFICATIONS = ("高新技术企业", "专精特新", "科技型中小企业", "规上企业")
TAX_CREDIT_GRADES = ("A", "B", "M", "C", "D")

NUMERIC_TYPES = (FactType.NUMBER, FactType.INT)


def is_number(value: object) -> bool:
    """A finite int or float (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


def present(value: object) -> bool:
    """Whether a portrait value counts as known (``None`` and NaN are missing)."""
    if value is None:
        return False
    return not (isinstance(value, float) and math.isnan(value))


def check_value(spec: FactSpec, value: object) -> bool:
    """Whether a (present) value has the fact's type."""
    match spec.type:
        case FactType.STR:
            return isinstance(value, str)
        case FactType.NUMBER:
            return is_number(value)
        case FactType.INT:
            return isinstance(value, int) and not isinstance(value, bool)
        case FactType.DATE:
            return isinstance(value, dt.date) and not isinstance(value, dt.datetime)
        case FactType.CERTS:
            return isinstance(value, (list, tuple)) and all(
                isinstance(c, Certification) for c in value
            )
    return False  # pragma: no cover


def validate_portrait(portrait: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first unknown fact or mistyped value."""
    for name, value in portrait.items():
        spec = FACTS.get(name)
        if spec is None:
            raise ValueError(f"unknown fact {name!r}")
        if present(value) and not check_value(spec, value):
            raise ValueError(f"fact {name!r}: {value!r} is not of type {spec.type.value}")

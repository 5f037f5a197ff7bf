"""Per-column masking rules, applied on the server before any row leaves.

A rule is one of ``keep``, ``drop``, ``mask`` (the standard Chinese display formats),
``hash`` (HMAC-SHA-256 with a per-grant salt: joinable within one grant, not across grants)
and ``generalise`` (numbers into ranges of their order of magnitude, dates into months).
Profiling proposes defaults; a provider may tighten them but may not ``keep`` a column in
which personal data was detected.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from canal.exchange.pii import mask_value

ACTIONS = ("keep", "generalise", "mask", "hash", "drop")
ACTION_LABELS = {
    "keep": ("保留", "Keep"),
    "generalise": ("泛化为区间", "Generalise into ranges"),
    "mask": ("掩码", "Mask"),
    "hash": ("加盐哈希", "Salted hash"),
    "drop": ("删除", "Drop"),
}
DATE_RE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})")


def default_rule(pii_kind: str | None) -> str:
    if pii_kind in ("id_card", "bank_card"):
        return "hash"
    if pii_kind in ("mobile", "email", "name"):
        return "mask"
    if pii_kind == "address":
        return "mask"
    return "keep"


def rule_allowed(pii_kind: str | None, action: str) -> bool:
    return action in ACTIONS and not (pii_kind and action == "keep")


def generalise(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime | dt.date):
        return f"{value.year:04d}-{value.month:02d}"
    text = str(value).strip()
    if match := DATE_RE.match(text):
        return f"{int(match.group(1)):04d}-{int(match.group(2)):02d}"
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text[:1] + "…" if text else ""
    if not number.is_finite():
        return ""
    magnitude = abs(number)
    step = (
        Decimal(10) ** math.floor(math.log10(float(magnitude))) if magnitude >= 10 else Decimal(1)
    )
    low = (number / step).to_integral_value(rounding="ROUND_FLOOR") * step
    return f"[{low:f}, {low + step:f})"


def salted_hash(salt: bytes, value: Any) -> str:
    if value is None or str(value) == "":
        return ""
    return hmac.new(salt, str(value).strip().encode(), hashlib.sha256).hexdigest()[:16]


def delivered_columns(columns: Sequence[str], rules: dict[str, str]) -> list[str]:
    return [c for c in columns if rules.get(c, "keep") != "drop"]


def mask_rows(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    rules: dict[str, str],
    kinds: dict[str, str | None],
    salt: bytes,
) -> list[list[Any]]:
    """Masked copies of ``rows`` with the dropped columns left out."""
    plan = [
        (i, rules.get(c, "keep"), kinds.get(c))
        for i, c in enumerate(columns)
        if rules.get(c, "keep") != "drop"
    ]
    out: list[list[Any]] = []
    for row in rows:
        masked: list[Any] = []
        for i, action, kind in plan:
            value = row[i]
            if action == "keep":
                masked.append(value)
            elif value is None:
                masked.append(None)
            elif action == "mask":
                masked.append(mask_value(kind, str(value)))
            elif action == "hash":
                masked.append(salted_hash(salt, value))
            else:
                masked.append(generalise(value))
        out.append(masked)
    return out


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """Text a spreadsheet would run as a formula (=HYPERLINK(…), +cmd|…) gets a leading
    apostrophe in delivered files; numbers, including negative ones, stay as they are."""
    if not isinstance(value, str) or not value.startswith(FORMULA_START):
        return value
    try:
        Decimal(value)
    except InvalidOperation:
        return "'" + value
    return value

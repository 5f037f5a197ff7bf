"""Eligibility rules of policies (惠企政策): a small JSON rule language and its reference evaluator.

The language (documented with examples in ``docs/policy-rules.md``):

* groups — ``{"all": [rule, …]}``, ``{"any": [rule, …]}`` (non-empty), ``{"not": rule}``;
* predicates on facts (``canal.park.policy.facts.FACTS``)::

    {"fact": F, "op": "eq", "value": V}
    {"fact": F, "op": "in", "values": [V, …]}
    {"fact": F, "op": "prefix_in", "prefixes": ["C34", …]}         # text facts
    {"fact": F, "op": "range", "min": A, "max": B}                 # numbers or dates, inclusive
    {"fact": F, "op": "years_before", "years": N, "date": REF}     # date facts: F ≤ REF − N years
    {"op": "certified", "name": "高新技术企业", "on": REF}            # a certificate valid on REF
    {"op": "ratio_min", "numerator": F1, "denominator": F2, "min": R}  # F1 / F2 ≥ R

  Dates in rules are ISO strings. A reference date ``REF`` is ``"as_of"`` (the evaluation day),
  another name given at evaluation time in ``refs`` (``"window_open"``), or an ISO date.

Logic is three-valued (Kleene): a predicate over a missing fact is *unknown*; ``not`` of unknown
is unknown; ``all`` is false if any part is false, else unknown if any part is unknown; ``any``
is true if any part is true, else unknown if any part is unknown. Only *true* counts as met.

The top-level criteria of a policy are the items of its root ``all`` (or the root itself when
it is not an ``all``). Group: eligible (every criterion met), nearly (exactly one unmet — named),
not eligible (two or more unmet).

``evaluate`` is the reference evaluator: simple, recursive, explanatory.
``canal.park.policy.matcher`` computes the same groups fast, for many enterprises at once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
from collections.abc import Callable, Mapping
from typing import Any

from canal.park.policy.facts import (
    FACTS,
    NUMERIC_TYPES,
    FactSpec,
    FactType,
    is_number,
    present,
)

AS_OF = "as_of"
_REF_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class RuleError(ValueError):
    """A rule that does not validate: ``path`` is the JSON path of the problem (``$.all[2].op``)."""

    def __init__(self, path: str, code: str, zh: str, en: str) -> None:
        super().__init__(f"{path}: {en}")
        self.path = path
        self.code = code
        self.zh = zh
        self.en = en


class MissingReference(KeyError):
    """A rule names a reference date (``window_open``) that the evaluation did not supply."""


# --------------------------------------------------------------------------------------------
# Rule nodes


@dataclasses.dataclass(frozen=True, slots=True)
class All:
    items: tuple[Rule, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Any_:
    items: tuple[Rule, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Not:
    item: Rule


Scalar = str | int | float | dt.date


@dataclasses.dataclass(frozen=True, slots=True)
class Eq:
    fact: str
    value: Scalar


@dataclasses.dataclass(frozen=True, slots=True)
class In:
    fact: str
    values: tuple[Scalar, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class PrefixIn:
    fact: str
    prefixes: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Range:
    fact: str
    min: int | float | dt.date | None
    max: int | float | dt.date | None


@dataclasses.dataclass(frozen=True, slots=True)
class YearsBefore:
    fact: str
    years: int
    date: str  # reference name or ISO date


@dataclasses.dataclass(frozen=True, slots=True)
class Certified:
    name: str
    on: str  # reference name or ISO date


@dataclasses.dataclass(frozen=True, slots=True)
class RatioMin:
    numerator: str
    denominator: str
    min: int | float


Predicate = Eq | In | PrefixIn | Range | YearsBefore | Certified | RatioMin
Rule = All | Any_ | Not | Predicate


# --------------------------------------------------------------------------------------------
# Parsing and validation

_GROUP_KEYS = ("all", "any", "not")
_OP_KEYS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # op: (required keys, optional keys) besides "op"
    "eq": (frozenset({"fact", "value"}), frozenset()),
    "in": (frozenset({"fact", "values"}), frozenset()),
    "prefix_in": (frozenset({"fact", "prefixes"}), frozenset()),
    "range": (frozenset({"fact"}), frozenset({"min", "max"})),
    "years_before": (frozenset({"fact", "years"}), frozenset({"date"})),
    "certified": (frozenset({"name"}), frozenset({"on"})),
    "ratio_min": (frozenset({"numerator", "denominator", "min"}), frozenset()),
}
OPS = tuple(_OP_KEYS)


def _err(path: str, code: str, zh: str, en: str) -> RuleError:
    return RuleError(path, code, zh, en)


def _fact(data: Mapping[str, Any], key: str, path: str, allowed: tuple[FactType, ...]) -> str:
    name = data[key]
    p = f"{path}.{key}"
    if not isinstance(name, str) or name not in FACTS:
        raise _err(p, "unknown_fact", f"未知的企业画像字段:{name!r}", f"unknown fact {name!r}")
    spec = FACTS[name]
    if spec.type not in allowed:
        kinds = "/".join(t.value for t in allowed)
        raise _err(
            p,
            "type_mismatch",
            f"字段 {name} 的类型为 {spec.type.value},此运算需要 {kinds}",
            f"fact {name} is {spec.type.value}; this op needs {kinds}",
        )
    return name


def _value(spec: FactSpec, value: object, path: str) -> Scalar:
    """A rule constant for a fact: numbers for numeric facts, text for text, ISO dates for dates."""
    t = spec.type
    if t is FactType.STR and isinstance(value, str):
        return value
    if t in NUMERIC_TYPES and is_number(value):
        return value  # type: ignore[return-value]
    if t is FactType.DATE and isinstance(value, str) and _ISO_DATE.match(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    want_zh = {"str": "文本", "number": "数值", "int": "数值", "date": "ISO 日期(YYYY-MM-DD)"}
    want_en = {"str": "text", "number": "a number", "int": "a number", "date": "an ISO date"}
    raise _err(
        path,
        "type_mismatch",
        f"字段 {spec.name} 需要{want_zh.get(t.value, t.value)},而不是 {value!r}",
        f"fact {spec.name} needs {want_en.get(t.value, t.value)}, not {value!r}",
    )


def _ref(value: object, path: str) -> str:
    if isinstance(value, str):
        if _REF_NAME.match(value):
            return value
        if _ISO_DATE.match(value):
            try:
                dt.date.fromisoformat(value)
                return value
            except ValueError:
                pass
    raise _err(
        path,
        "bad_reference",
        f"参考日期应为名称(如 as_of、window_open)或 ISO 日期,而不是 {value!r}",
        f"a reference date is a name (as_of, window_open) or an ISO date, not {value!r}",
    )


def _nonempty_list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _err(path, "not_a_list", "此处应为列表", "expected a list")
    if not value:
        raise _err(path, "empty_list", "列表不能为空", "the list must not be empty")
    return value


def parse_rule(data: object, path: str = "$") -> Rule:
    """Validate JSON-able rule data and build the rule; raise ``RuleError`` with the exact path."""
    if not isinstance(data, dict):
        raise _err(path, "not_an_object", "规则应为 JSON 对象", "a rule is a JSON object")
    groups = [k for k in _GROUP_KEYS if k in data]
    if groups:
        key = groups[0]
        for other in data:
            if other != key:
                raise _err(
                    f"{path}.{other}",
                    "unknown_key",
                    f"组合规则 {key} 中不应有键 {other!r}",
                    f"unexpected key {other!r} beside {key!r}",
                )
        if key == "not":
            return Not(parse_rule(data["not"], f"{path}.not"))
        items = data[key]
        p = f"{path}.{key}"
        if not isinstance(items, list):
            raise _err(p, "not_a_list", f"{key} 应为规则列表", f"{key} takes a list of rules")
        if not items:
            raise _err(p, "empty_group", f"{key} 组合不能为空", f"an empty {key} group")
        parsed = tuple(parse_rule(item, f"{p}[{i}]") for i, item in enumerate(items))
        return All(parsed) if key == "all" else Any_(parsed)
    if "op" not in data:
        raise _err(
            path,
            "missing_op",
            "规则需有 all/any/not 或 op",
            "a rule needs all/any/not or op",
        )
    op = data["op"]
    if not isinstance(op, str) or op not in _OP_KEYS:
        raise _err(
            f"{path}.op",
            "unknown_op",
            f"未知的运算 {op!r}(可用:{', '.join(OPS)})",
            f"unknown op {op!r} (known: {', '.join(OPS)})",
        )
    required, optional = _OP_KEYS[op]
    for key in data:
        if key != "op" and key not in required and key not in optional:
            raise _err(
                f"{path}.{key}",
                "unknown_key",
                f"运算 {op} 不接受键 {key!r}",
                f"op {op} does not take key {key!r}",
            )
    for key in sorted(required):
        if key not in data:
            raise _err(
                f"{path}.{key}",
                "missing_key",
                f"运算 {op} 缺少 {key}",
                f"op {op} needs {key!r}",
            )
    scalar_types = (FactType.STR, FactType.NUMBER, FactType.INT, FactType.DATE)
    match op:
        case "eq":
            fact = _fact(data, "fact", path, scalar_types)
            return Eq(fact, _value(FACTS[fact], data["value"], f"{path}.value"))
        case "in":
            fact = _fact(data, "fact", path, scalar_types)
            values = _nonempty_list(data["values"], f"{path}.values")
            return In(
                fact,
                tuple(_value(FACTS[fact], v, f"{path}.values[{i}]") for i, v in enumerate(values)),
            )
        case "prefix_in":
            fact = _fact(data, "fact", path, (FactType.STR,))
            prefixes = _nonempty_list(data["prefixes"], f"{path}.prefixes")
            for i, prefix in enumerate(prefixes):
                if not isinstance(prefix, str) or not prefix:
                    raise _err(
                        f"{path}.prefixes[{i}]",
                        "type_mismatch",
                        "前缀应为非空文本",
                        "a prefix is non-empty text",
                    )
            return PrefixIn(fact, tuple(prefixes))
        case "range":
            fact = _fact(data, "fact", path, (*NUMERIC_TYPES, FactType.DATE))
            if "min" not in data and "max" not in data:
                raise _err(
                    path, "empty_range", "range 需要 min 或 max", "range needs min and/or max"
                )
            lo = _value(FACTS[fact], data["min"], f"{path}.min") if "min" in data else None
            hi = _value(FACTS[fact], data["max"], f"{path}.max") if "max" in data else None
            if lo is not None and hi is not None and lo > hi:  # type: ignore[operator]
                raise _err(f"{path}.max", "empty_range", "max 小于 min", "max is less than min")
            return Range(fact, lo, hi)  # type: ignore[arg-type]
        case "years_before":
            fact = _fact(data, "fact", path, (FactType.DATE,))
            years = data["years"]
            if isinstance(years, bool) or not isinstance(years, int) or years < 0:
                raise _err(
                    f"{path}.years",
                    "type_mismatch",
                    "years 应为非负整数",
                    "years is a non-negative integer",
                )
            return YearsBefore(fact, years, _ref(data.get("date", AS_OF), f"{path}.date"))
        case "certified":
            name = data["name"]
            if not isinstance(name, str) or not name:
                raise _err(
                    f"{path}.name",
                    "type_mismatch",
                    "证书名称应为非空文本",
                    "a certificate name is non-empty text",
                )
            return Certified(name, _ref(data.get("on", AS_OF), f"{path}.on"))
        case "ratio_min":
            num = _fact(data, "numerator", path, NUMERIC_TYPES)
            den = _fact(data, "denominator", path, NUMERIC_TYPES)
            low = data["min"]
            if not is_number(low):
                raise _err(f"{path}.min", "type_mismatch", "min 应为数值", "min is a number")
            return RatioMin(num, den, low)
    raise AssertionError(op)  # pragma: no cover


def _json_scalar(value: object) -> object:
    return value.isoformat() if isinstance(value, dt.date) else value


def rule_to_json(rule: Rule) -> dict[str, Any]:
    """The JSON-able data of a rule; ``parse_rule(rule_to_json(r)) == r``."""
    match rule:
        case All(items):
            return {"all": [rule_to_json(r) for r in items]}
        case Any_(items):
            return {"any": [rule_to_json(r) for r in items]}
        case Not(item):
            return {"not": rule_to_json(item)}
        case Eq(fact, value):
            return {"fact": fact, "op": "eq", "value": _json_scalar(value)}
        case In(fact, values):
            return {"fact": fact, "op": "in", "values": [_json_scalar(v) for v in values]}
        case PrefixIn(fact, prefixes):
            return {"fact": fact, "op": "prefix_in", "prefixes": list(prefixes)}
        case Range(fact, lo, hi):
            out: dict[str, Any] = {"fact": fact, "op": "range"}
            if lo is not None:
                out["min"] = _json_scalar(lo)
            if hi is not None:
                out["max"] = _json_scalar(hi)
            return out
        case YearsBefore(fact, years, date):
            return {"fact": fact, "op": "years_before", "years": years, "date": date}
        case Certified(name, on):
            return {"op": "certified", "name": name, "on": on}
        case RatioMin(num, den, low):
            return {"op": "ratio_min", "numerator": num, "denominator": den, "min": low}
    raise TypeError(rule)  # pragma: no cover


def criteria_of(rule: Rule) -> tuple[Rule, ...]:
    """The top-level criteria: the items of a root ``all``, else the root itself."""
    return rule.items if isinstance(rule, All) else (rule,)


# --------------------------------------------------------------------------------------------
# Dates


def resolve_ref(ref: str, as_of: dt.date, refs: Mapping[str, dt.date]) -> dt.date:
    if ref == AS_OF:
        return as_of
    if _ISO_DATE.match(ref):
        return dt.date.fromisoformat(ref)
    try:
        return refs[ref]
    except KeyError:
        raise MissingReference(ref) from None


def years_earlier(day: dt.date, years: int) -> dt.date:
    """The same calendar day ``years`` earlier; 29 February becomes 28 February."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


# --------------------------------------------------------------------------------------------
# Reference evaluator


class Group(enum.Enum):
    ELIGIBLE = "eligible"
    NEARLY = "nearly"
    NOT_ELIGIBLE = "not_eligible"


Truth = bool | None  # None: unknown


@dataclasses.dataclass(frozen=True, slots=True)
class LeafOutcome:
    path: str  # JSON path of the predicate within the rule
    truth: Truth
    values: dict[str, Any]  # the fact values read (None when missing)
    requirement_zh: str  # what satisfies the predicate
    requirement_en: str

    @property
    def met(self) -> bool:
        return self.truth is True


@dataclasses.dataclass(frozen=True, slots=True)
class CriterionOutcome:
    index: int
    path: str
    truth: Truth
    requirement_zh: str  # what satisfies the whole criterion
    requirement_en: str
    leaves: tuple[LeafOutcome, ...]

    @property
    def met(self) -> bool:
        return self.truth is True

    @property
    def missing_facts(self) -> tuple[str, ...]:
        return tuple(
            sorted({f for leaf in self.leaves for f, v in leaf.values.items() if v is None})
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    group: Group
    criteria: tuple[CriterionOutcome, ...]

    @property
    def unmet(self) -> tuple[CriterionOutcome, ...]:
        return tuple(c for c in self.criteria if not c.met)

    @property
    def missing_criterion(self) -> int | None:
        """For ``nearly``: the index of the one unmet criterion."""
        return self.unmet[0].index if self.group is Group.NEARLY else None


def _get(portrait: Mapping[str, Any], fact: str) -> Any:
    value = portrait.get(fact)
    return value if present(value) else None


def _num(value: Any) -> float:
    return float(value)


def _scalar_eq(spec: FactSpec, a: Any, b: Any) -> bool:
    if spec.type in NUMERIC_TYPES:
        return _num(a) == _num(b)
    return bool(a == b)


def eval_predicate(
    rule: Predicate, portrait: Mapping[str, Any], as_of: dt.date, refs: Mapping[str, dt.date]
) -> tuple[Truth, dict[str, Any]]:
    """The truth of one predicate and the fact values it read."""
    match rule:
        case Eq(fact, value):
            v = _get(portrait, fact)
            return (None if v is None else _scalar_eq(FACTS[fact], v, value)), {fact: v}
        case In(fact, values):
            v = _get(portrait, fact)
            if v is None:
                return None, {fact: v}
            return any(_scalar_eq(FACTS[fact], v, x) for x in values), {fact: v}
        case PrefixIn(fact, prefixes):
            v = _get(portrait, fact)
            return (None if v is None else any(v.startswith(p) for p in prefixes)), {fact: v}
        case Range(fact, lo, hi):
            v = _get(portrait, fact)
            if v is None:
                return None, {fact: v}
            x = v if isinstance(v, dt.date) else _num(v)
            ok = (lo is None or x >= lo) and (hi is None or x <= hi)  # type: ignore[operator]
            return ok, {fact: v}
        case YearsBefore(fact, years, date):
            v = _get(portrait, fact)
            cutoff = years_earlier(resolve_ref(date, as_of, refs), years)
            return (None if v is None else v <= cutoff), {fact: v}
        case Certified(name, on):
            certs = _get(portrait, "certifications")
            day = resolve_ref(on, as_of, refs)
            if certs is None:
                return None, {"certifications": None}
            held = [c for c in certs if c.name == name]
            return any(c.valid_on(day) for c in held), {"certifications": held}
        case RatioMin(num, den, low):
            a, b = _get(portrait, num), _get(portrait, den)
            read = {num: a, den: b}
            if a is None or b is None or _num(b) <= 0:
                return None, read
            return _num(a) / _num(b) >= low, read
    raise TypeError(rule)  # pragma: no cover


def eval_truth(
    rule: Rule, portrait: Mapping[str, Any], as_of: dt.date, refs: Mapping[str, dt.date]
) -> Truth:
    """Three-valued truth of a rule (``None``: unknown)."""
    match rule:
        case All(items):
            truths = [eval_truth(r, portrait, as_of, refs) for r in items]
            return False if False in truths else (None if None in truths else True)
        case Any_(items):
            truths = [eval_truth(r, portrait, as_of, refs) for r in items]
            return True if True in truths else (None if None in truths else False)
        case Not(item):
            t = eval_truth(item, portrait, as_of, refs)
            return None if t is None else not t
    return eval_predicate(rule, portrait, as_of, refs)[0]


def _leaves(
    rule: Rule, path: str, portrait: Mapping[str, Any], as_of: dt.date, refs: Mapping[str, dt.date]
) -> list[LeafOutcome]:
    match rule:
        case All(items) | Any_(items):
            key = "all" if isinstance(rule, All) else "any"
            return [
                leaf
                for i, r in enumerate(items)
                for leaf in _leaves(r, f"{path}.{key}[{i}]", portrait, as_of, refs)
            ]
        case Not(item):
            return _leaves(item, f"{path}.not", portrait, as_of, refs)
    truth, values = eval_predicate(rule, portrait, as_of, refs)
    zh, en = describe(rule, as_of, refs)
    return [LeafOutcome(path, truth, values, zh, en)]


def evaluate(
    rule: Rule,
    portrait: Mapping[str, Any],
    as_of: dt.date,
    refs: Mapping[str, dt.date] | None = None,
) -> Result:
    """Evaluate a policy's rule for one enterprise, explaining every criterion."""
    refs = refs or {}
    outcomes = []
    root_all = isinstance(rule, All)
    for i, criterion in enumerate(criteria_of(rule)):
        path = f"$.all[{i}]" if root_all else "$"
        zh, en = describe(criterion, as_of, refs)
        outcomes.append(
            CriterionOutcome(
                i,
                path,
                eval_truth(criterion, portrait, as_of, refs),
                zh,
                en,
                tuple(_leaves(criterion, path, portrait, as_of, refs)),
            )
        )
    unmet = sum(1 for c in outcomes if not c.met)
    group = Group.ELIGIBLE if unmet == 0 else Group.NEARLY if unmet == 1 else Group.NOT_ELIGIBLE
    return Result(group, tuple(outcomes))


# --------------------------------------------------------------------------------------------
# Requirements in words


def _show(value: object) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _labels(fact: str) -> tuple[str, str]:
    spec = FACTS[fact]
    zh = f"{spec.label_zh}({spec.unit_zh})" if spec.unit_zh else spec.label_zh
    return zh, spec.name


def _ref_words(ref: str, day: dt.date) -> tuple[str, str]:
    names = {AS_OF: ("评估日", "the evaluation day"), "window_open": ("申报开始日", "window open")}
    zh, en = names.get(ref, (ref, ref))
    if _ISO_DATE.match(ref):
        return ref, ref
    return f"{zh} {day.isoformat()}", f"{en} {day.isoformat()}"


def describe(
    rule: Rule, as_of: dt.date, refs: Mapping[str, dt.date] | None = None
) -> tuple[str, str]:
    """What satisfies a rule, in Chinese and English (reference dates resolved)."""
    refs = refs or {}
    d: Callable[[Rule], tuple[str, str]] = lambda r: describe(r, as_of, refs)  # noqa: E731
    match rule:
        case All(items) | Any_(items):
            parts = [d(r) for r in items]
            sep_zh, sep_en = (" 且 ", " and ") if isinstance(rule, All) else (" 或 ", " or ")
            return (
                "(" + sep_zh.join(p[0] for p in parts) + ")",
                "(" + sep_en.join(p[1] for p in parts) + ")",
            )
        case Not(item):
            zh, en = d(item)
            return f"不满足:{zh}", f"not ({en})"
        case Eq(fact, value):
            zh, en = _labels(fact)
            return f"{zh} = {_show(value)}", f"{en} = {_show(value)}"
        case In(fact, values):
            zh, en = _labels(fact)
            shown = [_show(v) for v in values]
            return f"{zh}为 {'、'.join(shown)} 之一", f"{en} in {{{', '.join(shown)}}}"
        case PrefixIn(fact, prefixes):
            zh, en = _labels(fact)
            return (
                f"{zh}以 {'、'.join(prefixes)} 开头",
                f"{en} starts with {' or '.join(prefixes)}",
            )
        case Range(fact, lo, hi):
            zh, en = _labels(fact)
            if lo is not None and hi is not None:
                return (
                    f"{_show(lo)} ≤ {zh} ≤ {_show(hi)}",
                    f"{_show(lo)} ≤ {en} ≤ {_show(hi)}",
                )
            if lo is not None:
                return f"{zh} ≥ {_show(lo)}", f"{en} ≥ {_show(lo)}"
            return f"{zh} ≤ {_show(hi)}", f"{en} ≤ {_show(hi)}"
        case YearsBefore(fact, years, date):
            day = resolve_ref(date, as_of, refs)
            cutoff = years_earlier(day, years).isoformat()
            rz, re_ = _ref_words(date, day)
            zh, en = _labels(fact)
            return (
                f"{zh}不晚于 {cutoff}(截至{rz} 满 {years} 年)",
                f"{en} ≤ {cutoff} (at least {years} year{'s' if years != 1 else ''} before {re_})",
            )
        case Certified(name, on):
            day = resolve_ref(on, as_of, refs)
            rz, re_ = _ref_words(on, day)
            return (
                f"需持有有效的{name}证书({rz} 在有效期内)",
                f"holds a {name} certificate valid on {re_}",
            )
        case RatioMin(num, den, low):
            nz, ne = _labels(num)
            dz, de = _labels(den)
            pct = f"{_show(round(low * 100, 6))}%"
            return f"{nz} / {dz} ≥ {pct}", f"{ne} / {de} ≥ {pct}"
    raise TypeError(rule)  # pragma: no cover

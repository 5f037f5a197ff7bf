"""Fast policy matching: every (enterprise, policy) pair at once, with numpy.

Portraits are encoded column-wise once (``PortraitTable``): numeric and date facts as float64
arrays (dates as day ordinals, NaN for missing), text facts as integer codes into a vocabulary
(-1 for missing), certifications as, per certificate name, ``(k, N)`` arrays of validity
start/end ordinals (NaN padding) plus a mask of enterprises whose certification list is known.

A policy's top-level criteria compile to boolean masks over all enterprises. Three-valued logic
(see ``canal.park.policy.rules``) needs no third array: a criterion is met iff its rule is
*definitely true*, and ``true(node)`` / ``false(node)`` recurse into each other —
``true(all) = ∧ true(item)``, ``false(all) = ∨ false(item)``, ``true(any) = ∨ true(item)``,
``false(any) = ∧ false(item)``, ``true(not x) = false(x)``, ``false(not x) = true(x)``; for a
predicate ``true = known ∧ cond`` and ``false = known ∧ ¬cond``.

The result per pair is one small integer: ``ELIGIBLE`` (-1), ``NOT_ELIGIBLE`` (-2) or, for
nearly eligible, the index (≥ 0) of the one unmet criterion. It agrees exactly with
``canal.park.policy.rules.evaluate`` (property-tested in ``tests/policy``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from canal.park.policy.facts import FACTS, FactType, present
from canal.park.policy.rules import (
    All,
    Any_,
    Certified,
    Eq,
    Group,
    In,
    Not,
    PrefixIn,
    Range,
    RatioMin,
    Rule,
    YearsBefore,
    criteria_of,
    resolve_ref,
    years_earlier,
)

ELIGIBLE = -1
NOT_ELIGIBLE = -2

Mask = npt.NDArray[np.bool_]


def code_to_group(code: int) -> tuple[Group, int | None]:
    """``(group, missing criterion index)`` of a matrix entry."""
    if code == ELIGIBLE:
        return Group.ELIGIBLE, None
    if code == NOT_ELIGIBLE:
        return Group.NOT_ELIGIBLE, None
    return Group.NEARLY, int(code)


@dataclasses.dataclass
class _Text:
    codes: npt.NDArray[np.int32]
    vocab: dict[str, int]
    known: Mask


@dataclasses.dataclass
class _Certs:
    starts: npt.NDArray[np.float64]  # (k, N)
    ends: npt.NDArray[np.float64]


class PortraitTable:
    """Column-wise encoding of N portraits."""

    def __init__(self, portraits: Sequence[Mapping[str, Any]]) -> None:
        n = self.n = len(portraits)
        self.numeric: dict[str, npt.NDArray[np.float64]] = {}
        self.known: dict[str, Mask] = {}
        self.text: dict[str, _Text] = {}
        self.certs: dict[str, _Certs] = {}
        for name, spec in FACTS.items():
            raw: list[Any] = [p.get(name) for p in portraits]
            if spec.type is FactType.STR:
                vocab: dict[str, int] = {}
                codes = np.fromiter(
                    (vocab.setdefault(v, len(vocab)) if present(v) else -1 for v in raw),
                    dtype=np.int32,
                    count=n,
                )
                self.text[name] = _Text(codes, vocab, codes >= 0)
            elif spec.type is FactType.DATE:
                col = np.fromiter(
                    (v.toordinal() if present(v) else np.nan for v in raw),
                    dtype=np.float64,
                    count=n,
                )
                self.numeric[name] = col
                self.known[name] = ~np.isnan(col)
            elif spec.type is FactType.CERTS:
                self.known[name] = np.fromiter((present(v) for v in raw), dtype=np.bool_, count=n)
                by_name: dict[str, list[tuple[int, int, int]]] = {}
                for i, certs in enumerate(raw):
                    for c in certs or ():
                        by_name.setdefault(c.name, []).append(
                            (i, c.valid_from.toordinal(), c.valid_to.toordinal())
                        )
                for cert, rows in by_name.items():
                    depth: dict[int, int] = {}
                    placed = []
                    for i, a, b in rows:
                        j = depth.get(i, 0)
                        depth[i] = j + 1
                        placed.append((j, i, a, b))
                    k = max(depth.values())
                    starts = np.full((k, n), np.nan)
                    ends = np.full((k, n), np.nan)
                    for j, i, a, b in placed:
                        starts[j, i] = a
                        ends[j, i] = b
                    self.certs[cert] = _Certs(starts, ends)
            else:
                col = np.fromiter(
                    (float(v) if present(v) else np.nan for v in raw),
                    dtype=np.float64,
                    count=n,
                )
                self.numeric[name] = col
                self.known[name] = ~np.isnan(col)


class _Compiler:
    """Evaluates rule nodes to masks over one ``PortraitTable``."""

    def __init__(self, table: PortraitTable, as_of: dt.date, refs: Mapping[str, dt.date]):
        self.t = table
        self.as_of = as_of
        self.refs = refs
        self.none = np.zeros(table.n, dtype=np.bool_)

    def _day(self, ref: str) -> float:
        return float(resolve_ref(ref, self.as_of, self.refs).toordinal())

    def _known(self, fact: str) -> Mask:
        if fact in self.t.text:
            return self.t.text[fact].known
        return self.t.known[fact]

    def _text_lut(self, fact: str, accept: Any) -> Mask:
        col = self.t.text[fact]
        lut = np.zeros(len(col.vocab) + 1, dtype=np.bool_)  # last slot: missing (-1)
        for s, code in col.vocab.items():
            lut[code] = accept(s)
        return lut[col.codes]

    def cond(self, rule: Rule) -> tuple[Mask, Mask]:
        """``(true, known)`` of a predicate; ``true`` is False wherever unknown."""
        match rule:
            case Eq(fact, value):
                return self.cond(In(fact, (value,)))
            case In(fact, values):
                if fact in self.t.text:
                    wanted = set(values)
                    return self._text_lut(fact, wanted.__contains__), self._known(fact)
                col = self.t.numeric[fact]
                nums = [
                    float(v.toordinal()) if isinstance(v, dt.date) else float(v) for v in values
                ]
                true = col == nums[0] if len(nums) == 1 else np.isin(col, nums)
                return true, self._known(fact)
            case PrefixIn(fact, prefixes):
                return (
                    self._text_lut(fact, lambda s: s.startswith(prefixes)),
                    self._known(fact),
                )
            case Range(fact, lo, hi):
                col = self.t.numeric[fact]

                def num(v: Any) -> float:
                    return float(v.toordinal()) if isinstance(v, dt.date) else float(v)

                if lo is not None and hi is not None:
                    true = (col >= num(lo)) & (col <= num(hi))
                elif lo is not None:
                    true = col >= num(lo)
                else:
                    true = col <= num(hi)
                return true, self._known(fact)
            case YearsBefore(fact, years, date):
                cutoff = years_earlier(resolve_ref(date, self.as_of, self.refs), years)
                return self.t.numeric[fact] <= cutoff.toordinal(), self._known(fact)
            case Certified(name, on):
                known = self.t.known["certifications"]
                certs = self.t.certs.get(name)
                if certs is None:
                    return self.none, known
                day = self._day(on)
                valid = (certs.starts <= day) & (certs.ends >= day)
                return np.asarray(valid.any(axis=0), dtype=np.bool_), known
            case RatioMin(num_f, den_f, low):
                a, b = self.t.numeric[num_f], self.t.numeric[den_f]
                known = self._known(num_f) & (b > 0)
                with np.errstate(divide="ignore", invalid="ignore"):
                    true = known & (a / np.where(known, b, 1.0) >= low)
                return true, known
        raise TypeError(rule)  # pragma: no cover

    def true(self, rule: Rule) -> Mask:
        match rule:
            case All(items):
                out = self.true(items[0]).copy()
                for r in items[1:]:
                    out &= self.true(r)
                return out
            case Any_(items):
                out = self.true(items[0]).copy()
                for r in items[1:]:
                    out |= self.true(r)
                return out
            case Not(item):
                return self.false(item)
        return self.cond(rule)[0]

    def false(self, rule: Rule) -> Mask:
        match rule:
            case All(items):
                out = self.false(items[0]).copy()
                for r in items[1:]:
                    out |= self.false(r)
                return out
            case Any_(items):
                out = self.false(items[0]).copy()
                for r in items[1:]:
                    out &= self.false(r)
                return out
            case Not(item):
                return self.true(item)
        true, known = self.cond(rule)
        return known & ~true

    def codes(self, rule: Rule, dtype: Any = np.int8) -> npt.NDArray[Any]:
        """Per enterprise: ELIGIBLE, NOT_ELIGIBLE or the index of the one unmet criterion."""
        n = self.t.n
        unmet = np.zeros(n, dtype=np.uint8)
        missing = np.zeros(n, dtype=dtype)
        for k, criterion in enumerate(criteria_of(rule)):
            fails = ~self.true(criterion)
            np.add(unmet, fails, out=unmet, casting="unsafe")
            missing[fails] = k
            np.minimum(unmet, 2, out=unmet)  # only 0, 1, 2+ matter; no overflow
        out = np.where(unmet == 0, ELIGIBLE, np.where(unmet == 1, missing, NOT_ELIGIBLE))
        return out.astype(dtype, copy=False)


def _dtype(rules: Sequence[Rule]) -> Any:
    most = max((len(criteria_of(r)) for r in rules), default=0)
    return np.int8 if most <= 127 else np.int16


def match_policy(
    table: PortraitTable,
    rule: Rule,
    as_of: dt.date,
    refs: Mapping[str, dt.date] | None = None,
) -> npt.NDArray[Any]:
    """One policy against all enterprises: a code per enterprise."""
    return _Compiler(table, as_of, refs or {}).codes(rule, _dtype([rule]))


def match_matrix(
    table: PortraitTable,
    rules: Sequence[Rule],
    as_of: dt.date,
    refs: Mapping[str, dt.date] | None = None,
) -> npt.NDArray[Any]:
    """All policies against all enterprises: codes of shape ``(len(rules), table.n)``."""
    dtype = _dtype(rules)
    compiler = _Compiler(table, as_of, refs or {})
    out = np.empty((len(rules), table.n), dtype=dtype)
    for j, rule in enumerate(rules):
        out[j] = compiler.codes(rule, dtype)
    return out


# --------------------------------------------------------------------------------------------
# One enterprise at a time: numpy's per-call overhead dominates for a single row, so rules are
# also compiled to plain closures (three-valued, reference dates resolved once). They follow
# ``rules.eval_predicate`` exactly and are property-tested against it like the masks.

Truth = bool | None
Check = Callable[[Mapping[str, Any]], Truth]


def _get(portrait: Mapping[str, Any], fact: str) -> Any:
    value = portrait.get(fact)
    return value if present(value) else None


def _scalar(rule: Rule, as_of: dt.date, refs: Mapping[str, dt.date]) -> Check:
    match rule:
        case All(items):
            parts = [_scalar(r, as_of, refs) for r in items]

            def all_(p: Mapping[str, Any]) -> Truth:
                out: Truth = True
                for f in parts:
                    t = f(p)
                    if t is False:
                        return False
                    if t is None:
                        out = None
                return out

            return all_
        case Any_(items):
            parts = [_scalar(r, as_of, refs) for r in items]

            def any_(p: Mapping[str, Any]) -> Truth:
                out: Truth = False
                for f in parts:
                    t = f(p)
                    if t is True:
                        return True
                    if t is None:
                        out = None
                return out

            return any_
        case Not(item):
            inner = _scalar(item, as_of, refs)

            def not_(p: Mapping[str, Any]) -> Truth:
                t = inner(p)
                return None if t is None else not t

            return not_
        case Eq(fact, value):
            return _scalar(In(fact, (value,)), as_of, refs)
        case In(fact, values):
            numeric = FACTS[fact].type in (FactType.NUMBER, FactType.INT)
            wanted: frozenset[Any] = (
                frozenset(float(cast("int | float", v)) for v in values)
                if numeric
                else frozenset(values)
            )

            def in_(p: Mapping[str, Any]) -> Truth:
                v = _get(p, fact)
                if v is None:
                    return None
                return (float(v) if numeric else v) in wanted

            return in_
        case PrefixIn(fact, prefixes):

            def prefix_in(p: Mapping[str, Any]) -> Truth:
                v = _get(p, fact)
                return None if v is None else v.startswith(prefixes)

            return prefix_in
        case Range(fact, lo, hi):
            is_date = FACTS[fact].type is FactType.DATE
            # Dates compare as dates, numbers as floats; the parser guarantees which by fact type.
            lo_: Any = lo if lo is None or is_date else float(cast("int | float", lo))
            hi_: Any = hi if hi is None or is_date else float(cast("int | float", hi))

            def range_(p: Mapping[str, Any]) -> Truth:
                v = _get(p, fact)
                if v is None:
                    return None
                x = v if is_date else float(v)
                return (lo_ is None or x >= lo_) and (hi_ is None or x <= hi_)

            return range_
        case YearsBefore(fact, years, date):
            cutoff = years_earlier(resolve_ref(date, as_of, refs), years)

            def years_before(p: Mapping[str, Any]) -> Truth:
                v = _get(p, fact)
                return None if v is None else v <= cutoff

            return years_before
        case Certified(name, on):
            day = resolve_ref(on, as_of, refs)

            def certified(p: Mapping[str, Any]) -> Truth:
                certs = _get(p, "certifications")
                if certs is None:
                    return None
                return any(c.name == name and c.valid_from <= day <= c.valid_to for c in certs)

            return certified
        case RatioMin(num, den, low):

            def ratio_min(p: Mapping[str, Any]) -> Truth:
                a, b = _get(p, num), _get(p, den)
                if a is None or b is None or float(b) <= 0:
                    return None
                return float(a) / float(b) >= low

            return ratio_min
    raise TypeError(rule)  # pragma: no cover


class CompiledPolicies:
    """Policies compiled once for one evaluation day, to match single enterprises quickly."""

    def __init__(
        self,
        rules: Sequence[Rule],
        as_of: dt.date,
        refs: Mapping[str, dt.date] | None = None,
    ) -> None:
        refs = refs or {}
        self.rules = list(rules)
        self.as_of = as_of
        self.refs = refs
        self.dtype = _dtype(self.rules)
        self._checks = [[_scalar(c, as_of, refs) for c in criteria_of(rule)] for rule in self.rules]

    def enterprise(self, portrait: Mapping[str, Any]) -> npt.NDArray[Any]:
        """One (changed) enterprise against all policies: a code per policy."""
        codes = []
        for checks in self._checks:
            missing = ELIGIBLE
            for k, check in enumerate(checks):
                if check(portrait) is not True:
                    if missing != ELIGIBLE:
                        missing = NOT_ELIGIBLE
                        break
                    missing = k
            codes.append(missing)
        return np.array(codes, dtype=self.dtype)

    def matrix(self, table: PortraitTable) -> npt.NDArray[Any]:
        return match_matrix(table, self.rules, self.as_of, self.refs)


def match_enterprise(
    portrait: Mapping[str, Any],
    rules: Sequence[Rule],
    as_of: dt.date,
    refs: Mapping[str, dt.date] | None = None,
) -> npt.NDArray[Any]:
    """One enterprise against all policies (compiles the rules; reuse ``CompiledPolicies``)."""
    return CompiledPolicies(rules, as_of, refs).enterprise(portrait)

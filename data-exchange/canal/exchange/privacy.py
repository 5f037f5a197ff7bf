"""Differential privacy for compute-to-data answers, on OpenDP (docs/decisions/0043).

The sandbox computes, per group, exact counts and sums of values clamped to the bounds the
provider declared; nothing of that leaves this module without noise. Every released figure
comes from an OpenDP measurement whose scale is set by the figure's *sensitivity* — how much
one person can move it (``max_rows_per_person`` rows, each clamped to its column's bounds) —
and the query's share of ε, never by the figure's size: a sum centred near zero gets the same
noise as any other. OpenDP's privacy map states the ε (and δ) each measurement costs; the
query's cost is their sum (sequential composition), charged to the dataset's budget.

Group keys come from the categories the provider declared public (every declared key is
answered, an empty group like any other), or, for a column without declared categories,
through OpenDP's Laplace threshold (a group appears only when its noisy count clears a
threshold set so that a group of a few people shows with probability δ). Nothing reports how
many groups were left out.

A provider may opt a non-personal column out of noise (``Settings.exact``): sums and value
counts of that column are then released as computed, cost no ε and carry no guarantee; row
counts (and so which groups are shown or hidden) stay noisy. The operator sees the opt-out in
review.

Everything after the measurements — averages as noisy sum / noisy count, clamping to the
bounds, rounding to what the noise allows, hiding values of groups whose *noisy* count is
below the minimum cohort, ORDER BY, LIMIT — is post-processing and costs nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import opendp.prelude as dp

dp.enable_features("contrib")

# Each threshold release may show a group of up to ``max_rows_per_person`` rows' worth of
# people with at most this probability (the δ of (ε, δ)-DP); recorded in the budget.
DELTA_PER_QUERY = 1e-7
CONFIDENCE = 0.95  # margins of error are stated at this level
MAX_CATEGORIES = 200
NUMERIC_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "REAL",
    "DECIMAL",
)


def is_numeric(type_name: str) -> bool:
    return str(type_name).upper().startswith(NUMERIC_TYPES)


@dataclass(frozen=True)
class Settings:
    """What the provider declared for one version: how many rows one person may contribute,
    bounds for numeric columns (values are clamped to them), and the public categories of
    columns answers may be grouped by. ``confirmed`` once the provider has accepted them."""

    max_rows_per_person: int = 1
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)
    confirmed: bool = False
    # Columns the provider opted out of noise for (never one profiling flagged as personal):
    # their sums and value counts are released exactly. Row counts always carry noise.
    exact: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> Settings:
        raw = raw or {}
        return cls(
            max_rows_per_person=max(1, int(raw.get("max_rows_per_person") or 1)),
            bounds={
                str(k): (float(v[0]), float(v[1])) for k, v in (raw.get("bounds") or {}).items()
            },
            categories={
                str(k): [str(x) for x in v] for k, v in (raw.get("categories") or {}).items()
            },
            confirmed=bool(raw.get("confirmed")),
            exact=sorted(str(x) for x in raw.get("exact") or []),
        )

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "max_rows_per_person": self.max_rows_per_person,
            "bounds": {k: [lo, hi] for k, (lo, hi) in self.bounds.items()},
            "categories": self.categories,
            "confirmed": self.confirmed,
        }
        if self.exact:  # only when set: earlier answers' cache keys stay as they were
            out["exact"] = list(self.exact)
        return out

    def is_exact(self, stat: Statistic) -> bool:
        """Whether a statistic is released without noise: a sum or value count of a column
        the provider opted out for. The row count never is."""
        return stat.kind in ("sum", "count") and stat.column in self.exact


def _nice(value: float, up: bool) -> float:
    """``value`` rounded outward to one significant digit (29,987 → 30,000; 2,013 → 2,000):
    a proposal that does not publish the exact minimum or maximum."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    unit = 10 ** math.floor(math.log10(abs(value)))
    steps = math.ceil(value / unit) if up else math.floor(value / unit)
    return float(steps * unit)


def propose(
    profile: dict[str, Any], usable: set[str], values: dict[str, list[str]]
) -> dict[str, Any]:
    """Settings profiling proposes (not confirmed): bounds from each numeric column's range,
    rounded outward; categories from the distinct values of low-cardinality text columns
    (``values``, already limited to those seen often enough). One row per person."""
    bounds: dict[str, tuple[float, float]] = {}
    for column in profile.get("columns", []):
        name = column["name"]
        if name not in usable or not is_numeric(column["type"]):
            continue
        try:
            low, high = float(column["min"]), float(column["max"])
        except (TypeError, ValueError):
            continue
        lo, hi = _nice(low, up=False), _nice(high, up=True)
        if lo > 0 and lo <= hi / 10:
            lo = 0.0
        if hi <= lo:
            hi = lo + 1
        bounds[name] = (lo, hi)
    categories = {k: v for k, v in values.items() if k in usable and v}
    return Settings(1, bounds, categories, confirmed=False).as_json()


# --- the query as the DP layer sees it ------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    kind: str  # rows (count(*)) | count (non-null values of a column) | sum | avg
    column: str | None
    name: str


@dataclass
class Spec:
    """A checked query: group columns, measures, and how the output is laid out."""

    groups: list[str]
    measures: list[Measure]
    # Output columns in SELECT order: ("group", index into groups) or ("measure", index).
    outputs: list[tuple[str, int]]
    names: list[str]
    order: list[tuple[int, bool]] = field(default_factory=list)  # (output position, descending)
    limit: int | None = None

    def threshold(self, settings: Settings) -> bool:
        """Whether group keys are released through a DP threshold (some group column has no
        declared public categories)."""
        return any(g not in settings.categories for g in self.groups)

    def key(self) -> str:
        return json.dumps(
            {
                "g": self.groups,
                "m": [(m.kind, m.column) for m in self.measures],
            },
            ensure_ascii=False,
        )


@dataclass(frozen=True)
class Statistic:
    """One vector the sandbox computes per group, and what one person can change in it."""

    kind: str  # rows | count | sum
    column: str | None

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.column or ''}"


def statistics(spec: Spec) -> list[Statistic]:
    """The distinct statistics behind the measures, row count first (always measured: it
    decides which groups are shown)."""
    wanted = [Statistic("rows", None)]
    for m in spec.measures:
        if m.kind in ("sum", "avg"):
            wanted.append(Statistic("sum", m.column))
        if m.kind in ("count", "avg"):
            wanted.append(Statistic("count", m.column))
    unique: list[Statistic] = []
    for s in wanted:
        if s not in unique:
            unique.append(s)
    return unique


# --- release ---------------------------------------------------------------------------------


@dataclass
class Released:
    names: list[str]
    rows: list[list[Any]]
    margins: list[list[float | None]]  # per cell: ± at CONFIDENCE, None for group keys
    hidden: list[bool]  # per row: the group's noisy count is below the minimum cohort
    epsilon: float
    delta: float
    rows_touched: int  # noisy: the sum of the released groups' noisy counts


def _laplace_margin(scale: float) -> float:
    """Half-width holding a Laplace(scale) error with probability CONFIDENCE."""
    return scale * math.log(1 / (1 - CONFIDENCE))


def _float_measurement(scale: float) -> dp.Measurement:
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)
    return dp.m.make_laplace(*space, scale=scale)


def _int_measurement(scale: float) -> dp.Measurement:
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int)
    return dp.m.make_laplace(*space, scale=scale)


def _threshold_measurement(scale: float, k: int) -> dp.Measurement:
    domain = dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=int))
    metric = dp.l01inf_distance(dp.absolute_distance(T=int))

    def make(threshold: float) -> dp.Measurement:
        return dp.m.make_laplace_threshold(domain, metric, scale=scale, threshold=int(threshold))

    # The smallest threshold whose δ (OpenDP's privacy map) is within DELTA_PER_QUERY.
    threshold = dp.binary_search(
        lambda t: make(t).map((k, k, k))[1] <= DELTA_PER_QUERY, bounds=(1, 2**31 - 1)
    )
    return make(threshold)


def step_for(margin: float, integral: bool) -> float:
    """Rounding step a value with this margin deserves: two significant digits of the margin
    (±1,234 → hundreds), whole numbers for counts."""
    if margin <= 0 or not math.isfinite(margin):
        return 1.0 if integral else 0.01
    step = 10.0 ** (math.floor(math.log10(margin)) - 1)
    return max(step, 1.0) if integral else step


def rounded(value: float, margin: float, integral: bool) -> float | int:
    step = step_for(margin, integral)
    out = round(value / step) * step
    if integral or step >= 1:
        return round(out)
    digits = max(0, -math.floor(math.log10(step)))
    return float(Decimal(str(out)).quantize(Decimal(1).scaleb(-digits)))


@dataclass
class Noisy:
    """The measured statistics: what the budget paid for, and all any answer is made from.
    Kept (as JSON) so the same query is answered again from the same noise."""

    keys: list[tuple[str, ...]]
    values: dict[str, dict[tuple[str, ...], float]]
    scales: dict[str, float]
    epsilon: float
    delta: float

    def as_json(self) -> dict[str, Any]:
        return {
            "keys": [list(k) for k in self.keys],
            "values": {s: [v[k] for k in self.keys] for s, v in self.values.items()},
            "scales": self.scales,
            "epsilon": self.epsilon,
            "delta": self.delta,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Noisy:
        keys = [tuple(k) for k in raw["keys"]]
        return cls(
            keys=keys,
            values={s: dict(zip(keys, v, strict=True)) for s, v in raw["values"].items()},
            scales={s: float(v) for s, v in raw["scales"].items()},
            epsilon=float(raw["epsilon"]),
            delta=float(raw["delta"]),
        )


def measure(
    spec: Spec,
    exact: dict[tuple[str, ...], dict[str, float]],
    settings: Settings,
    *,
    epsilon: float,
) -> Noisy:
    """Noisy statistics from the exact ones, through OpenDP measurements.

    ``exact`` maps a group key (strings; ``()`` without GROUP BY) to its statistics by
    ``Statistic.name``. The query's ε is split evenly over the statistics measured; each
    measurement's scale is its sensitivity divided by its share. The ε and δ returned are what
    OpenDP's privacy maps state for the measurements made (their sum: sequential composition).
    """
    stats = statistics(spec)
    # The query's ε is shared by the noisy statistics only (the row count always is one).
    share = epsilon / len([s for s in stats if not settings.is_exact(s)])
    k = settings.max_rows_per_person
    spent_epsilon = 0.0
    spent_delta = 0.0
    threshold = bool(spec.groups) and spec.threshold(settings)
    if spec.groups and not threshold:
        keys = _product([settings.categories[g] for g in spec.groups])
    else:
        keys = [()]
    values: dict[str, dict[tuple[str, ...], float]] = {}
    scales: dict[str, float] = {}
    if threshold:
        # Unknown keys: a group is released only when its noisy count clears a threshold
        # (OpenDP's Laplace threshold; the δ it states is the chance a small group shows).
        scale = k / share
        measurement = _threshold_measurement(scale, k)
        encoded = {
            json.dumps(list(key), ensure_ascii=False): int(v.get("rows:", 0))
            for key, v in exact.items()
        }
        out = measurement(encoded)
        eps, delta = measurement.map((k, k, k))
        spent_epsilon += eps
        spent_delta += delta
        keys = sorted(tuple(json.loads(s)) for s in out)
        values["rows:"] = {tuple(json.loads(s)): float(v) for s, v in out.items()}
        scales["rows:"] = scale
    for stat in stats:
        if stat.name in values:
            continue
        exact_values = [float(exact.get(key, {}).get(stat.name, 0.0) or 0.0) for key in keys]
        if settings.is_exact(stat):
            # The provider's opt-out for a non-personal column: no measurement, no ε, and a
            # margin of 0 (shown as exact).
            values[stat.name] = dict(zip(keys, exact_values, strict=True))
            scales[stat.name] = 0.0
            continue
        if stat.kind == "sum":
            lo, hi = settings.bounds[str(stat.column)]
            sensitivity = k * max(abs(lo), abs(hi))
            scale = sensitivity / share
            float_measurement = _float_measurement(scale)
            answers = float_measurement(exact_values) if keys else []
            spent_epsilon += float_measurement.map(sensitivity)
        else:
            scale = k / share
            int_measurement = _int_measurement(scale)
            answers = int_measurement([int(v) for v in exact_values]) if keys else []
            spent_epsilon += int_measurement.map(k)
        values[stat.name] = dict(zip(keys, (float(a) for a in answers), strict=True))
        scales[stat.name] = scale
    return Noisy(keys, values, scales, spent_epsilon, spent_delta)


def present(spec: Spec, noisy: Noisy, settings: Settings, *, min_cohort: int) -> Released:
    """The answer from noisy statistics: post-processing only, so it costs no budget. Values
    of a group whose *noisy* count is below the minimum cohort are hidden (the group stays
    listed: which groups are hidden says nothing the noisy count does not)."""
    rows: list[list[Any]] = []
    margins: list[list[float | None]] = []
    hidden: list[bool] = []
    touched = 0.0
    for key in noisy.keys:
        count_rows = noisy.values["rows:"][key]
        touched += max(0.0, count_rows)
        few = count_rows < min_cohort
        row: list[Any] = []
        margin_row: list[float | None] = []
        for kind, index in spec.outputs:
            if kind == "group":
                row.append(key[index])
                margin_row.append(None)
                continue
            value, margin, integral = _measure_value(
                spec.measures[index], key, noisy.values, noisy.scales, settings
            )
            if few:
                row.append(None)
                margin_row.append(None)
            else:
                row.append(rounded(value, margin, integral))
                margin_row.append(rounded(margin, margin / 10, integral))
        rows.append(row)
        margins.append(margin_row)
        hidden.append(few)
    order = list(range(len(rows)))
    for position, descending in reversed(spec.order):
        # Stable sorts, last key first; hidden values (None) always go last.
        column = [row[position] for row in rows]
        order.sort(key=lambda i: _sort_key(column[i]), reverse=descending)
        order.sort(key=lambda i: column[i] is None)
    if spec.limit is not None:
        order = order[: spec.limit]
    z = math.log(1 / (1 - CONFIDENCE))
    touched_margin = noisy.scales["rows:"] * z * max(1, len(noisy.keys))
    return Released(
        names=list(spec.names),
        rows=[rows[i] for i in order],
        margins=[margins[i] for i in order],
        hidden=[hidden[i] for i in order],
        epsilon=noisy.epsilon,
        delta=noisy.delta,
        rows_touched=int(rounded(touched, touched_margin, True)),
    )


def release(
    spec: Spec,
    exact: dict[tuple[str, ...], dict[str, float]],
    settings: Settings,
    *,
    epsilon: float,
    min_cohort: int,
) -> Released:
    """Measure, then present (tests and the benchmark use the two steps together)."""
    noisy = measure(spec, exact, settings, epsilon=epsilon)
    return present(spec, noisy, settings, min_cohort=min_cohort)


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (0, value)
    return (1, str(value))


def _measure_value(
    measure: Measure,
    key: tuple[str, ...],
    noisy: dict[str, dict[tuple[str, ...], float]],
    scales: dict[str, float],
    settings: Settings,
) -> tuple[float, float, bool]:
    """(value, margin, integral) of one measure in one group, from the noisy statistics."""
    z = math.log(1 / (1 - CONFIDENCE))
    if measure.kind == "rows":
        name = "rows:"
        return max(0.0, noisy[name][key]), scales[name] * z, True
    if measure.kind == "count":
        name = f"count:{measure.column}"
        return max(0.0, noisy[name][key]), scales[name] * z, True
    total = noisy[f"sum:{measure.column}"][key]
    total_margin = scales[f"sum:{measure.column}"] * z
    if measure.kind == "sum":
        return total, total_margin, False
    lo, hi = settings.bounds[str(measure.column)]
    count = noisy[f"count:{measure.column}"][key]
    count_margin = scales[f"count:{measure.column}"] * z
    if count < 1:
        return (lo + hi) / 2, (hi - lo) / 2, False
    mean = min(hi, max(lo, total / count))
    # First-order error of a ratio of two noisy figures; never more than the bounds allow.
    margin = min((hi - lo) / 2, (total_margin + abs(mean) * count_margin) / count)
    return mean, margin, False


def _product(lists: list[list[str]]) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = [()]
    for values in lists:
        keys = [(*k, v) for k in keys for v in values]
    return keys

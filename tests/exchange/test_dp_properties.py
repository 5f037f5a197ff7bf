"""Property tests of the differentially private release (canal.exchange.privacy): for random
datasets and every supported aggregate the error follows the declared Laplace mechanism, and
two datasets that differ in one person give answer distributions within e^ε of each other.

Many draws come from one ``measure`` call: a query grouped by N public categories whose groups
all hold the same rows is N independent draws of the same mechanism."""

from __future__ import annotations

import math
import statistics

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canal.exchange import privacy

DRAWS = 4000


def _spec(kind: str, column: str | None) -> privacy.Spec:
    return privacy.Spec(
        groups=["g"],
        measures=[privacy.Measure(kind, column, "m")],
        outputs=[("group", 0), ("measure", 0)],
        names=["g", "m"],
    )


def _draws(
    kind: str,
    values: list[float],
    bounds: tuple[float, float],
    rows_per_person: int,
    epsilon: float,
) -> tuple[list[float], privacy.Noisy, privacy.Spec]:
    keys = [str(i) for i in range(DRAWS)]
    cfg = privacy.Settings(rows_per_person, {"v": bounds}, {"g": keys}, True)
    lo, hi = bounds
    clamped = [min(hi, max(lo, v)) for v in values]
    stats = {"rows:": float(len(values)), "count:v": float(len(values)), "sum:v": sum(clamped)}
    spec = _spec(kind, None if kind == "rows" else "v")
    exact = {(k,): stats for k in keys}
    noisy = privacy.measure(spec, exact, cfg, epsilon=epsilon)
    out = privacy.present(spec, noisy, cfg, min_cohort=-(10**9))
    return [float(r[1]) for r in out.rows], noisy, spec


values_st = st.lists(
    st.floats(min_value=-50, max_value=250, allow_nan=False), min_size=1, max_size=60
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=values_st,
    rows_per_person=st.integers(min_value=1, max_value=5),
    epsilon=st.sampled_from([0.1, 0.5, 1.0, 2.0]),
)
def test_sum_error_is_laplace_at_the_declared_scale(values, rows_per_person, epsilon):
    bounds = (0.0, 200.0)
    answers, noisy, _ = _draws("sum", values, bounds, rows_per_person, epsilon)
    exact = sum(min(200.0, max(0.0, v)) for v in values)
    # Two statistics (rows, sum): the sum gets half the ε; sensitivity k × max(|lo|, |hi|).
    scale = rows_per_person * 200.0 / (epsilon / 2)
    assert math.isclose(noisy.scales["sum:v"], scale)
    assert math.isclose(noisy.epsilon, epsilon, rel_tol=1e-9)
    errors = [a - exact for a in answers]
    # Laplace(b): E|X| = b, P(|X| > b ln 20) = 5 %; rounding moves values by < b/10.
    assert abs(statistics.fmean(abs(e) for e in errors) / scale - 1) < 0.1
    outside = sum(abs(e) > scale * math.log(20) * 1.02 for e in errors) / len(errors)
    assert 0.03 < outside < 0.07
    # The noise does not shrink when the value is near zero (the centring attack).
    assert abs(statistics.fmean(errors)) < 0.1 * scale


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(min_value=0, max_value=500),
    rows_per_person=st.integers(min_value=1, max_value=5),
    epsilon=st.sampled_from([0.1, 0.5, 1.0]),
)
def test_count_error_is_discrete_laplace_at_the_declared_scale(n, rows_per_person, epsilon):
    answers, noisy, _ = _draws("rows", [1.0] * n, (0.0, 1.0), rows_per_person, epsilon)
    scale = rows_per_person / epsilon  # one statistic: all the ε
    assert math.isclose(noisy.scales["rows:"], scale)
    assert all(float(a).is_integer() and a >= 0 for a in answers)  # counts, clamped at 0
    if n > 10 * scale:  # away from the clamp at zero
        errors = [a - n for a in answers]
        # Discrete Laplace(b): P(X = x) ∝ α^|x| with α = e^(-1/b), so E|X| = 2α / (1 - α²).
        alpha = math.exp(-1 / scale)
        expected = 2 * alpha / (1 - alpha**2)
        assert abs(statistics.fmean(abs(e) for e in errors) / expected - 1) < 0.1
        assert abs(statistics.fmean(errors)) < 0.15 * scale


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.floats(min_value=0, max_value=100), min_size=200, max_size=400),
    epsilon=st.sampled_from([0.5, 1.0, 2.0]),
)
def test_average_stays_within_bounds_and_its_stated_margin(values, epsilon):
    answers, noisy, spec = _draws("avg", values, (0.0, 100.0), 1, epsilon)
    exact = statistics.fmean(values)
    assert all(0 <= a <= 100 for a in answers)
    cfg = privacy.Settings(1, {"v": (0.0, 100.0)}, {"g": [str(i) for i in range(DRAWS)]}, True)
    shown = privacy.present(spec, noisy, cfg, min_cohort=-(10**9))
    covered = sum(
        abs(float(r[1]) - exact) <= float(m[1]) * 1.05
        for r, m in zip(shown.rows, shown.margins, strict=True)
    ) / len(shown.rows)
    assert covered >= 0.9  # the margin in words holds (first-order; conservative)


def _histogram(answers: list[float], edges: list[float]) -> list[int]:
    counts = [0] * (len(edges) - 1)
    for a in answers:
        for i in range(len(edges) - 1):
            if edges[i] <= a < edges[i + 1]:
                counts[i] += 1
                break
    return counts


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.floats(min_value=0, max_value=10), min_size=5, max_size=40),
    kind=st.sampled_from(["sum", "rows", "count"]),
)
def test_neighbouring_datasets_give_distributions_within_e_to_the_epsilon(values, kind):
    """D and D' differ in one person (k rows at the upper bound): for every output bin with
    enough mass, P[D] / P[D'] stays within e^ε (plus sampling slack)."""
    epsilon, k, bounds = 1.0, 2, (0.0, 10.0)
    with_person = values + [10.0] * k
    a, noisy_a, _ = _draws(kind, values, bounds, k, epsilon)
    b, _, _ = _draws(kind, with_person, bounds, k, epsilon)
    a += _draws(kind, values, bounds, k, epsilon)[0] * 4
    b += _draws(kind, with_person, bounds, k, epsilon)[0] * 4
    name = {"sum": "sum:v", "rows": "rows:", "count": "count:v"}[kind]
    scale = noisy_a.scales[name]
    # The ε this statistic got: its share of the query's ε.
    share = epsilon / len(noisy_a.scales)
    centre = statistics.fmean(a)
    edges = [centre + scale * (i / 2) for i in range(-8, 9)]
    ha, hb = _histogram(a, edges), _histogram(b, edges)
    checked = 0
    for x, y in zip(ha, hb, strict=True):
        if min(x, y) >= 1000:  # a few % sampling error per bin: far inside the slack
            checked += 1
            assert max(x / y, y / x) <= math.exp(share) * 1.3
    assert checked >= 3

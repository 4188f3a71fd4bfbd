"""Tests for harness.base.stats: run-level verdicts must not cry wolf on a noisy machine, yet see real drops."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from harness.base.stats import Interval, Verdict, bootstrap_ratio_ci, decide, enough_runs, summarize_runs

PAIRS = 200
STEPS = 12
STEP_CV = 0.02


def _simulate(
    rng: np.random.Generator, repeats: int, cv: float, level: float = 100.0
) -> tuple[list[float], npt.NDArray[np.float64]]:
    """Runs as on the shared machine: a lognormal between-run factor (CV `cv`) times ~2% step-to-step noise.

    Returns one value per run (the mean of its steps) and the per-step samples, shape (repeats, STEPS).
    """
    sigma = math.sqrt(math.log1p(cv**2))
    factor = rng.lognormal(-(sigma**2) / 2.0, sigma, size=repeats)
    steps = level * factor[:, None] * rng.normal(1.0, STEP_CV, size=(repeats, STEPS))
    return steps.mean(axis=1).tolist(), steps


def _pooled_slower(base_steps: npt.NDArray[np.float64], new_steps: npt.NDArray[np.float64]) -> bool:
    """The replaced method: pool every step of every run and test them as if they were independent."""
    p_value = stats.mannwhitneyu(new_steps.ravel(), base_steps.ravel(), alternative="two-sided").pvalue
    return bool(p_value < 0.01 and np.median(new_steps) / np.median(base_steps) < 0.95)


@pytest.mark.parametrize("repeats", [3, 8])
def test_aa_false_alarms_run_level_within_1_percent(repeats: int) -> None:
    rng = np.random.default_rng(20240 + repeats)
    alarms = 0
    for _ in range(PAIRS):
        cv = rng.uniform(0.15, 0.25)
        base, _ = _simulate(rng, repeats, cv)
        new, _ = _simulate(rng, repeats, cv)
        alarms += decide(base, new, threshold=0.05, alpha=0.01).verdict == "slower"
    assert alarms <= PAIRS // 100


@pytest.mark.parametrize("repeats", [3, 8])
def test_aa_false_alarms_pooled_steps_exceed_1_percent(repeats: int) -> None:
    """Documents why pooling per-step samples was dropped: it takes between-run luck for a regression."""
    rng = np.random.default_rng(20240 + repeats)
    alarms = 0
    for _ in range(PAIRS):
        cv = rng.uniform(0.15, 0.25)
        _, base_steps = _simulate(rng, repeats, cv)
        _, new_steps = _simulate(rng, repeats, cv)
        alarms += _pooled_slower(base_steps, new_steps)
    assert alarms > PAIRS // 100


def test_power_detects_20_percent_drop() -> None:
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(PAIRS):
        base, _ = _simulate(rng, 5, 0.05)
        new, _ = _simulate(rng, 5, 0.05, level=80.0)
        hits += decide(base, new).verdict == "slower"
    assert hits >= 0.9 * PAIRS


def test_decide_inconclusive_with_one_run_a_side() -> None:
    v = decide([100.0], [50.0])
    assert v.verdict == "inconclusive"
    assert v.p_value is None and v.low is None and v.high is None
    assert (v.n_base, v.n_new) == (1, 1)
    assert v.ratio == pytest.approx(0.5)
    assert "1 run" in v.reason


def test_decide_inconclusive_with_empty_side() -> None:
    v = decide([], [100.0, 101.0])
    assert v.verdict == "inconclusive" and math.isnan(v.ratio) and v.n_base == 0


def test_decide_inconclusive_for_noisy_apparent_drop() -> None:
    spread = 0.3 / math.sqrt(2.0)  # two values with a 30% CV
    base = [100.0 * (1 - spread), 100.0 * (1 + spread)]
    new = [0.8 * x for x in base]
    assert np.std(base, ddof=1) / np.mean(base) == pytest.approx(0.3)
    v = decide(base, new)
    assert v.verdict == "inconclusive"
    assert v.ratio == pytest.approx(0.8)
    assert v.low is not None and v.high is not None and v.low < 0.95 and v.high > 1.0
    assert "2 runs a side" in v.reason


def test_decide_unchanged_for_tight_sets() -> None:
    rng = np.random.default_rng(3)
    base = (100.0 * rng.lognormal(0.0, 0.01, size=8)).tolist()
    new = (100.0 * rng.lognormal(0.0, 0.01, size=8)).tolist()
    v = decide(base, new)
    assert v.verdict == "unchanged", v.reason
    assert v.low is not None and v.high is not None and 0.95 <= v.low <= v.ratio <= v.high <= 1.05


@pytest.mark.parametrize(
    ("base", "new", "expected", "p_value"),
    [
        ([100.0] * 3, [100.0] * 3, "unchanged", 1.0),
        ([100.0] * 3, [80.0] * 3, "slower", 0.0),
        ([100.0] * 3, [120.0] * 3, "faster", 0.0),
        ([100.0] * 3, [99.0] * 3, "unchanged", 0.0),
        ([0.1] * 5, [0.1] * 4, "unchanged", 1.0),
    ],
)
def test_decide_identical_values_never_raise(
    base: list[float], new: list[float], expected: str, p_value: float
) -> None:
    v = decide(base, new)
    assert v.verdict == expected
    assert v.p_value == p_value
    assert v.low == v.high == pytest.approx(v.ratio)


def test_decide_one_constant_side() -> None:
    v = decide([100.0, 100.0, 100.0], [70.0, 71.0, 69.0])
    assert v.verdict == "slower"
    assert v.low is not None and v.high is not None and v.low < v.ratio < v.high


def test_decide_matches_scipy_welch_on_logs() -> None:
    base, new = [100.0, 120.0, 90.0, 110.0], [80.0, 95.0, 70.0]
    v = decide(base, new)
    expected = stats.ttest_ind(np.log(new), np.log(base), equal_var=False).pvalue
    assert v.p_value == pytest.approx(expected)
    assert v.ratio == pytest.approx(stats.gmean(new) / stats.gmean(base))


def test_decide_faster_and_is_frozen() -> None:
    v = decide([100.0, 101.0, 99.0, 100.5], [130.0, 131.0, 129.0, 130.5])
    assert isinstance(v, Verdict) and v.verdict == "faster"
    with pytest.raises(AttributeError):
        v.verdict = "slower"  # type: ignore[misc]


@pytest.mark.parametrize("bad", [[100.0, 0.0], [100.0, -5.0], [100.0, math.nan], [100.0, math.inf]])
def test_decide_rejects_bad_values(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        decide([100.0, 101.0], bad)


def test_summarize_interval_contains_median() -> None:
    rng = np.random.default_rng(11)
    for n in range(2, 13):
        for _ in range(50):
            values = (100.0 * rng.lognormal(0.0, 0.25, size=n)).tolist()
            s = summarize_runs(values)
            assert s.low is not None and s.high is not None
            assert s.low <= s.median <= s.high


def test_summarize_widens_with_spread_and_narrows_with_n() -> None:
    tight = summarize_runs([98.0, 100.0, 102.0])
    loose = summarize_runs([80.0, 100.0, 120.0])
    more = summarize_runs([98.0, 100.0, 102.0] * 3)
    assert tight.half_width is not None and loose.half_width is not None and more.half_width is not None
    assert loose.half_width > tight.half_width > more.half_width


def test_summarize_cv_matches_numpy() -> None:
    values = [100.0, 80.0, 130.0, 95.0]
    s = summarize_runs(values)
    assert s == Interval(n=4, median=97.5, low=s.low, high=s.high, cv=s.cv, half_width=s.half_width)
    assert s.cv == pytest.approx(np.std(values, ddof=1) / np.mean(values))
    assert s.half_width == pytest.approx((s.high - s.low) / 2 / 97.5)  # type: ignore[operator]


def test_summarize_single_run_has_no_interval() -> None:
    assert summarize_runs([42.0]) == Interval(n=1, median=42.0, low=None, high=None, cv=None, half_width=None)


@pytest.mark.parametrize("bad", [[], [0.0], [100.0, -1.0], [100.0, math.nan]])
def test_summarize_rejects_bad_values(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        summarize_runs(bad)


def test_enough_runs_stops_at_min_when_tight() -> None:
    values = [100.0, 100.5, 99.5, 100.2, 99.8]
    assert not enough_runs(values[:2], 0.05, min_runs=3, max_runs=10)
    assert enough_runs(values[:3], 0.05, min_runs=3, max_runs=10)


def test_enough_runs_continues_to_max_when_noisy() -> None:
    values = [100.0, 60.0, 140.0, 70.0, 130.0, 65.0, 135.0, 100.0]
    needed = [enough_runs(values[:n], 0.05, min_runs=3, max_runs=8) for n in range(1, len(values) + 1)]
    assert needed == [False] * 7 + [True]


def test_bootstrap_ratio_ci_brackets_ratio_and_is_seeded() -> None:
    rng = np.random.default_rng(5)
    base = (100.0 * rng.lognormal(0.0, 0.05, size=60)).tolist()
    new = (80.0 * rng.lognormal(0.0, 0.05, size=60)).tolist()
    low, high = bootstrap_ratio_ci(base, new)
    assert low < float(np.median(new) / np.median(base)) < high
    assert 0.7 < low < high < 0.9
    assert bootstrap_ratio_ci(base, new, seed=1) == bootstrap_ratio_ci(base, new, seed=1)

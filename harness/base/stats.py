"""Run-level statistics for benchmark verdicts.

On a noisy shared machine, repeats of one configuration (each a separate process, a "run") differ by 15-50% from
each other, while steps inside one run differ by ~2%. Steps of one run share that run's luck (placement, frequency,
neighbours), so they are not independent samples: pooling them makes any two runs look "significantly" different.
The run is therefore the unit of replication: each run contributes ONE value (its throughput, measured tokens /
measured seconds), and every verdict here is computed from those values only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = ["Interval", "Verdict", "bootstrap_ratio_ci", "decide", "decide_paired", "decide_rounds", "enough_runs",
           "summarize_runs"]
# A paired verdict needs this many rounds in which both configurations ran (two pairs leave one degree of freedom).
MIN_PAIRS = 3

# Below this standard error (in log units, i.e. a relative 1e-12) the runs are treated as exactly equal: the
# arithmetic of identical values leaves ulp-sized residues that must not turn into a t statistic.
_EXACT = 1e-12
# Bootstrap resamples are drawn in chunks of about this many values, so per-step inputs cannot exhaust memory.
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Interval:
    """Run-level summary of one configuration: the typical value and how sure we are of it."""

    n: int  # runs
    median: float
    low: float | None  # `confidence` interval of the typical (geometric-mean) value; None when n < 2
    high: float | None
    cv: float | None  # sample std / mean across runs; None when n < 2
    half_width: float | None  # (high - low) / 2 / median, relative; None when n < 2


@dataclass(frozen=True)
class Verdict:
    """Outcome of comparing two configurations, with the evidence a reader needs to trust or doubt it."""

    verdict: str  # "slower" | "faster" | "unchanged" | "inconclusive"
    ratio: float  # new / base, ratio of the geometric means of the runs (NaN only when a side has no runs)
    low: float | None  # `confidence` interval of the ratio (Welch, on logs); None with fewer than 2 runs a side
    high: float | None
    p_value: float | None  # Welch two-sided t-test on log values; None with fewer than 2 runs a side
    n_base: int
    n_new: int
    reason: str  # one short sentence a user can read
    test: str = "welch"  # which test gave it: "welch" (independent runs), "paired" (runs paired by round) or
    # "duet" (runs paired by duet: each pair ran at the same time, on the two halves of the cores)


def _positive(values: Sequence[float], name: str = "values") -> npt.NDArray[np.float64]:
    """Validate run values: throughput is a positive finite number, anything else is a measurement bug."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be positive and finite, got {arr.tolist()}")
    return arr


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def summarize_runs(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Summarize one configuration's runs (one value per run, never per-step samples).

    The interval is a t-interval on log(values), exponentiated: the geometric mean times/divided by
    exp(t * s / sqrt(n)). Logs because throughput effects are multiplicative (a ratio, not a difference), which also
    keeps the interval positive; a t-interval because it is honest from n = 2 (wide, as it should be), whereas a
    bootstrap of 2-3 values is degenerate (it can only reshuffle the few values seen).
    """
    _check_confidence(confidence)
    arr = _positive(values)
    n = int(arr.size)
    if n == 0:
        raise ValueError("no runs to summarize")
    median = float(np.median(arr))
    if n < 2:
        return Interval(n=n, median=median, low=None, high=None, cv=None, half_width=None)
    logs = np.log(arr)
    centre = float(np.mean(logs))
    spread = float(np.std(logs, ddof=1))
    q = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1))
    margin = q * spread / math.sqrt(n)
    low, high = math.exp(centre - margin), math.exp(centre + margin)
    cv = float(np.std(arr, ddof=1) / np.mean(arr))
    return Interval(n=n, median=median, low=low, high=high, cv=cv, half_width=(high - low) / 2.0 / median)


def _runs(n_base: int, n_new: int) -> str:
    if n_base == n_new:
        return f"{n_base} run{'s' if n_base != 1 else ''} a side"
    return f"{n_base} base run{'s' if n_base != 1 else ''}, {n_new} new run{'s' if n_new != 1 else ''}"


def decide(
    base: Sequence[float],
    new: Sequence[float],
    threshold: float = 0.05,
    alpha: float = 0.01,
    confidence: float = 0.95,
) -> Verdict:
    """Say whether `new` is slower, faster, unchanged or inconclusive against `base` (higher value = better).

    Each input holds one value per run: pooling per-step samples would treat correlated steps as independent and
    raise false alarms (see tests/test_stats.py). Welch's t-test on logs compares the runs without assuming equal
    spread on both sides. A change is reported only when it is both significant (p < alpha) and larger than
    `threshold`; "unchanged" needs evidence too (the interval of the ratio lies within +/- threshold, or the change
    is significant but smaller than the threshold), so too few or too noisy runs give "inconclusive", never a guess.
    """
    _check_rule(threshold, alpha, confidence)
    b, w = _positive(base, "base"), _positive(new, "new")
    n_base, n_new = int(b.size), int(w.size)
    lb, lw = np.log(b), np.log(w)
    runs = _runs(n_base, n_new)
    if n_base < 2 or n_new < 2:
        ratio = math.exp(float(np.mean(lw)) - float(np.mean(lb))) if n_base and n_new else math.nan
        return Verdict("inconclusive", ratio, None, None, None, n_base, n_new,
                       f"only {runs}; at least 2 runs a side are needed for a verdict")

    diff = float(np.mean(lw)) - float(np.mean(lb))
    ratio = math.exp(diff)
    vb, vw = float(np.var(lb, ddof=1)) / n_base, float(np.var(lw, ddof=1)) / n_new
    se = math.sqrt(vb + vw)
    dof = (vb + vw) ** 2 / (vb**2 / (n_base - 1) + vw**2 / (n_new - 1)) if se > _EXACT else 1.0  # Welch-Satterthwaite
    p_value, low, high = _t_interval(diff, se, dof, confidence)
    return _worded(ratio, low, high, p_value, n_base, n_new, runs, threshold, alpha, "welch")


def _t_interval(diff: float, se: float, dof: float, confidence: float) -> tuple[float, float, float]:
    """The two-sided p-value of a log difference and its ratio's interval, from its standard error. Where both
    sides are (numerically) constant the difference is known exactly: there is nothing to test."""
    if se <= _EXACT:
        return (1.0 if abs(diff) <= _EXACT else 0.0), math.exp(diff), math.exp(diff)
    p_value = float(2.0 * stats.t.sf(abs(diff) / se, dof))
    margin = float(stats.t.ppf(0.5 + confidence / 2.0, dof)) * se
    return p_value, math.exp(diff - margin), math.exp(diff + margin)


def _worded(ratio: float, low: float, high: float, p_value: float, n_base: int, n_new: int, runs: str,
            threshold: float, alpha: float, test: str) -> Verdict:
    """The verdict from a ratio, its interval and p-value: the same rule for every test."""
    lo_edge, hi_edge = 1.0 - threshold, 1.0 + threshold
    band = f"±{threshold * 100:g}%"
    span = f"interval {low:.2f}-{high:.2f}"
    change = f"{abs(ratio - 1.0) * 100:.1f}%"
    significant = p_value < alpha
    if significant and ratio < lo_edge:
        verdict, reason = "slower", f"{runs}; {change} slower ({span}, p={p_value:.2g})"
    elif significant and ratio > hi_edge:
        verdict, reason = "faster", f"{runs}; {change} faster ({span}, p={p_value:.2g})"
    elif lo_edge <= low and high <= hi_edge:
        verdict, reason = "unchanged", f"{runs}; {span} lies within {band}"
    elif significant:
        verdict = "unchanged"
        reason = f"{runs}; a significant but small change of {change} (p={p_value:.2g}), within {band}"
    elif low <= 1.0 <= high:
        verdict, reason = "inconclusive", f"{runs}; {span} spans both 1 and the {band} threshold"
    else:
        verdict = "inconclusive"
        reason = f"{runs}; {span} reaches beyond {band} but p={p_value:.2g} is not below {alpha:g}"
    return Verdict(verdict, ratio, low, high, p_value, n_base, n_new, reason, test)


def _check_rule(threshold: float, alpha: float, confidence: float) -> None:
    _check_confidence(confidence)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def decide_paired(
    base: Sequence[float],
    new: Sequence[float],
    threshold: float = 0.05,
    alpha: float = 0.01,
    confidence: float = 0.95,
    test: str = "paired",
) -> Verdict:
    """The verdict from runs paired by round: `base[i]` and `new[i]` ran in the same round of one sweep, minutes
    apart, and share that round's drift (the host's neighbours, its frequency, a warming cache). The paired t-test
    on the log differences removes what the pair shares; what is left is the noise between two neighbouring runs.
    With `test="duet"` the pairs ran at the same time (`harness.launch.duet`): the same test, closer neighbours.
    """
    _check_rule(threshold, alpha, confidence)
    b, w = _positive(base, "base"), _positive(new, "new")
    if b.size != w.size:
        raise ValueError(f"paired runs need as many base as new values ({b.size} and {w.size})")
    n = int(b.size)
    runs = f"{n} pair{'s' if n != 1 else ''} of runs, " + ("run at once (duets)" if test == "duet" else
                                                           "paired by round")
    d = np.log(w) - np.log(b)
    if n < 2:
        ratio = math.exp(float(np.mean(d))) if n else math.nan
        return Verdict("inconclusive", ratio, None, None, None, n, n,
                       f"only {runs}; at least 2 are needed for a verdict", test)
    diff = float(np.mean(d))
    ratio = math.exp(diff)
    se = float(np.std(d, ddof=1)) / math.sqrt(n)
    p_value, low, high = _t_interval(diff, se, n - 1, confidence)
    return _worded(ratio, low, high, p_value, n, n, runs, threshold, alpha, test)


def _width(v: Verdict) -> float:
    return math.inf if v.low is None or v.high is None else math.log(v.high) - math.log(v.low)


def decide_rounds(
    base: Mapping[int, float],
    new: Mapping[int, float],
    threshold: float = 0.05,
    alpha: float = 0.01,
    confidence: float = 0.95,
) -> Verdict:
    """The verdict on two configurations of one sweep, each given as {round: throughput}. Where at least
    MIN_PAIRS rounds hold both, the runs are paired by round and the paired test is used when its interval is
    narrower than Welch's over all the runs (pairing helps when the rounds drift together); otherwise Welch's. The
    verdict names the test it used. (The choice of the narrower interval is part of the procedure whose false
    alarm rate `bench/power.py` measures by simulation.)"""
    welch = decide(list(base.values()), list(new.values()), threshold, alpha, confidence)
    common = sorted(set(base) & set(new))
    if len(common) < MIN_PAIRS:
        return welch
    paired = decide_paired([base[r] for r in common], [new[r] for r in common], threshold, alpha, confidence)
    return paired if _width(paired) < _width(welch) else welch


def enough_runs(values: Sequence[float], target_half_width: float, min_runs: int, max_runs: int) -> bool:
    """Say whether a cell has enough runs: drives adaptive repeats (interleaved rounds until every interval is narrow).

    A cap (`max_runs`) bounds the cost on a hopelessly noisy cell; a floor (`min_runs`, at least 2) keeps a lucky
    pair of close values from stopping the repeats before the spread has been seen.
    """
    if min_runs > max_runs:
        raise ValueError(f"min_runs ({min_runs}) exceeds max_runs ({max_runs})")
    n = len(values)
    if n >= max_runs:
        return True
    if n < max(min_runs, 2):
        return False
    half_width = summarize_runs(values).half_width
    return half_width is not None and half_width <= target_half_width


def _bootstrap_medians(
    arr: npt.NDArray[np.float64], resamples: int, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """Medians of `resamples` resamples of `arr`, drawn in chunks so long per-step inputs stay within memory."""
    per_chunk = max(1, _CHUNK // arr.size)
    out = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, per_chunk):
        stop = min(resamples, start + per_chunk)
        idx = rng.integers(0, arr.size, size=(stop - start, arr.size))
        out[start:stop] = np.median(arr[idx], axis=1)
    return out


def bootstrap_ratio_ci(
    base: Sequence[float],
    new: Sequence[float],
    confidence: float = 0.95,
    seed: int = 0,
    resamples: int = 4000,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of median(new) / median(base), for plots and diagnostics only.

    Per-step samples may be passed here to show within-run spread, which is why this must never feed a verdict:
    it ignores that steps of one run are correlated. Use decide() on one value per run for verdicts.
    """
    _check_confidence(confidence)
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    b, w = _positive(base, "base"), _positive(new, "new")
    if b.size == 0 or w.size == 0:
        raise ValueError("both sides need at least one value")
    rng = np.random.default_rng(seed)
    ratios = _bootstrap_medians(w, resamples, rng) / _bootstrap_medians(b, resamples, rng)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(ratios, [tail, 100.0 - tail])
    return float(low), float(high)

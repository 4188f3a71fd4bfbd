"""Change points in a series of run-level measurements (one group of runs per version, date or commit).

In the manner of asv's `step_detect` (a penalized piecewise-constant fit), but over runs, not medians: the series
of log values is split where that lowers the within-segment squared error by more than a penalty (BIC-like,
2 x pooled within-version variance x log N), by dynamic programming over every segmentation; then each boundary
is kept only when Welch's test on the runs of the segments on either side calls it slower or faster beyond the
threshold (`harness.base.stats.decide`). Noise alone gives no step; a step names the versions around it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.base.stats import decide


@dataclass(frozen=True)
class Step:
    index: int  # the first position after the change
    verdict: str  # slower | faster
    ratio: float  # after / before (geometric means of the segments' runs)
    low: float | None
    high: float | None
    p_value: float | None


def _segment_costs(groups: list[np.ndarray]) -> np.ndarray:
    """cost[i, j]: squared error of positions i..j-1 around their common mean."""
    n = len(groups)
    cost = np.zeros((n + 1, n + 1))
    for i in range(n):
        values = np.empty(0)
        for j in range(i + 1, n + 1):
            values = np.concatenate([values, groups[j - 1]])
            cost[i, j] = float(np.sum((values - values.mean()) ** 2))
    return cost


def segment(groups: list[np.ndarray], penalty: float) -> list[int]:
    """Boundaries (first index of each new segment) of the optimal penalized segmentation."""
    n = len(groups)
    cost = _segment_costs(groups)
    best = np.full(n + 1, math.inf)
    best[0] = -penalty
    prev = np.zeros(n + 1, dtype=int)
    for j in range(1, n + 1):
        for i in range(j):
            c = best[i] + penalty + cost[i, j]
            if c < best[j]:
                best[j], prev[j] = c, i
    cuts, j = [], n
    while j > 0:
        j = int(prev[j])
        if j > 0:
            cuts.append(j)
    return sorted(cuts)


def detect_steps(groups: list[list[float]], threshold: float = 0.05, alpha: float = 0.01) -> list[Step]:
    """Steps in a series of groups of run values (higher is better), in order of position."""
    logs = [np.log(np.asarray(g, float)) for g in groups if len(g)]
    if len(logs) != len(groups):
        raise ValueError("every position needs at least one run")
    if len(groups) < 2:
        return []
    within = [float(np.var(g, ddof=1)) for g in logs if g.size > 1]
    n_total = sum(g.size for g in logs)
    # with no repeats anywhere, the spread between neighbours stands in for the noise
    variance = float(np.mean(within)) if within else float(np.var(np.diff([g.mean() for g in logs]), ddof=0)) / 2
    penalty = 2.0 * max(variance, 1e-12) * math.log(max(n_total, 2))
    cuts = segment(logs, penalty)
    edges = [0, *cuts, len(groups)]
    steps = []
    for k, cut in enumerate(cuts):
        before = [v for g in groups[edges[k]:cut] for v in g]
        after = [v for g in groups[cut:edges[k + 2]] for v in g]
        v = decide(before, after, threshold=threshold, alpha=alpha)
        if v.verdict in ("slower", "faster"):
            steps.append(Step(cut, v.verdict, v.ratio, v.low, v.high, v.p_value))
    return steps

"""How a job's peak memory grows over its steps, which a few probe steps cannot see.

A long run's peak RSS keeps rising after its first steps: the largest batches and evaluations met so far, and the
allocator's fragmentation. The soak run (the recommended configuration for as many of the job's steps as the time
budget allows, evaluating as the job does) records each step's peak so far (`hwm_bytes`). Two curves through it
project the peak to the job's last step: log(step), the shape record highs of a steady process take (the point), and
a straight line through the later half, which keeps growing (the upper end). A job no longer than the soak needs
neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_STEPS = 8  # fewer measured steps fit no curve


@dataclass(frozen=True)
class Growth:
    steps: int  # the soak's steps
    last_bytes: float  # the peak so far at its last step
    log_intercept: float  # peak ~ log_intercept + log_slope * ln(step)
    log_slope: float
    linear_slope: float  # bytes per step over the later half

    def factors(self, steps: int) -> tuple[float, float]:
        """(point, upper) ratios of the peak at `steps` to the peak the soak reached; 1 where the job is no longer."""
        if steps <= self.steps:
            return 1.0, 1.0
        at = self.log_intercept + self.log_slope * math.log(steps)
        end = self.log_intercept + self.log_slope * math.log(self.steps)
        point = max(1.0, at / end) if end > 0 else 1.0
        upper = max(point, (self.last_bytes + max(0.0, self.linear_slope) * (steps - self.steps)) / self.last_bytes)
        return point, upper


def fit_growth(hwm: list[int | None]) -> Growth | None:
    """The curves through per-step peaks so far, of one process or summed over ranks (step 1 holds loading and
    first-touch allocation: left out)."""
    pts = [(i + 1, float(v)) for i, v in enumerate(hwm) if v and i >= 1]
    if len(pts) < MIN_STEPS:
        return None
    n, y = np.asarray(pts, float).T
    y = np.maximum.accumulate(y)  # a peak so far never falls (ranks' readings can interleave; keep the highest)
    slope, intercept = np.polyfit(np.log(n), y, 1)
    half = n >= n[len(n) // 2]
    linear = float(np.polyfit(n[half], y[half], 1)[0]) if half.sum() >= 3 else 0.0
    return Growth(steps=int(n[-1]), last_bytes=float(y[-1]), log_intercept=float(intercept),
                  log_slope=max(0.0, float(slope)), linear_slope=linear)

"""Bisecting a library's releases: the first version whose runs differ from the good version's beyond the
threshold with significance (run-level Welch, `harness.base.stats.decide`).

The search is pure: `measure(version)` returns one value per run (tokens/s, or 1/eval-loss for a loss change) and
the caller decides how a version is built and run. Good and bad are measured first; when they do not differ there
is nothing to bisect and the result says so. A middle version that cannot be told from either side gets more runs
(up to `max_runs`); if it still cannot, it joins the side it is closer to, and the result says the culprit is
uncertain.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.base.stats import Verdict, decide


@dataclass
class BisectResult:
    versions: list[str]
    direction: str | None  # slower | faster | None (no change between good and bad)
    culprit: str | None
    last_good: str | None
    certain: bool
    rounds: int  # versions measured between good and bad
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # each version against the good one
    runs: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def bisect(versions: list[str], measure: Callable[[str, int], list[float]], threshold: float = 0.05,
           alpha: float = 0.01, runs: int = 3, max_runs: int = 6) -> BisectResult:
    """`versions` in release order, good first and bad last; `measure(version, n)` returns n more runs."""
    if len(versions) < 2:
        raise ValueError("bisect needs a good and a bad version")
    good, bad = versions[0], versions[-1]
    data: dict[str, list[float]] = {good: measure(good, runs), bad: measure(bad, runs)}
    for end in (good, bad):
        if len(data[end]) < 2:
            raise ValueError(f"{end} gave {len(data[end])} run(s): the ends of a bisect must run")
    result = BisectResult(versions=versions, direction=None, culprit=None, last_good=None, certain=True, rounds=0,
                          runs=data)
    overall = _settle(good, bad, data, measure, threshold, alpha, max_runs)
    result.verdicts[bad] = result.verdicts[good] = overall
    if overall.verdict not in ("slower", "faster"):
        result.notes.append(f"{bad} against {good}: {overall.verdict} ({overall.reason}); nothing to bisect")
        return result
    result.direction = overall.verdict
    alive = list(versions)  # a version that does not run (it fails to build or to train) is skipped, as git does
    lo, hi = 0, len(alive) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        version = alive[mid]
        data[version] = measure(version, runs)
        result.rounds += 1
        if len(data[version]) < 2:
            result.skipped.append(version)
            result.notes.append(f"{version}: skipped, it gave {len(data[version])} run(s) (see its cells)")
            del alive[mid]
            hi -= 1
            continue
        v = _settle(good, version, data, measure, threshold, alpha, max_runs)
        result.verdicts[version] = v
        if v.verdict == overall.verdict:
            hi = mid
        elif v.verdict == "unchanged":
            lo = mid
        else:  # cannot tell it from good: compare with bad before guessing
            against_bad = decide(data[bad], data[version], threshold=threshold, alpha=alpha)
            if against_bad.verdict == "unchanged":
                hi = mid
            elif against_bad.verdict in ("slower", "faster"):
                lo = mid
                toward_bad = (v.high is not None and v.high < 1) if overall.verdict == "slower" else \
                    (v.low is not None and v.low > 1)
                if toward_bad and abs(math.log(v.ratio)) > math.log1p(threshold):  # a step of its own, its
                    # interval clear of 1 but its p-value not below alpha: too noisy to confirm, too far to ignore
                    result.certain = False
                    result.notes.append(f"{version}: x{v.ratio:.2f} of {good}, unlike {bad} but not shown unlike "
                                        f"{good} ({v.reason}); taken as good, so the culprit may be later than the "
                                        "first step: more runs (--max-runs) would settle it")
            else:
                result.certain = False
                closer_to_bad = abs(v.ratio - overall.ratio) < abs(v.ratio - 1.0)
                hi, lo = (mid, lo) if closer_to_bad else (hi, mid)
                result.notes.append(f"{version}: cannot tell from either {good} or {bad} ({v.reason}); taken as "
                                    f"{'bad' if closer_to_bad else 'good'}, the nearer by its ratio")
    result.culprit, result.last_good = alive[hi], alive[lo]
    return result


def _settle(base: str, version: str, data: dict[str, list[float]], measure: Callable[[str, int], list[float]],
            threshold: float, alpha: float, max_runs: int) -> Verdict:
    """The verdict of `version` against `base`, adding runs to both while it is inconclusive and runs remain."""
    v = decide(data[base], data[version], threshold=threshold, alpha=alpha)
    while v.verdict == "inconclusive" and len(data[version]) < max_runs:
        data[version] += measure(version, 1)
        if len(data[base]) < max_runs:
            data[base] += measure(base, 1)
        v = decide(data[base], data[version], threshold=threshold, alpha=alpha)
    return v

"""How often a sweep's verdicts come out right, by simulation from the spreads a real sweep measured.

A sweep of R rounds runs each configuration once per round. On a shared machine a run's log throughput is

    log x[c, r] = mu[c] + u[r] + e[c, r]

with `u` what the round shares (the host's neighbours and frequency while that round ran) and `e` what is the
run's own. A result set measures both: the spread of a configuration's runs is sqrt(su^2 + se^2), the spread of
the log difference of two configurations' runs in one round is sqrt(2) * se. Drawn from them, simulated sweeps say
how often an A/A pair comes out `unchanged`, how often a slowdown of a given size comes out `slower`, and how often
the A/A pair comes out `slower` (a false alarm), for the verdict the report gives (`decide_rounds`: paired where
pairing helps, else Welch) and for Welch alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from harness.base.stats import Verdict, decide, decide_rounds


@dataclass(frozen=True)
class Spread:
    """The noise of one sweep, in log units: between runs of one configuration, and within a pair of one round."""

    between: float  # sd of log throughput over a configuration's runs
    within_pair: float  # sd of the log difference of two configurations' runs in one round
    rounds: int  # rounds it was measured over (complete pairs)

    @property
    def own(self) -> float:
        """The run's own noise (se): half the pair difference's variance is each run's."""
        return self.within_pair / math.sqrt(2.0)

    @property
    def shared(self) -> float:
        """What a round shares (su); zero where the pairs differ more than the runs do."""
        return math.sqrt(max(0.0, self.between**2 - self.own**2))


def measured_spread(base: Mapping[int, float], new: Mapping[int, float]) -> Spread | None:
    """The spread of two configurations of one sweep, each {round: throughput}; None with fewer than 3 pairs."""
    common = sorted(set(base) & set(new))
    if len(common) < 3:
        return None
    lb = np.log([base[r] for r in common])
    lw = np.log([new[r] for r in common])
    between = math.sqrt((float(np.var(lb, ddof=1)) + float(np.var(lw, ddof=1))) / 2.0)
    return Spread(between=between, within_pair=float(np.std(lw - lb, ddof=1)), rounds=len(common))


@dataclass(frozen=True)
class Rates:
    """Shares of simulated sweeps, each verdict rule apart."""

    rounds: int
    slowdown: float
    aa_unchanged: float  # A/A pairs called unchanged
    aa_false_slower: float  # A/A pairs called slower
    slow_detected: float  # the slowed configuration called slower
    welch_aa_unchanged: float
    welch_aa_false_slower: float
    welch_slow_detected: float


def _sweep(rng: np.random.Generator, spread: Spread, rounds: int, factor: float) -> tuple[dict[int, float],
                                                                                       dict[int, float]]:
    shared = rng.normal(0.0, spread.shared, rounds)
    a = np.exp(shared + rng.normal(0.0, spread.own, rounds)) * 100.0
    b = np.exp(shared + rng.normal(0.0, spread.own, rounds)) * 100.0 * factor
    return dict(enumerate(a.tolist())), dict(enumerate(b.tolist()))


def simulate(spread: Spread, rounds: int, slowdown: float = 0.10, threshold: float = 0.05, alpha: float = 0.01,
             sweeps: int = 2000, seed: int = 0) -> Rates:
    """Rates of each verdict over `sweeps` simulated sweeps of `rounds` rounds: an A/A pair, and a pair whose
    second configuration is `slowdown` slower (0.10: each run takes 10% longer, throughput x 1/1.1)."""
    rng = np.random.default_rng(seed)
    slow_factor = 1.0 / (1.0 + slowdown)

    def rate(rule: Callable[[dict[int, float], dict[int, float]], Verdict], factor: float, verdict: str) -> float:
        hits = sum(rule(*_sweep(rng, spread, rounds, factor)).verdict == verdict for _ in range(sweeps))
        return hits / sweeps

    def paired(a: dict[int, float], b: dict[int, float]) -> Verdict:
        return decide_rounds(a, b, threshold=threshold, alpha=alpha)

    def welch(a: dict[int, float], b: dict[int, float]) -> Verdict:
        return decide(list(a.values()), list(b.values()), threshold=threshold, alpha=alpha)

    return Rates(rounds=rounds, slowdown=slowdown,
                 aa_unchanged=rate(paired, 1.0, "unchanged"), aa_false_slower=rate(paired, 1.0, "slower"),
                 slow_detected=rate(paired, slow_factor, "slower"),
                 welch_aa_unchanged=rate(welch, 1.0, "unchanged"), welch_aa_false_slower=rate(welch, 1.0, "slower"),
                 welch_slow_detected=rate(welch, slow_factor, "slower"))

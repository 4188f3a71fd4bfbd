"""Paired verdicts inside one sweep: runs of one round share the machine's drift, and pairing them removes it.

Simulated sweeps (`harness.analysis.power`) drawn from a stated spread: the paired rule must keep false `slower`
within alpha, see a 10% slowdown where Welch cannot, and say which test gave each verdict.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis.power import Spread, measured_spread, simulate
from harness.base.stats import decide, decide_paired, decide_rounds


def _rounds(values):
    return dict(enumerate(values))


def test_a_drift_both_configurations_share_is_removed_by_pairing():
    drift = [70.0, 95.0, 80.0, 110.0, 88.0, 101.0]  # the machine, round by round: 70-110 tok/s
    same = [d * f for d, f in zip(drift, [1.01, 0.99, 1.00, 1.01, 0.99, 1.00], strict=True)]
    slower = [d / 1.1 * f for d, f in zip(drift, [1.00, 1.01, 0.99, 1.00, 1.01, 0.99], strict=True)]
    assert decide(drift, same).verdict == "inconclusive" and decide(drift, slower).verdict == "inconclusive"
    aa = decide_rounds(_rounds(drift), _rounds(same))
    slow = decide_rounds(_rounds(drift), _rounds(slower))
    assert (aa.verdict, aa.test) == ("unchanged", "paired") and aa.low > 0.97 and aa.high < 1.03
    assert (slow.verdict, slow.test) == ("slower", "paired") and slow.ratio == pytest.approx(1 / 1.1, rel=0.01)
    assert "paired by round" in slow.reason


def test_pairing_is_used_only_where_it_narrows_the_interval_and_enough_rounds_pair_up():
    rng = np.random.default_rng(3)
    base = rng.lognormal(np.log(100), 0.05, 6).tolist()
    new = rng.lognormal(np.log(100), 0.05, 6).tolist()  # independent runs: pairing has nothing to remove
    v = decide_rounds(_rounds(base), dict(enumerate(new)))
    welch, paired = decide(base, new), decide_paired(base, new)
    narrower = "paired" if math.log(paired.high / paired.low) < math.log(welch.high / welch.low) else "welch"
    assert v.test == narrower
    # two rounds in common are too few to pair: Welch over all the runs
    few = decide_rounds({0: 90.0, 1: 100.0, 7: 95.0}, {1: 99.0, 0: 91.0, 5: 97.0, 6: 96.0})
    assert few.test == "welch" and (few.n_base, few.n_new) == (3, 4)
    with pytest.raises(ValueError, match="as many base as new"):
        decide_paired([1.0, 2.0], [1.0])


@pytest.mark.parametrize("spread", [Spread(0.10, 0.04, 8), Spread(0.05, 0.07, 8), Spread(0.15, 0.14, 8)])
def test_false_slower_stays_within_alpha_whatever_the_rounds_share(spread):
    """The rule picks the narrower of two intervals; the price of that choice must stay within alpha = 0.01."""
    for rounds in (3, 5, 8):
        rates = simulate(spread, rounds, sweeps=1500, seed=rounds)
        assert rates.aa_false_slower <= 0.015, (rounds, rates)


def test_a_10_percent_slowdown_is_seen_in_one_sweep_where_rounds_drift_together():
    """A machine like this one: runs of one configuration spread 10%, neighbouring runs differ 3%."""
    rates = simulate(Spread(0.10, 0.03, 8), rounds=8, sweeps=1000, seed=1)
    assert rates.slow_detected >= 0.9 and rates.aa_unchanged >= 0.9, rates
    assert rates.welch_slow_detected < 0.3 and rates.welch_aa_unchanged < 0.1, rates  # what pairing gained


def test_the_spread_of_a_sweep_is_measured_from_its_pairs():
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 0.10, 400)
    a = np.exp(shared + rng.normal(0, 0.03, 400)) * 100
    b = np.exp(shared + rng.normal(0, 0.03, 400)) * 100
    s = measured_spread(_rounds(a.tolist()), _rounds(b.tolist()))
    assert s.rounds == 400 and s.own == pytest.approx(0.03, rel=0.15) and s.shared == pytest.approx(0.10, rel=0.1)
    assert measured_spread({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}) is None


@pytest.mark.parametrize("fault, fraction", [("slow", 1.0), ("slow:10%", 0.10), ("slow:2.5%", 0.025)])
def test_a_sized_slowdown_waits_that_share_of_each_steps_own_work(fault, fraction, monkeypatch):
    from harness.cell import tracker as tracker_module
    from harness.cell.tracker import SlowSteps
    from harness.config.spec import slow_fraction

    assert slow_fraction(fault) == fraction and slow_fraction("crash") is None and slow_fraction("none") is None
    now = [0.0]
    waits: list[float] = []
    monkeypatch.setattr(tracker_module.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(tracker_module.time, "sleep", waits.append)
    slow = SlowSteps(fraction)
    own = [9.0, 2.0, 3.0, 2.5]  # a slow warm-up step, then the measured ones
    for work in own:
        slow.on_step_begin(None, None, None)
        now[0] += work
        slow.on_step_end(None, None, None)
        now[0] += waits[-1]
    assert waits == pytest.approx([fraction * w for w in own])  # each by its own work: nothing carried over

"""Duets (harness.launch.duet): two cells at once, each on its own half of the cores, compared by their ratio."""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time

import pytest

from harness.analysis.frames import cells_frame
from harness.analysis.summary import baseline, configurations, speedups
from harness.base.errors import XeonftError
from harness.config.matrix import RunOrder
from harness.launch import duet
from harness.launch.sweep import run_sweep
from harness.measure.sampler import TreeSampler
from tests.conftest import tiny_matrix

AXES = {"inject_fault": ["none", "slow:50%"], "replica": ["a", "b"]}
EXCLUDE = [{"inject_fault": "slow:50%", "replica": "b"}]  # the reference, its A/A twin, and a slowed twin


def _matrix(rows_file, tokenizer_dir, **changes):
    doc = {"name": "duet", "design": "duet", "axes": AXES, "exclude": EXCLUDE, "repeats": 2,
           "measure": {"warmup_steps": 1, "steps": 10}, **changes}
    return tiny_matrix(rows_file, tokenizer_dir, **doc)


def test_a_duet_matrix_runs_every_configuration_beside_the_first_with_the_halves_swapped(rows_file, tokenizer_dir):
    m = _matrix(rows_file, tokenizer_dir)
    assert m.design == "duet" and not m.calibration
    assert all(c.launch.duet and c.launch.pinning == "cores" for c in m.cells)
    reference = m.cells[0].model_copy(update={"repeat": 0})
    refs = [c for c in m.cells if c.model_copy(update={"repeat": 0}) == reference]
    assert sorted(c.repeat for c in refs) == [0, 1, 2, 3]  # once beside each of 2 others, in each of 2 rounds
    assert len(m.cells) == 4 + 2 * 2
    plan = duet.plan(m.cells, RunOrder(shuffle=True, seed=5), 5)
    assert len(plan) == 4 and [d.number for d in plan] == [0, 1, 2, 3]
    assert sorted(d.reference.repeat for d in plan) == [0, 1, 2, 3]  # each reference run in one duet
    assert len({(d.candidate.launch.replica, d.candidate.launch.inject_fault, d.candidate.repeat) for d in plan}) == 4
    for fault, replica in (("none", "b"), ("slow:50%", "a")):
        mine = [d for d in plan if (d.candidate.launch.inject_fault, d.candidate.launch.replica) == (fault, replica)]
        assert [d.candidate.repeat for d in mine] == [0, 1]
        assert {d.reference_half for d in mine} == {0, 1}  # the halves swap from one round to the next
    assert duet.plan(m.cells, RunOrder(shuffle=True, seed=5), 5) == plan  # the recorded seed gives the same duets


@pytest.mark.parametrize(("changes", "message"), [
    ({"repeats": "auto"}, "takes a fixed number of repeats"),
    ({"fixed": {"model": "synthetic:tiny", "ranks": 2}}, "ranks above 1 does not combine"),
    ({"axes": {**AXES, "pinning": ["numa"]}}, "pinning 'numa' does not combine"),
    ({"axes": {"replica": ["a"]}, "exclude": []}, "needs two configurations or more"),
    ({"fixed": {"model": "synthetic:tiny", "duet": True}}, "'duet' is set by the matrix's design"),
    ({"calibration": True}, "has no calibration beside its cells"),
])
def test_a_duet_matrix_that_cannot_be_one_is_refused_in_one_message(rows_file, tokenizer_dir, changes, message):
    with pytest.raises(XeonftError, match=message):
        _matrix(rows_file, tokenizer_dir, **changes)


def test_a_step_counts_inside_the_overlap_despite_the_barriers_jitter_but_not_when_mostly_outside():
    """The step times of a real duet (power-duet-fp32, 25-second steps): both first measured steps began a few
    milliseconds before the overlap did, and were once dropped for it (1 of 3 steps kept a side)."""
    from harness.measure.steps import Step

    start, end = 1000.0, 1075.0
    def step(n: int, began: float, seconds: float) -> Step:
        return Step(step=n, seconds=seconds, tokens=1024, ended=began + seconds)

    steps = [step(1, 970.0, 29.99), step(2, 999.998, 25.0), step(3, 1025.0, 25.0), step(4, 1050.0, 25.0),
             step(5, 1075.0, 25.0)]
    assert [s.step for s in duet.within(steps, start, end)] == [2, 3, 4]  # not the warm-up, nor the one after
    # a step that ran half outside (its partner already evaluating) is left out
    assert [s.step for s in duet.within([step(6, 1062.5, 25.0)], start, end)] == []
    assert [s.step for s in duet.within([step(7, 1000.0, 25.0)], start, 1024.0)] == [7]  # 96% inside


def test_a_partner_beside_the_tree_is_not_taken_for_foreign_load():
    """A busy process outside a sampled tree is foreign load, unless it is the tree's duet partner."""
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 5: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        with TreeSampler(idle.pid) as alone, TreeSampler(idle.pid, beside=[busy.pid]) as paired:
            time.sleep(3.5)
    finally:
        busy.kill()
        idle.kill()
    assert statistics.fmean(alone.foreign_cores) > 0.6, alone.foreign_cores
    assert statistics.fmean(paired.foreign_cores) < 0.3, paired.foreign_cores


def test_a_partner_that_exits_while_the_tree_still_runs_is_not_taken_for_foreign_load():
    """The second a partner used before it exited is its own, not foreign: a fast reference that ends (and is
    reaped by the launcher, as its supervisor does) while a slow candidate is still measuring leaves no load behind
    (CI marked both slow:50% candidates of the duet sweep disturbed at 0.28-0.30 cores this way)."""
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 2.5: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(6)"])
    reaper = threading.Thread(target=busy.wait)
    reaper.start()
    try:
        with TreeSampler(idle.pid, beside=[busy.pid]) as paired:
            time.sleep(4.5)
    finally:
        busy.kill()
        idle.kill()
        reaper.join()
    assert max(paired.foreign_cores[1:]) < 0.3, paired.foreign_cores  # the first interval has no history


@pytest.fixture(scope="module")
def duet_sweep(rows_file, tokenizer_dir, tmp_path_factory):
    m = _matrix(rows_file, tokenizer_dir, order={"shuffle": True, "seed": 11})
    return m, run_sweep(m, out=tmp_path_factory.mktemp("duet") / "duet")


def test_a_duet_sweep_runs_each_pair_at_once_on_disjoint_halves_and_decides_by_their_ratios(duet_sweep):
    _, store = duet_sweep
    records = {r.key: r for r in store.records()}
    assert len(records) == 8 and {r.status for r in records.values()} <= {"ok", "disturbed"}, \
        [(r.status, r.reason) for r in records.values()]
    by_duet: dict[int, list] = {}
    for r in records.values():
        assert r.duet is not None and r.duet.note is None, r.duet
        assert records[r.duet.partner].duet.partner == r.key  # the two sides name each other
        by_duet.setdefault(r.duet.duet, []).append(r)
    assert sorted(by_duet) == [0, 1, 2, 3]
    for ref, cand in (sorted(pair, key=lambda r: r.duet.role != "reference") for pair in by_duet.values()):
        assert (ref.duet.role, cand.duet.role) == ("reference", "candidate")
        assert ref.duet.half != cand.duet.half
        assert not set(ref.launch.placement.cpus) & set(cand.launch.placement.cpus)  # disjoint halves
        # both waited at the barrier: their measured steps began together, and ran together
        assert abs(ref.result.measured_epoch[0] - cand.result.measured_epoch[0]) < 1.0
        assert ref.duet.overlap_seconds > 0 and ref.duet.steps >= 2 and cand.duet.steps >= 2
        assert ref.peak is None  # a duet cell shares the machine: no MFU
        ratio = cand.duet.tokens_per_second / ref.duet.tokens_per_second
        if cand.launch_settings.get("inject_fault") == "slow:50%":
            assert ratio < 0.85, ratio  # each of its steps waits half as long again as its work: about 0.67
    df = cells_frame(store)
    configs = configurations(df)
    base, sentence = baseline(df, None)
    assert "duet's reference" in sentence
    verdicts = speedups(configs, base, threshold=0.1, alpha=0.05)
    others = verdicts[verdicts["identity"] != base]
    assert list(others["speedup_test"]) == ["duet", "duet"]
    slowed = others[others["variant"].str.contains("slow")].iloc[0]
    assert slowed["speedup"] < 0.85 and "2 pairs of runs, run at once (duets)" in slowed["speedup_reason"]


def test_a_duet_whose_partner_crashes_early_does_not_hold_the_other_at_the_barrier(rows_file, tokenizer_dir,
                                                                                      tmp_path):
    m = _matrix(rows_file, tokenizer_dir, axes={"inject_fault": ["none", "crash"]}, exclude=[], repeats=1)
    started = time.monotonic()
    store = run_sweep(m, out=tmp_path / "crash")
    assert time.monotonic() - started < 100  # not the barrier's 900 s
    by_fault = {r.launch_settings.get("inject_fault"): r for r in store.records()}
    assert by_fault["crash"].status == "failed" and by_fault["none"].status in ("ok", "disturbed")
    assert by_fault["none"].duet.tokens_per_second is None
    assert by_fault["none"].duet.note == "a cell of the duet did not finish with a measurement"

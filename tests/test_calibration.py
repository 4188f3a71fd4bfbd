"""The calibration beside every cell: real calibration processes beside real tiny-Llama cells, and the analysis of
whether normalizing by it lowers the spread between runs, on constructed result sets."""

from __future__ import annotations

import os
import signal

import numpy as np
import psutil
import pytest

from harness.analysis.calibration import finding, normalized_runs, spread_frame
from harness.analysis.frames import cells_frame
from harness.config.identity import match_key, store_key
from harness.config.matrix import parse_matrix
from harness.launch.calibrator import Calibrator
from harness.launch.supervisor import supervise
from harness.launch.sweep import run_sweep
from harness.measure.peak import bf16_kernels
from harness.measure.steps import Step, summarize_steps
from harness.render.report import render
from harness.results.records import Calibration, CalibrationRun, CellRecord, CellResult
from harness.results.store import ResultStore
from tests.conftest import tiny_matrix


def one_cell(rows_file, tokenizer_dir, **fixed):
    m = tiny_matrix(rows_file, tokenizer_dir, axes={}, exclude=[], calibration=True)
    spec = m.cells[0]
    return spec.model_copy(update={"launch": spec.launch.model_copy(update=fixed)}) if fixed else spec


def test_every_cell_has_a_calibration_before_and_after_on_its_cpus(rows_file, tokenizer_dir, tmp_path, capsys):
    m = tiny_matrix(rows_file, tokenizer_dir, axes={"pinning": ["none", "cores"]}, exclude=[], calibration=True)
    store = run_sweep(m, out=tmp_path / "c")
    records = store.records()
    assert [r.status for r in records] == ["ok", "ok"]
    pids = set()
    for r in records:
        cal = r.calibration
        assert cal is not None and cal.note is None and cal.threads == 1 == r.result.torch_threads
        cell_cpus = r.launch.placement.cpus if r.launch.placement else sorted(os.sched_getaffinity(0))
        assert cal.cpus == cell_cpus
        for run in (cal.before, cal.after):
            assert run.cpus == cell_cpus and run.threads == 1  # every thread of it, read back
            # bf16 only where this CPU has bf16 GEMM kernels (an emulated one would take minutes at this size)
            assert set(run.gflops) == ({"bf16", "fp32"} if bf16_kernels() else {"fp32"})
            assert min(run.gflops.values()) > 1
        assert cal.mean == {d: pytest.approx((cal.before.gflops[d] + cal.after.gflops[d]) / 2) for d in cal.mean}
        assert cal.seconds >= cal.before.seconds + cal.after.seconds
        assert 0 <= cal.idle_cpu_seconds < 0.05  # it waited on its pipe while the cell ran
        pids.add(cal.pid)
    assert [r.launch.placement.cpus if r.launch.placement else None for r in records] == [None, [0]]
    # one process for the sweep, started for the first cell, gone with the sweep
    assert len(pids) == 1 and not psutil.pid_exists(pids.pop())
    first, second = sorted(records, key=lambda r: r.started or "")  # the rounds' order is shuffled
    assert first.calibration.start_seconds > 0 and second.calibration.start_seconds is None
    assert "calibration: 2 cell(s)" in capsys.readouterr().err


def test_a_killed_calibration_process_is_a_note_and_the_cell_is_still_recorded(rows_file, tokenizer_dir, tmp_path):
    spec, store = one_cell(rows_file, tokenizer_dir), ResultStore(tmp_path / "k")
    with Calibrator() as calibrator:
        def kill(done: int, total: int) -> None:
            if calibrator.alive():  # at the first step the launcher hears of
                os.kill(calibrator.pid, signal.SIGKILL)
                calibrator.proc.wait()

        killed = supervise(spec, store_key(spec, "e"), store, on_step=kill, calibrator=calibrator)
        first_pid = killed.calibration.pid
        readings: list[float] = []

        def cpu(done: int, total: int) -> None:
            times = psutil.Process(calibrator.pid).cpu_times()
            readings.append(times.user + times.system)

        # the next cell starts a new process, and says why; read from outside at every step the worker reports,
        # that process's CPU time stands still while the cell runs
        again = supervise(spec, store_key(spec, "f"), store, on_step=cpu, calibrator=calibrator)
    assert killed.status == "ok" and killed.result.summary.tokens_per_second > 0
    cal = killed.calibration
    assert cal.before is not None and cal.after is None and cal.mean == cal.before.gflops
    assert "after: the calibration process was killed by signal 9" in cal.note
    assert again.status == "ok" and again.calibration.before and again.calibration.after
    assert again.calibration.pid != first_pid and again.calibration.start_seconds > 0
    assert "killed by signal 9; started again" in again.calibration.note
    assert len(readings) >= 3 and readings[-1] - readings[0] < 0.02


def test_the_calibration_is_on_unless_the_matrix_turns_it_off():
    assert parse_matrix({"name": "x", "fixed": {"model": "synthetic:tiny"}}).calibration is True
    assert parse_matrix({"name": "x", "fixed": {"model": "synthetic:tiny"}, "calibration": False}).calibration is False


def constructed_set(root, rng, drift, follows, runs=6, noise=0.01, calibration_noise=0.005):
    """Two configurations (fp32 and bf16 GEMMs) of `runs` runs each, interleaved, in the store's own format: run i's
    throughput is drawn around the machine's speed `drift[i]` with a between-run `noise`; its calibration follows
    the drift (`follows`) or not, with a noise of its own."""
    m = parse_matrix({"name": "c", "fixed": {"model": "synthetic:tiny"}, "axes": {"precision": ["fp32", "bf16"]},
                      "repeats": runs})
    store = ResultStore(root)
    store.open(m.document, {"cpu": {}}, "env", [store_key(c, "env") for c in m.cells], resume=False)
    base = {"fp32": 100.0, "bf16": 150.0}
    for cell in m.cells:
        speed = drift[cell.repeat] * rng.lognormal(0.0, noise)
        tps = base[cell.config.precision] * speed
        steps = [Step(step=i + 1, seconds=1000 / tps, compute_seconds=1000 / tps, data_seconds=0.0, tokens=1000,
                      sequences=4) for i in range(4)]
        machine = (drift[cell.repeat] if follows else 1.0) * rng.lognormal(0.0, calibration_noise)
        gflops = {"bf16": 400.0 * machine, "fp32": 200.0 * machine}
        run = {"gflops": gflops, "seconds": 0.5, "cpus": [0, 1], "threads": 2, "cpu_seconds_start": 1.0,
               "cpu_seconds_end": 1.5}
        calibration = Calibration(workload="test", cpus=[0, 1], threads=2, before=CalibrationRun(**run),
                                  after=CalibrationRun(**run), mean=gflops, seconds=1.2, idle_cpu_seconds=0.0)
        key = store_key(cell, "env")
        store.put(key, CellRecord(key=key, match_key=match_key(cell), status="ok", repeat=cell.repeat,
                                  axes={"precision": cell.config.precision}, spec=cell, wall_seconds=60.0,
                                  result=CellResult(summary=summarize_steps(steps, timing_warmup=1), steps=steps),
                                  calibration=calibration))
    return root


DRIFT = [1.0, 1.08, 1.15, 0.95, 1.25, 1.1]  # the machine's speed in each round: 15-30% apart, as seen here


def test_a_drift_the_calibration_follows_is_removed_by_normalizing(tmp_path):
    store = ResultStore(constructed_set(tmp_path / "d", np.random.default_rng(3), DRIFT, follows=True))
    df = cells_frame(store)
    spread = spread_frame(df)
    assert len(spread) == 2 and (spread["runs"] == 6).all()
    assert (spread["CV raw"] > 0.08).all() and (spread["CV normalized"] < 0.03).all()
    found = finding(df)
    assert found.outcome == "lowers" and found.normalize and found.p_value < 0.01
    assert found.cv_normalized < found.cv_raw / 3
    assert found.seconds_per_cell == pytest.approx(1.2) and found.share_of_wall == pytest.approx(1.2 / 60)
    runs = normalized_runs(df)
    assert sorted(len(v) for v in runs.values()) == [6, 6]
    # rescaled: still tokens/s, the fp32 configuration about its undrifted speed times the mean drift
    fp32 = next(v for k, v in runs.items() if df[df["identity"] == k]["precision"].iloc[0] == "fp32")
    assert np.mean(fp32) == pytest.approx(100.0 * np.mean(DRIFT), rel=0.03)
    report = render(store.root, out=tmp_path / "r")
    assert report.calibration.startswith("the calibration took 1.20 s per cell (2.0% of the cells' wall time)")
    assert "normalizing by it lowers the spread between runs here" in report.calibration
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## Calibration beside every cell" in md and "CV normalized" in md


def test_noise_the_calibration_does_not_follow_is_not_removed(tmp_path):
    rng = np.random.default_rng(4)
    store = ResultStore(constructed_set(tmp_path / "n", rng, [1.0] * 6, follows=False, noise=0.05,
                                        calibration_noise=0.05))
    found = finding(cells_frame(store))
    assert not found.normalize and found.outcome in ("raises", "no measurable change")
    assert found.cv_normalized > found.cv_raw  # its own noise is added, nothing taken away
    # and a drift the calibration misses is not removed either
    missed = finding(cells_frame(ResultStore(constructed_set(tmp_path / "m", rng, DRIFT, follows=False))))
    assert not missed.normalize and missed.cv_normalized == pytest.approx(missed.cv_raw, rel=0.3)
    assert "verdicts stay on raw throughput" in missed.sentence()

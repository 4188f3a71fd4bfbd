"""The harness's own efficiency: where a cell's wall time goes, and the fixed cost a configuration's later runs
no longer pay (eval, oneDNN's verbose probe, preparing the data), with the measured steps' work unchanged."""

from __future__ import annotations

import json

import pytest

from harness.config.identity import match_key, store_key
from harness.launch.sweep import run_sweep
from harness.measure.onednn import top_gemm
from harness.measure.peak import bf16_kernels
from harness.measure.phases import PHASES, Phases, WorkerClock, share_line, shares
from harness.measure.steps import Step
from tests.conftest import tiny_matrix

WORK = ("tokens", "sequences", "rows", "slots", "doc_sq", "row_sq")


@pytest.fixture(scope="module")
def runs(rows_file, tokenizer_dir, tmp_path_factory):
    """One configuration, two runs (a cold prepared-data cache), then its second run again with `evaluate: every`."""
    cache = tmp_path_factory.mktemp("phases-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XEONFT_CACHE", str(cache))
        axes = {"precision": ["bf16"], "batch_size": [2]}  # bf16: its GEMMs are oneDNN's, so the probe names one
        m = tiny_matrix(rows_file, tokenizer_dir, name="phases", axes=axes, exclude=[], repeats=2)
        first = run_sweep(m, out=tmp_path_factory.mktemp("sweeps") / "phases")
        every = tiny_matrix(rows_file, tokenizer_dir, name="every", axes=axes, exclude=[], repeats=2,
                            measure={"warmup_steps": 1, "steps": 3, "evaluate": "every"})
        every = every.model_copy(update={"cells": [c for c in every.cells if c.repeat == 1]})
        again = run_sweep(every, out=tmp_path_factory.mktemp("sweeps") / "every")
    return first.records(), again.records()[0], cache, first


def measured_work(record):
    return [[getattr(s, k) for k in WORK] for s in record.result.measured_steps()]


def test_the_phases_add_up_to_the_wall_time_the_launcher_measured(runs):
    (r0, r1), _, _, _ = runs
    for r in (r0, r1):
        assert r.status == "ok", r.reason
        p = r.phases
        assert p.wall == pytest.approx(r.wall_seconds)
        seconds = p.seconds()
        assert all(v >= 0 for v in seconds.values())
        assert sum(seconds.values()) == pytest.approx(p.wall, rel=1e-9)
        inside = sum(v for k, v in seconds.items() if k != "other")
        assert inside <= p.wall  # the worker's own phases fit inside the launcher's wall time, unclamped
        # the worker's clock is the launcher's: what it timed sits between the launch and the exit
        clock = r.result.clock
        assert clock.ended is not None and 0 < clock.ended - clock.began < p.wall - p.startup + 1e-6
        assert p.startup > 0.5 and p.model_load > 0 and p.data_load > 0 and p.trainer_build > 0
        assert p.measured == pytest.approx(r.result.summary.measured_seconds)
        assert p.warmup + p.verbose >= r.result.summary.warmup_seconds
        assert sum(shares([p]).values()) == pytest.approx(1.0)


def test_a_configurations_later_runs_skip_eval_and_the_verbose_probe_and_read_the_prepared_data(runs):
    (r0, r1), _, cache, _ = runs
    assert r0.repeat == 0 and r1.repeat == 1
    assert r0.result.eval_loss is not None and r0.result.evals and r0.phases.eval > 0
    assert r0.result.onednn is not None and r0.phases.verbose > 0 and r0.result.skipped is None
    assert r1.result.eval_loss is None and r1.result.evals == [] and r1.phases.eval == 0
    assert r1.result.onednn is None and r1.phases.verbose == 0 and r1.phases.warmup > 0
    assert r1.result.skipped == ["eval", "onednn"]
    assert r0.phases.data_cache == "miss" and r1.phases.data_cache == "hit"
    assert len(list((cache / "prepared").iterdir())) == 2  # the train split and the eval split, one folder each
    # the same measured work, step by step: the cuts left the measured steps alone
    assert measured_work(r0) == measured_work(r1)
    assert r0.result.train_rows == r1.result.train_rows


def test_a_matrix_can_ask_for_an_evaluation_in_every_run(runs):
    (r0, _), every, _, _ = runs
    assert every.repeat == 1 and every.spec.evaluate == "every"
    assert every.result.eval_loss is not None and every.result.skipped == ["onednn"]
    assert every.result.eval_loss == pytest.approx(r0.result.eval_loss)  # the same training, evaluated the same
    assert measured_work(every) == measured_work(r0)


def test_which_runs_evaluate_is_no_part_of_any_key(rows_file, tokenizer_dir):
    m = tiny_matrix(rows_file, tokenizer_dir, axes={"batch_size": [1]}, exclude=[])
    first = m.cells[0]
    every = first.model_copy(update={"evaluate": "every"})
    assert store_key(first, "e") == store_key(every, "e") and match_key(first) == match_key(every)


def test_the_report_shows_each_configurations_shares_and_the_measured_share(runs, tmp_path):
    from harness.render.report import render

    (r0, r1), _, _, store = runs
    rep = render(store.root, out=tmp_path / "rep")
    report = json.loads((rep.folder / "report.json").read_text())
    rows = report["phases"]
    assert [r["configuration"] for r in rows][-1] == "all cells" and [r["cells"] for r in rows] == [2, 2]
    for row in rows:
        assert sum(v for k, v in row.items() if k not in ("configuration", "cells", "wall s")) == pytest.approx(1.0)
        assert row["wall s"] == pytest.approx(r0.wall_seconds + r1.wall_seconds)
    line = share_line([r0.phases, r1.phases], store.manifest().sweep_clock)
    assert line.startswith("measured steps: ") and "of the cells' " in line and line in rep.notes
    assert "Where the cells' time went" in (rep.folder / "report.md").read_text()
    # the configuration's eval loss and kernels are its first run's, the only one that has them
    top = report["configurations"][0]
    assert top["eval_loss"] == pytest.approx(r0.result.eval_loss)
    assert top["gemm_kernel"] == top_gemm(r0.result.onednn)
    assert bool(top["gemm_kernel"]) == bf16_kernels()  # an emulated bf16 GEMM (an AVX2 CPU) runs no oneDNN kernel


def test_phases_of_a_cell_from_its_clock_and_steps():
    def step(n, seconds):
        return Step(step=n, seconds=seconds, tokens=10)

    clock = WorkerClock(began=100.0, ended=130.0, data_load=1.0, data_prep=2.0, model_load=3.0, trainer_build=1.0,
                        train=20.0, verbose_step=2, verbose_parse=0.5, data_cache="hit")
    steps = [step(1, 2.0), step(2, 4.0), *(step(n, 3.0) for n in (3, 4, 5)), step(6, 1.5)]
    p = Phases.of_cell(wall=36.0, launched=95.0, clock=clock, steps=steps, evals=[{"seconds": 2.0}], saves=None,
                       timing_warmup=2, measured=3)
    assert (p.startup, p.warmup, p.verbose, p.measured, p.profiled, p.eval) == (5.0, 2.0, 4.5, 9.0, 1.5, 2.0)
    assert p.loop == pytest.approx(20.0 - (2 + 4.5 + 9 + 1.5 + 2))  # the probe's parsing is inside train()
    assert sum(p.seconds().values()) == pytest.approx(36.0) and p.other == pytest.approx(36 - 5 - 7 - 20)
    # xeonft's own eval loss runs outside trainer.train(): it is evaluation, taken from 'other', not from the loop
    own = Phases.of_cell(wall=36.0, launched=95.0, clock=clock.model_copy(update={"own_eval": 3.0}), steps=steps,
                         evals=[{"seconds": 2.0}], saves=None, timing_warmup=2, measured=3)
    assert (own.eval, own.loop, own.other) == (5.0, p.loop, pytest.approx(p.other - 3.0))
    failed = Phases.of_cell(wall=7.0, launched=0.0, clock=None, steps=[], evals=[], saves=None, timing_warmup=1,
                            measured=3)
    assert failed.other == 7.0 and set(PHASES) == set(failed.seconds())
    line = share_line([p])
    assert line.startswith("measured steps: 25% of the cells' 36 s; start-up 14%, warm-up with oneDNN verbose 12%, "
                           "other 11%, ")

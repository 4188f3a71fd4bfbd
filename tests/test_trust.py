"""Verdicts that hold on a noisy machine: full-identity grouping, measured steps only, the peak at each cell's own
core count, resumes that leave earlier figures alone, adaptive repeats, old and damaged result sets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from harness.analysis.compare import compare
from harness.analysis.frames import cells_frame
from harness.analysis.summary import baseline, configurations
from harness.base.errors import XeonftError
from harness.cell.recipe import batch_work
from harness.cli import main
from harness.config.identity import match_key
from harness.launch import sweep as sweep_module
from harness.launch.sweep import run_sweep
from harness.measure.memory import vm_hwm
from harness.render.report import render
from harness.results.records import CellRecord
from harness.results.store import ResultStore
from tests.conftest import tiny_matrix
from tests.test_compare import synthetic_set


def test_cells_that_differ_only_in_lora_init_stay_two_configurations(rows_file, tokenizer_dir, tmp_path,
                                                                     monkeypatch):
    """A configuration's identity comes from the cell's spec, which the launcher records: the cells' processes are
    stood in for (what they measure is not the subject)."""
    fake, _ = _fake_supervise(lambda n: 100.0 + n)
    monkeypatch.setattr(sweep_module, "supervise", fake)
    m = tiny_matrix(rows_file, tokenizer_dir, axes={"lora_init": ["olora", "gaussian"]}, exclude=[],
                    measure={"warmup_steps": 1, "steps": 2})
    store = run_sweep(m, out=tmp_path / "init")
    df = cells_frame(store)
    configs = configurations(df)
    assert len(configs) == 2 and df["identity"].nunique() == 2
    assert sorted(configs["variant"]) == ["lora_init=gaussian", "lora_init=olora"]
    # a selector that names both is refused, naming them, when the user gave it
    with pytest.raises(XeonftError, match="matches 2 configurations"):
        baseline(df, "model=synthetic:tiny")
    assert baseline(df, "lora_init=olora")[0] is not None


def test_the_profiled_step_is_never_measured(profiled_sweep):
    store = profiled_sweep
    (record,) = store.records()
    assert len(record.result.steps) == 5
    measured = record.result.measured_steps()
    assert [s.step for s in measured] == [2, 3, 4]  # not step 1 (timing warm-up), not step 5 (profiled)
    from harness.analysis.frames import steps_frame

    steps = steps_frame(store, cells_frame(store))
    assert list(steps.dropna(subset=["seconds"])["measured"]) == [False, True, True, True, False]
    # the worker's own records: noise over the measured window, per-phase memory, the step's work
    res = record.result.model_dump()
    assert res["noise"]["seconds"] > 0 and 0 <= res["noise"]["steal_share"] <= 1
    assert len(res["measured_epoch"]) == 2 and res["measured_epoch"][0] < res["measured_epoch"][1]
    phases = res["memory_phases"]
    assert phases["load_hwm_bytes"] > 50 * 2**20 and phases["train_hwm_bytes"] >= phases["load_hwm_bytes"]
    assert all(s.doc_sq > 0 and s.rows == 1 for s in record.result.steps)
    assert record.result.summary.model_dump()["measured_doc_sq"] == sum(s.doc_sq for s in measured)


def test_a_one_thread_cell_is_measured_against_the_one_thread_peak_and_a_resume_keeps_it(
        rows_file, tokenizer_dir, tmp_path):
    one = {"precision": ["bf16"], "threads": [1]}
    m = tiny_matrix(rows_file, tokenizer_dir, axes=one, exclude=[], peak=True, measure={"warmup_steps": 1, "steps": 2})
    store = run_sweep(m, out=tmp_path / "peak")
    (first,) = store.records()
    by_threads = store.manifest().peak_tflops["by_threads"]
    assert set(by_threads) == {"1"} and first.peak["threads"] == 1
    assert first.peak["bf16"] == pytest.approx(by_threads["1"]["bf16"])
    mfu = cells_frame(store)["mfu"].iloc[0]
    assert 0 < mfu < 1
    # resume with a second cell on two threads: a new peak for it, the first cell's untouched
    both = tiny_matrix(rows_file, tokenizer_dir, axes={"precision": ["bf16"], "threads": [1, 2]}, exclude=[],
                       peak=True, measure={"warmup_steps": 1, "steps": 2})
    run_sweep(both, out=tmp_path / "peak", resume=True)
    df = cells_frame(store)
    assert set(store.manifest().peak_tflops["by_threads"]) == {"1", "2"}
    assert df[df["threads"] == 1]["mfu"].iloc[0] == pytest.approx(mfu)
    assert store.manifest().peak_tflops["by_threads"]["1"] == by_threads["1"]


def _fake_supervise(speeds):
    """A stand-in for the cell process: each call returns an ok record whose throughput comes from `speeds`."""
    calls = []

    def supervise(spec, key, store, on_step=None, disturbance_cores=0.25, calibrator=None):
        calls.append(spec.repeat)
        tps = speeds(len(calls))
        return CellRecord.model_validate({
            "key": key, "match_key": match_key(spec), "repeat": spec.repeat, "status": "ok", "wall_seconds": 1.0,
            "spec": spec.model_dump(mode="json"),
            "result": {"summary": {"tokens_per_second": tps, "measured_tokens": 100, "measured_seconds": 100 / tps}}})

    return supervise, calls


@pytest.mark.parametrize(("spread", "expected_runs"), [(0.0, 3), (0.3, 6)])
def test_repeats_auto_stops_at_min_when_the_spread_is_small_and_goes_to_max_when_not(
        rows_file, tokenizer_dir, tmp_path, monkeypatch, spread, expected_runs):
    rng = np.random.default_rng(0)
    fake, calls = _fake_supervise(lambda n: 100.0 * (1 + spread * rng.uniform(-1, 1)) + 0.01 * n)
    monkeypatch.setattr(sweep_module, "supervise", fake)
    m = tiny_matrix(rows_file, tokenizer_dir, axes={"precision": ["fp32"]}, exclude=[],
                    repeats={"min": 3, "max": 6, "target": 0.03})
    store = run_sweep(m, out=tmp_path / "auto")
    assert sorted(calls) == list(range(expected_runs))
    assert len(store.manifest().cells) == expected_runs == len(store.records())
    configs = configurations(cells_frame(store), target_half_width=0.03)
    assert bool(configs["reached_target"].iloc[0]) is (spread == 0.0)
    md = (render(store.root, out=tmp_path / "r").folder / "report.md").read_text().lower()
    assert "repeats: auto" in md and ("1 of 1 configurations reached it" if spread == 0 else "not reached") in md


def test_repeats_auto_respects_its_budget(rows_file, tokenizer_dir, tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    fake, calls = _fake_supervise(lambda n: 100.0 * (1 + 0.3 * rng.uniform(-1, 1)))
    monkeypatch.setattr(sweep_module, "supervise", fake)
    clock = iter(np.arange(0.0, 10_000.0, 40.0))  # every look at the clock: 40 s later
    monkeypatch.setattr(sweep_module.time, "monotonic", lambda: float(next(clock)))
    m = tiny_matrix(rows_file, tokenizer_dir, axes={"precision": ["fp32"]}, exclude=[],
                    repeats={"min": 2, "max": 8, "target": 0.01, "budget": "100s"})
    run_sweep(m, out=tmp_path / "budget")
    assert max(calls) < 7  # stopped by the budget, not by max


def test_a_result_set_from_before_schema_versions_still_reports_and_compares(tmp_path):
    rng = np.random.default_rng(7)
    old, new = synthetic_set(tmp_path / "old", rng), synthetic_set(tmp_path / "new", rng)
    for path in (old / "cells").glob("*.json"):  # version 1: the same layout without the field
        data = json.loads(path.read_text())
        data.pop("schema_version")
        path.write_text(json.dumps(data))
    manifest = json.loads((old / "manifest.json").read_text())
    manifest.pop("schema_version")
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert compare(old, new).cells and render(old, out=tmp_path / "r", baseline="batch_size=1").folder.is_dir()


def test_damaged_and_newer_cell_files_are_named_not_fatal(tmp_path, capsys):
    rng = np.random.default_rng(8)
    root = synthetic_set(tmp_path / "s", rng)
    cells = sorted((root / "cells").glob("*.json"))
    cells[0].write_text(cells[0].read_text()[:40])  # truncated
    cells[1].write_bytes(b"\xff\xfe not utf-8")
    store = ResultStore(root)
    assert len(store.records()) == len(cells) - 2
    err = capsys.readouterr().err
    assert str(cells[0]) in err and str(cells[1]) in err and "damaged" in err
    assert main(["report", str(root), "--out", str(tmp_path / "r"), "--baseline", "batch_size=2"]) == 0
    newer = json.loads(cells[2].read_text())
    newer["schema_version"] = 99
    cells[2].write_text(json.dumps(newer))
    with pytest.raises(XeonftError, match="newer than this xeonft reads"):  # refused, never misread
        store.records()
    newer["schema_version"] = 2
    cells[2].write_text(json.dumps(newer))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert main(["report", str(root)]) == 2
    assert "newer than this xeonft reads" in capsys.readouterr().err


def test_the_work_of_a_packed_step_is_counted_per_document():
    # one padding-free row of three documents (lengths 3, 2, 4)
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    work = batch_work({"input_ids": torch.zeros_like(pos), "position_ids": pos})
    assert work == {"tokens": 9, "sequences": 3, "rows": 1, "slots": 9, "doc_sq": 9 + 4 + 16, "row_sq": 81}
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    padded = batch_work({"input_ids": torch.zeros_like(mask), "attention_mask": mask})
    assert padded == {"tokens": 5, "sequences": 2, "rows": 2, "slots": 8, "doc_sq": 9 + 4, "row_sq": 32}


PHASES = """
from harness.measure.memory import PhasePeaks
peaks = PhasePeaks()
peaks.end("load")
block = bytearray(96 * 2**20); block[::4096] = b"x" * len(block[::4096])  # 96 MiB while training
del block
peaks.end("train")
small = bytearray(8 * 2**20); small[::4096] = b"x" * len(small[::4096])
peaks.end("eval")
print(peaks.summary())
"""


def test_phase_marks_name_the_phase_that_set_the_peak_and_leave_the_kernels_maximum_alone():
    """In a fresh process: the mark at each phase's end, and the phase that set the peak; the mark is never reset
    (it is what /usr/bin/time and getrusage report as the process's maximum RSS)."""
    import ast
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", PHASES], capture_output=True, text=True, check=True).stdout
    summary = ast.literal_eval(out.strip())
    assert summary["train_hwm_bytes"] > summary["load_hwm_bytes"] + 90 * 2**20
    assert summary["peak_phase"] == "train" and summary["eval_hwm_bytes"] == summary["peak_bytes"]
    assert vm_hwm() is not None


def test_report_headline_is_worded_by_its_interval(tmp_path):
    rng = np.random.default_rng(9)
    same = synthetic_set(tmp_path / "same", rng, speed=(100.0, 101.0), run_cv=0.2, repeats=3)
    text = json.loads((render(same, out=tmp_path / "r1", baseline="batch_size=1").folder / "report.json").read_text())
    assert "not distinguishable from the baseline" in text["headline"] or "which is the baseline" in text["headline"]
    fast = synthetic_set(tmp_path / "fast", rng, speed=(100.0, 150.0), run_cv=0.02, repeats=5)
    text = json.loads((render(fast, out=tmp_path / "r2", baseline="batch_size=1").folder / "report.json").read_text())
    assert "1.5" in text["headline"] and "95% interval" in text["headline"]
    top = text["top"]
    assert all(r["CV"] is not None and r["95% interval"] != "-" for r in top)

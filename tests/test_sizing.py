"""Sizing (issue 13): memory budgets, the OOM boundary, the fits, trl's packed tokens, the projection."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import cli
from harness.base.units import parse_bytes
from harness.config.identity import hashed_document, match_key, store_key
from harness.config.spec import CellSpec, LaunchSettings
from harness.sizing.fit import fit_memory, fit_scaling
from harness.sizing.project import JobShape, RunRates, prediction_interval, project, run_seconds, schedule
from harness.sizing.search import Probe, bounds, next_batch, safe_batch, search

GIB = 2**30
DATA = Path(__file__).parent / "data"
# sizing.json as main wrote it at 8a30fe4, before the findings were typed (tests/data, from the end-to-end test
# below: a boundary search, one placement, a soak, --cores 8, a price and a validation of half the job), and one of
# a given batch (no probes, no soak); with the report that code rendered from each
OLD = ("sizing-8a30fe4", "sizing-8a30fe4-batch-given")


def _threshold_probe(limit: int, calls: list[int]):
    def probe(batch: int) -> Probe:
        calls.append(batch)
        return Probe(batch=batch, ok=batch <= limit, peak_bytes=batch * 100, tokens_per_step=batch * 10.0,
                     status="ok" if batch <= limit else "oom")
    return probe


@settings(max_examples=100, deadline=None)
@given(limit=st.integers(0, 300), max_batch=st.integers(1, 256))
def test_the_search_finds_the_boundary_in_logarithmic_probes(limit, max_batch):
    calls: list[int] = []
    tried = search(_threshold_probe(limit, calls), max_batch, lambda b: True)
    ok, failed = bounds(tried)
    assert ok == min(limit, max_batch)
    if limit < max_batch:
        assert failed == limit + 1  # the next batch ended over the budget
    assert len(calls) == len(set(calls))  # no batch probed twice
    assert len(calls) <= 2 * math.ceil(math.log2(max_batch + 1)) + 2


def test_the_search_stops_when_time_runs_out_and_safe_batch_keeps_the_margin():
    calls: list[int] = []
    tried = search(_threshold_probe(50, calls), 256, lambda b: b <= 8)
    assert calls == [1, 2, 4, 8] and next_batch(tried, 256) == 16
    # peaks are batch x 100 bytes: with 1000 bytes and a 25% margin, 7.5 batches' worth may be used
    probes = {b: Probe(b, b <= 9, b * 100, None, "ok") for b in range(1, 12)}
    assert safe_batch(probes, 1000, 0.25) == 7
    assert safe_batch({1: Probe(1, False, 2000, None, "oom")}, 1000, 0.1) == 0


def test_the_memory_fit_recovers_a_known_slope():
    rng = np.random.default_rng(0)
    tokens = [512, 1024, 2048, 3072, 4096]
    peaks = [1.5 * GIB + 600_000 * t + rng.normal(0, 5e6) for t in tokens]
    fit = fit_memory(tokens, peaks)
    assert fit is not None and fit.n == 5
    assert fit.per_token == pytest.approx(600_000, rel=0.02)
    assert fit.fixed == pytest.approx(1.5 * GIB, rel=0.02)
    assert fit.r2 is not None and fit.r2 > 0.99
    budget = 8 * GIB
    assert fit.predict(fit.max_tokens(budget, 0.1)) == pytest.approx(0.9 * budget)
    assert fit_memory([512, 512], [1.0, 2.0]) is None  # one token count fits no slope


def test_the_growth_fit_projects_a_logarithmic_rise_and_bounds_it_with_a_line():
    from harness.sizing.growth import fit_growth

    steps = np.arange(1, 41)
    # a peak that rises by 50 MiB per e-fold of the steps (record highs), on 1 GiB, step 1 holding the load
    hwm = [int(3 * GIB)] + [int(GIB + 50 * 2**20 * np.log(n)) for n in steps[1:]]
    g = fit_growth(hwm)
    assert g is not None and g.steps == 40 and g.log_slope == pytest.approx(50 * 2**20, rel=1e-3)
    point, upper = g.factors(400)
    assert point == pytest.approx((GIB + 50 * 2**20 * np.log(400)) / (GIB + 50 * 2**20 * np.log(40)), rel=1e-3)
    assert upper > point  # the straight line through the later half keeps growing
    assert g.factors(40) == (1.0, 1.0) and g.factors(10) == (1.0, 1.0)
    # a flat peak grows by nothing; too few steps fit no curve
    flat = fit_growth([int(GIB)] * 30)
    assert flat is not None and flat.factors(1000) == pytest.approx((1.0, 1.0))
    assert fit_growth([int(GIB)] * 5) is None
    # readings that fall back (two ranks' peaks interleaved) are read as the peak so far
    zigzag = [int(GIB + (n % 2) * 100 * 2**20 + n * 2**20) for n in range(1, 31)]
    z = fit_growth(zigzag)
    assert z is not None and z.last_bytes == max(zigzag)


def test_amdahl_fit_recovers_the_serial_share():
    t1, serial = 100.0, 0.2
    cores = [1, 2, 4, 8]
    fit = fit_scaling(cores, [t1 / (serial + (1 - serial) / c) for c in cores])
    assert fit is not None
    assert fit.serial == pytest.approx(serial, abs=1e-6) and fit.t1 == pytest.approx(t1)
    assert fit.predict(32) == pytest.approx(t1 / (serial + (1 - serial) / 32))
    assert fit_scaling([2, 2], [1.0, 1.1]) is None


def test_the_schedule_follows_the_trainers_rules():
    job = JobShape(train_rows=1000, eval_rows=50, packed_rows=103, train_tokens=50_000, eval_tokens=5_000,
                   seq_len=512, longest_row=512)
    # 103 packed rows, 4 per step: 26 steps; evaluation at 5, 10, ..., 25 and at the last step; a save at 20, 26
    assert schedule(job, 4, eval_steps=5, save_steps=20) == type(schedule(job, 1))(steps=26, evals=6, saves=2)
    # two ranks share the rows (52 each): 13 steps; gradient accumulation of 2: 7 optimizer steps
    assert schedule(job, 4, ranks=2).steps == 13
    assert schedule(job, 4, ranks=2, grad_accum=2).steps == 7
    assert schedule(job, 4, epochs=2).steps == 52
    assert schedule(job, 4, max_steps=10, eval_steps=5).evals == 2


def test_the_projection_adds_its_parts_per_run_and_predicts_one_more_run():
    job = JobShape(train_rows=100, eval_rows=10, packed_rows=40, train_tokens=20_000, eval_tokens=2_000,
                   seq_len=512, longest_row=512)
    plan = schedule(job, 4, eval_steps=5, save_steps=100)  # 10 steps, 2 evaluations, 1 save
    rates = RunRates(tokens_per_second=100.0, eval_tokens_per_second=400.0, save_seconds=3.0, fixed_seconds=20.0)
    parts = run_seconds(rates, job, plan, per_epoch_steps=10)
    assert parts == {"train": 200.0, "eval": 10.0, "save": 3.0, "fixed": 20.0, "total": 233.0}
    half = run_seconds(rates, job, schedule(job, 4, eval_steps=5, save_steps=100, max_steps=5), 10)
    assert half["train"] == 100.0 and half["eval"] == 5.0
    runs = [rates, RunRates(80.0, 400.0, 3.0, 20.0), RunRates(120.0, 400.0, 3.0, 20.0)]
    proj = project(runs, job, plan, 10)
    totals = [233.0, 250 + 33.0, 20_000 / 120 + 33.0]
    logs = np.log(totals)
    assert proj.seconds == pytest.approx(math.exp(logs.mean()))
    from scipy import stats

    margin = stats.t.ppf(0.975, 2) * logs.std(ddof=1) * math.sqrt(1 + 1 / 3)
    assert (proj.low, proj.high) == pytest.approx((math.exp(logs.mean() - margin), math.exp(logs.mean() + margin)))
    assert prediction_interval([100.0]) == (pytest.approx(100.0), None, None)  # one run: cannot tell


def test_the_jobs_schedule_is_the_configs():
    from harness.config.finetune import load_config
    from harness.sizing.project import epoch_steps, job_schedule

    job = JobShape(train_rows=1000, eval_rows=50, packed_rows=103, train_tokens=50_000, eval_tokens=5_000,
                   seq_len=512, longest_row=512)
    cfg = load_config("quick", eval_steps=5, save_steps=20, num_train_epochs=2.0,
                      gradient_accumulation_steps=2).model_copy(update={"max_steps": None})
    assert job_schedule(cfg, job, 4, 1) == schedule(job, 4, 1, 2, 2.0, 5, 20)  # 26 steps: 13 an epoch, twice
    assert job_schedule(cfg, job, 4, 1).steps == 2 * epoch_steps(cfg, job, 4, 1) == 26
    assert job_schedule(cfg, job, 4, 2, max_steps=5) == schedule(job, 4, 2, 2, 2.0, 5, 20, 5)
    unsaved = cfg.model_copy(update={"save_checkpoints": False, "max_steps": 8})
    assert job_schedule(unsaved, job, 4, 1) == schedule(job, 4, 1, 2, 2.0, 5, None, 8)  # no saves; the config's max


def _record(wall: float, status: str = "ok", **result):
    from harness.config.finetune import load_config
    from harness.results.records import CellRecord

    spec = CellSpec(config=load_config("quick"), launch=LaunchSettings(), warmup_steps=1, measured_steps=3)
    return CellRecord.model_validate({"key": "k", "status": status, "wall_seconds": wall, "spec": spec,
                                      "result": result})


def test_fixed_seconds_is_one_rule_for_probes_projections_and_validation():
    """A run's fixed cost is its wall time less its steps at the measured rate, its evaluations and its saves: the
    probe (which once kept its evaluation and save in it), the projection's rates and a validation's parts agree."""
    from harness.sizing.project import fixed_seconds, rates_from_record
    from harness.sizing.size import _probe
    from harness.sizing.validate import _actual_parts

    # 1000 tokens at 100 tok/s: 10 s of steps; one 5 s evaluation and one 3 s save in 100 s: 82 s fixed
    record = _record(100.0, summary={"tokens_per_second": 100.0, "measured_tokens": 600, "measured_steps": 3},
                     steps=[{"step": i, "seconds": 2.5, "tokens": 250} for i in range(4)],
                     evals=[{"seconds": 5.0}], saves=[{"seconds": 3.0}])
    assert fixed_seconds(record) == pytest.approx(82.0)
    rates = rates_from_record(record, eval_tokens=400)
    assert rates is not None and rates.fixed_seconds == pytest.approx(82.0) and rates.eval_tokens_per_second == 80
    assert _probe(record, 4).fixed_seconds == pytest.approx(82.0)
    assert _actual_parts(record) == pytest.approx({"train": 10.0, "eval": 5.0, "save": 3.0, "fixed": 82.0})
    failed = _record(30.0, status="oom", summary={"tokens_per_second": 100.0})
    assert fixed_seconds(failed) is None and rates_from_record(failed, 400) is None
    assert _probe(failed, 8).fixed_seconds is None and not _probe(failed, 8).ok


def test_the_memory_breakdown_reads_the_precisions_widths():
    from harness.measure.flops import lora_parameters
    from harness.measure.shapes import SHAPES
    from harness.sizing.fit import breakdown

    # the tiny model as the old sizing.json's fp32 job had it: its breakdown, to the byte
    model = {**SHAPES["tiny"], "vocab_size": 600, "parameters": 112_448}
    old = json.loads((DATA / f"{OLD[0]}.json").read_text())["breakdown"]
    fp32 = breakdown(model, "fp32", 8, "all-linear", False, None)
    assert fp32 is not None and fp32.model_dump(exclude_unset=True) == {k: old[k] for k in (
        "weights_bytes", "adapters_optimizer_bytes", "activations_bytes_per_token", "logits_bytes_per_token")}
    assert fp32.adapters_optimizer_bytes == lora_parameters(model, 8) * 16
    bf16 = breakdown(model, "bf16", 8, "all-linear", False, None)
    mixed = breakdown(model, "bf16-mixed", 8, "all-linear", False, None)
    assert bf16 is not None and mixed is not None
    assert bf16.weights_bytes == mixed.weights_bytes == fp32.weights_bytes // 2  # bf16 base weights
    assert bf16.adapters_optimizer_bytes == fp32.adapters_optimizer_bytes  # adapters stay fp32
    assert mixed.logits_bytes_per_token == bf16.logits_bytes_per_token + 2 * 600  # autocast's bf16 copy
    assert (fp32.activations_bytes_per_token - fp32.logits_bytes_per_token
            == 2 * (bf16.activations_bytes_per_token - bf16.logits_bytes_per_token))


@pytest.mark.parametrize("name", OLD)
def test_a_sizing_json_from_before_the_models_reads_renders_and_writes_back_as_it_was(name, tmp_path):
    from harness.render.sizing import render_sizing
    from harness.sizing.findings_model import load_findings

    raw = json.loads((DATA / f"{name}.json").read_text())
    shutil.copy(DATA / f"{name}.json", tmp_path / "sizing.json")
    f = load_findings(tmp_path)
    assert f.recommendation is not None and f.recommendation.layout.numa is False  # from the label
    report = render_sizing(f, tmp_path / "report")
    assert (report / "report.md").read_text() == (DATA / f"{name}-report.md").read_text()  # as the old code drew it
    # written back: the same keys and values, `numa` beside each label, and the config's `quant` at its default
    for row in [*raw["placements"], raw["recommendation"]]:
        row["numa"] = False
    raw["request"]["config"]["quant"] = "none"
    assert json.loads((report / "sizing.json").read_text()) == raw
    f.write(tmp_path / "sizing.json")
    assert load_findings(tmp_path) == f


def test_a_placement_is_a_typed_layout_and_its_label_is_made_from_it():
    from harness.sizing.cells import Layout
    from harness.sizing.findings_model import PlacementRow

    old = {"placement": "2 x 4 threads (one per NUMA node)", "threads": 4, "ranks": 2, "cores": 8,
           "batch_per_rank": 2, "runs": 0, "failed": ["oom: over"], "disturbed": 0, "peak_rss_bytes": None}
    row = PlacementRow.model_validate(old)  # a file from before `numa`: read from the label, once
    assert row.layout == Layout(4, 2, numa=True) and row.cores == 8
    assert row.model_dump(exclude_unset=True) == {**old, "numa": True}
    plain = row.model_copy(update={"numa": False})
    assert plain.placement == Layout(4, 2).label() == "2 x 4 threads" and plain.model_dump()["cores"] == 8
    assert PlacementRow.model_validate(plain.model_dump()).layout == Layout(4, 2)


def _old_findings():
    from harness.sizing.findings_model import Findings

    return Findings.model_validate(json.loads((DATA / f"{OLD[0]}.json").read_text()))


def test_extrapolating_to_more_cores_needs_two_measured_core_counts_and_says_so():
    from harness.sizing.findings import extrapolate, scaling_fit
    from harness.sizing.request import SizeRequest

    f = _old_findings()
    rec, (one,) = f.recommendation, f.placements
    req = SizeRequest(cfg=f.request.config, memory=f.request.memory_bytes, cores=(8, 32))
    assert scaling_fit([one]) is None
    out, why = extrapolate([one], rec, None, req)
    assert out == [] and why is not None
    assert "no projection to 8, 32 cores" in why and "two core counts" in why and "only 1 core" in why
    assert extrapolate([one], rec, None, SizeRequest(cfg=req.cfg, memory=req.memory)) == ([], None)  # not asked
    two = one.model_copy(update={"threads": 2, "tokens_per_second": 1.6 * (one.tokens_per_second or 0)})
    scaling = scaling_fit([one, two])
    assert scaling is not None and scaling.cores_measured == (1, 2)
    out, why = extrapolate([one, two], rec, scaling, req)
    assert why is None and [e.cores for e in out] == [8, 32] and all(e.extrapolation for e in out)
    assert out[0].seconds < rec.projected_seconds and out[1].seconds < out[0].seconds and out[0].speedup > 1.6
    assert "fitted over 1, 2 cores" in out[0].source and out[0].model_dump()["from"] == out[0].source


def test_the_soak_runs_the_recommended_layout_and_returns_a_new_recommendation():
    from harness.results.records import CellRecord
    from harness.sizing.request import SizeRequest
    from harness.sizing.soak import soak

    f = _old_findings()
    numa = {"threads": 1, "ranks": 2, "numa": True}
    rec = f.recommendation.model_copy(update=numa)
    row = f.placements[0].model_copy(update=numa)
    req = SizeRequest(cfg=f.request.config, memory=f.request.memory_bytes, soak_max=20)
    asked = []

    def run(spec, label, role):
        asked.append(spec)
        return CellRecord.model_validate({
            "key": "soaked", "status": "ok", "spec": spec, "memory": {"peak_rss_bytes": GIB},
            "result": {"steps": [{"step": i, "seconds": 1.0, "tokens": 100, "hwm_bytes": int(GIB + 2**20 * i)}
                                 for i in range(1, 21)]}})

    soaked, after = soak(req, row, rec, seconds_left=3600, run=run)
    (spec,) = asked
    assert (spec.launch.ranks, spec.launch.pinning, spec.config.threads) == (2, "numa", 1)  # the typed layout
    assert spec.config.max_steps == 20 and spec.config.batch_size == rec.batch_per_rank
    assert soaked is not None and soaked.ran and soaked.steps == 20 and soaked.job_steps == rec.steps == 158
    assert soaked.growth is not None and soaked.factor_high >= soaked.factor >= 1
    assert after is not rec and rec == f.recommendation.model_copy(update=numa)  # the one passed in is unchanged
    assert after.projected_peak_high_bytes >= after.projected_peak_bytes >= GIB
    assert after.peak_from == "soak of 20 steps, grown to 158" and after.provision_gib >= 2
    none, same = soak(req, row, rec, seconds_left=1.0, run=run)  # no time: nothing runs, the recommendation stays
    assert none is not None and not none.ran and same is rec and len(asked) == 1


def test_memory_sizes_parse_and_a_budget_joins_a_cells_identity_only_when_set():
    assert parse_bytes("6GiB") == 6 * GIB and parse_bytes("6G") == 6 * GIB and parse_bytes("6GB") == 6 * 10**9
    assert parse_bytes("512 MiB") == 512 * 2**20 and parse_bytes(2**30) == 2**30
    for bad in ("lots", "6 parsecs", "1KiB", True):
        with pytest.raises(ValueError):
            parse_bytes(bad)
    from harness.config.finetune import load_config

    cfg = load_config("quick")
    plain = CellSpec(config=cfg, launch=LaunchSettings(), warmup_steps=1, measured_steps=2)
    capped = plain.model_copy(update={"launch": LaunchSettings(memory_limit="6GiB")})
    assert capped.launch.memory_limit == 6 * GIB
    assert "memory_limit" not in json.dumps(hashed_document(plain, {}))  # earlier result sets keep their keys
    assert store_key(plain, "e") != store_key(capped, "e") and match_key(plain) != match_key(capped)


def test_run_memory_limit_caps_every_cell_and_a_bad_one_is_one_message(rows_file, tokenizer_dir, tmp_path, capsys):
    from conftest import tiny_matrix

    m = tiny_matrix(rows_file, tokenizer_dir).with_memory_limit("3GiB")
    assert {c.launch.memory_limit for c in m.cells} == {3 * GIB}
    path = tmp_path / "m.yaml"
    path.write_text(json.dumps(tiny_matrix(rows_file, tokenizer_dir).document))
    assert cli.main(["run", str(path), "--out", str(tmp_path / "o"), "--memory-limit", "plenty"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a memory size" in err and "Traceback" not in err


def _cell_processes() -> list[psutil.Process]:
    me = psutil.Process()
    return [p for p in me.children(recursive=True) if "harness.cell.worker" in " ".join(p.cmdline())]


@pytest.mark.parametrize("enforcer", ["auto", "sampler"])
def test_a_cell_over_its_budget_ends_oom_and_leaves_nothing_behind(rows_file, tokenizer_dir, tmp_path, monkeypatch,
                                                                   enforcer):
    from conftest import tiny_matrix

    from harness.launch.budget import MemoryCap
    from harness.launch.sweep import run_sweep

    if enforcer == "sampler":
        monkeypatch.setenv("XEONFT_MEMORY_CAP", "sampler")
    m = tiny_matrix(rows_file, tokenizer_dir, axes={"memory_limit": ["300MiB", "6GiB"]}, exclude=[])
    store = run_sweep(m, out=tmp_path / "set")
    by_limit = {r.budget.limit_bytes: r for r in store.records()}
    small, large = by_limit[300 * 2**20], by_limit[6 * GIB]
    probe = MemoryCap.open(GIB)  # what this machine allows
    probe.close()
    method = probe.method if enforcer == "auto" else "sampler"
    assert small.status == "oom" and "over its memory budget of 0.29 GiB" in (small.reason or "")
    assert small.budget.exceeded and small.budget.method == method
    assert small.budget.step_reached == 0  # a Python with torch and a model does not fit 300 MiB
    assert large.status == "ok" and not large.budget.exceeded and large.budget.step_reached == 4
    assert large.memory and large.memory.peak_rss_bytes < 6 * GIB
    assert not _cell_processes()  # no process of either cell is left
    if method.startswith("cgroup"):  # and no cgroup: each was removed with its cell
        assert probe.folder is not None
        parent = probe.folder.parent
        assert not any(p.name.startswith("xeonft-cell-") for p in parent.iterdir())


def test_the_packed_tokens_are_what_trl_trains(rows_file, tokenizer_dir, tmp_path):
    """The job's shape counts trl's packed rows; a real epoch of training steps through exactly those tokens."""
    from harness.config.finetune import load_config
    from harness.launch.supervisor import supervise
    from harness.results.store import ResultStore
    from harness.sizing import cells as C
    from harness.sizing.job import job_shape

    cfg = load_config("quick", model="synthetic:tiny", tokenizer=str(tokenizer_dir), dataset=str(rows_file),
                      seq_len=256, eval_size=4, threads=1, warmup_steps=0)
    job = job_shape(cfg)
    assert job.train_rows == 20 and job.eval_rows == 4
    assert job.longest_row <= 256 and job.packed_rows < job.train_rows  # short rows share packed sequences
    plan = schedule(job, 2, eval_steps=None)
    spec = C.cell(cfg, 2, C.Layout(1), 4 * GIB, 1, plan.steps - 1, None, save=False, max_steps=plan.steps)
    store = ResultStore(tmp_path / "set")
    record = supervise(spec, "epoch", store)
    assert record.status == "ok", record.reason
    assert record.result is not None and len(record.result.steps) == plan.steps
    assert sum(s.tokens for s in record.result.steps) == job.train_tokens
    assert sum(s.sequences or 0 for s in record.result.steps) == job.train_rows  # every row, none split


def _same_layout(new, old) -> bool:
    """Whether two JSON values have the same keys and kinds of value throughout (a list's first items standing
    for it; null matching anything, as an optional part that one run had and another did not)."""
    if new is None or old is None:
        return True
    if isinstance(new, dict) and isinstance(old, dict):
        return new.keys() == old.keys() and all(_same_layout(new[k], old[k]) for k in new)
    if isinstance(new, list) and isinstance(old, list):
        return not new or not old or _same_layout(new[0], old[0])
    number = (int, float)
    return type(new) is type(old) or (isinstance(new, number) and isinstance(old, number)
                                      and not isinstance(new, bool) and not isinstance(old, bool))


def test_size_finds_the_boundary_projects_and_validates(rows_file, tokenizer_dir, tmp_path, capsys):
    """On the tiny model with a budget between batch 1's and batch 16's peaks: the largest batch that trains, the
    next one `oom` by the budget, a recommendation, a report, and a validation run beside its projection. Long
    packed rows without checkpointing make a step's memory grow by ~100 MB from batch 1 to 16."""
    from harness.results.store import ResultStore

    common = ["--model", "synthetic:tiny", "--tokenizer", str(tokenizer_dir), "--dataset", str(rows_file),
              "--seq-len", "512", "--precision", "fp32", "--no-gradient-checkpointing", "--attn-implementation",
              "varlen", "--eval-size", "4", "--eval-steps", "3", "--placements", "1x1", "--budget", "6m",
              "--rows", "1500", "--soak-steps", "0"]
    # calibrate: batch 1 and batch 16 under a roomy budget give the two peaks the real budget lies between
    calib = tmp_path / "calib"
    peaks = []
    for batch in ("16", "1"):
        assert cli.main(["size", *common, "--memory-limit", "4GiB", "--out", str(calib), "--batch-size", batch,
                         "--report-out", str(tmp_path / "r0"), "--runs", "1"]) == 0
        peaks.append(json.loads((calib / "sizing.json").read_text())["placements"][0]["peak_rss_bytes"])
    high, low = peaks
    assert high > low + 50 * 2**20
    budget = (low + high) // 2
    out, report = tmp_path / "size", tmp_path / "report"
    assert cli.main(["size", *common, "--memory-limit", str(budget), "--margin", "0%", "--out", str(out),
                     "--report-out", str(report), "--cores", "8,16", "--price-per-hour", "3", "--validate", "0.5",
                     "--runs", "2", "--soak-steps", "12"]) == 0
    f = json.loads((out / "sizing.json").read_text())
    b = f["boundary"]
    # (under the cap the kernel reclaims file pages, so the boundary can lie past batch 16: it is still found)
    assert b["found"] and 1 <= b["largest_ok"] < 64 and b["smallest_failed"] == b["largest_ok"] + 1
    records = {r.key: r for r in ResultStore(out).records()}
    probes = {p["batch"]: p for p in f["probes"]}
    over, under = records[probes[b["smallest_failed"]]["key"]], records[probes[b["largest_ok"]]["key"]]
    assert over.status == "oom" and over.budget and over.budget.exceeded
    assert under.status == "ok" and under.budget and not under.budget.exceeded
    rec = f["recommendation"]
    assert rec["batch_per_rank"] == b["fastest_safe_batch"] <= b["largest_ok"] and rec["placement"] == "1 x 1 thread"
    assert rec["cost"] == pytest.approx(rec["hours"] * 3)
    # --cores over placements of one core count: no projection, and the summary, sizing.json and the report say
    # why (it once returned nothing, silently; test_extrapolating_... has the curve)
    why = f["no_extrapolation"]
    assert f["extrapolations"] == [] and f["scaling"] is None
    assert why.startswith("no projection to 8, 16 cores") and "two core counts" in why and "only 1 core" in why
    assert why in " ".join(capsys.readouterr().err.split())  # said in the summary (the console wraps lines)
    # the file has the layout sizing.json had before its models (the old one came from these very flags)
    old = json.loads((DATA / f"{OLD[0]}.json").read_text())
    for row in [*old["placements"], old["recommendation"]]:
        row["numa"] = False  # the keys added since
    old["fingerprint"] |= {"kind": "", "hostname": ""}
    old["request"]["config"]["quant"] = "none"  # joined later
    assert _same_layout(f, old | {"no_extrapolation": ""})
    # the soak: the recommended configuration for 12 of the job's steps, each step's peak recorded and fitted
    soak = f["soak"]
    assert soak["ran"] and soak["status"] == "ok" and soak["steps"] == 12 < soak["job_steps"] == rec["steps"]
    soaked = records[soak["key"]]
    assert len(soaked.result.steps) == 12 and all(st.hwm_bytes for st in soaked.result.steps)
    assert [st.hwm_bytes for st in soaked.result.steps] == sorted(st.hwm_bytes for st in soaked.result.steps)
    assert 1 <= soak["factor"] <= soak["factor_high"]
    assert rec["projected_peak_bytes"] >= soak["projected_peak_bytes"] and rec["peak_from"].startswith("soak of 12")
    assert rec["projected_peak_high_bytes"] >= rec["projected_peak_bytes"]
    v = f["validation"]
    assert v["status"] == "ok" and v["actual_seconds"] > 0 and v["actual_peak_bytes"] > 0
    assert v["projected_peak_high_bytes"] >= v["projected_peak_bytes"] > 0
    assert 0.4 <= v["fraction"] <= 0.6
    assert (report / "index.html").is_file() and (report / "memory.png").is_file()
    text = (report / "report.md").read_text()
    assert "Validation: projected against actual" in text and "recommendation: batch" in text
    assert "Memory over the job: the soak run" in text and why in text
    assert not _cell_processes()


@pytest.mark.parametrize("flags, message", [
    (["--memory-limit", "lots"], "not a memory size"),
    (["--memory-limit", "4GiB", "--placements", "two"], "THREADSxRANKS"),
    (["--memory-limit", "4GiB", "--budget", "soon"], "not a duration"),
    (["--memory-limit", "4GiB", "--margin", "150%"], "--margin"),
    (["--memory-limit", "4GiB", "--model", "nowhere/at/all/x"], "model directory not found"),
])
def test_bad_size_requests_are_one_message(flags, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["size", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()  # nothing was created for a request that could not run


def test_a_quantized_base_is_sized_at_its_formats_bytes_for_the_decoder_linears_only():
    from harness.measure.shapes import SHAPES
    from harness.sizing.fit import breakdown

    model = {**SHAPES["llama-3.1-8b"], "parameters": 8_030_261_248}  # Llama-3.1-8B's own count
    h, inter, kv = 4096, 14336, 1024
    linears = 32 * (2 * h * h + 2 * h * kv + 3 * h * inter)  # q, o; k, v; gate, up, down: by hand
    dense = breakdown(model, "bf16-mixed", 8, "all-linear", True, None)
    nf4 = breakdown(model, "bf16-mixed", 8, "all-linear", True, None, quant="nf4")
    int8 = breakdown(model, "bf16-mixed", 8, "all-linear", True, None, quant="int8")
    assert dense is not None and nf4 is not None and int8 is not None
    assert dense.weights_bytes == 2 * model["parameters"] and dense.dense_weights_bytes is None
    assert nf4.dense_weights_bytes == dense.weights_bytes
    # half a byte a weight, an 8-bit absmax per 64 and an fp32 scale per 256 absmaxes; embeddings and head in bf16
    assert nf4.weights_bytes == int((model["parameters"] - linears) * 2 + linears * (0.5 + (1 + 4 / 256) / 64))
    assert int8.weights_bytes == int((model["parameters"] - linears) * 2 + linears)
    assert 5.2 * 2**30 < nf4.weights_bytes < 5.4 * 2**30 < 14.9 * 2**30 < dense.weights_bytes
    # what the adapters and activations need does not change with how the base is stored
    assert nf4.adapters_optimizer_bytes == dense.adapters_optimizer_bytes
    assert nf4.activations_bytes_per_token == dense.activations_bytes_per_token


def test_the_answer_for_a_quantized_base_says_whether_the_dense_base_would_fit(tmp_path):
    from harness.render.sizing import summary_lines
    from harness.sizing.findings_model import load_findings

    shutil.copy(DATA / "sizing-8a30fe4.json", tmp_path / "sizing.json")
    f = load_findings(tmp_path)
    assert f.breakdown is not None and f.recommendation is not None
    assert not any(line.lstrip().startswith("weights:") for line in summary_lines(f))  # a dense job: no such line
    peak, budget = f.recommendation.projected_peak_bytes or 0, f.request.memory_bytes
    for extra, verdict in ((budget - peak - 1, "within"), (budget - peak + 1, "beyond")):
        quantized = f.model_copy(update={
            "request": f.request.model_copy(update={"config": f.request.config.replace(quant="nf4")}),
            "breakdown": f.breakdown.model_copy(update={"dense_weights_bytes": f.breakdown.weights_bytes + extra})})
        line = next(line for line in summary_lines(quantized) if line.lstrip().startswith("weights:"))
        assert "with nf4" in line and f"{verdict} the {budget / 2**30:.2f} GiB budget" in line

"""`xeonft size`: what a fine-tune needs here and how long it will take, within a time budget.

1. the job's shape (trl's packing of the real rows); 2. the OOM boundary under the memory budget (probes);
3. throughput over placements with the boundary's batch (repeats, interleaved); 4. the projection of the job per
placement; 5. a recommendation, written as JSON and a report. `--validate` then runs the job (or a fraction of it)
and sets the projection beside what happened.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.base.errors import XeonftError
from harness.base.units import GIB
from harness.config.finetune import FinetuneConfig
from harness.launch.console import console
from harness.launch.lifeline import termination_as_interrupt
from harness.launch.locks import MachineLock, ResultSetLock
from harness.launch.runner import Runner
from harness.launch.sweep import check_free_space
from harness.measure.fingerprint import environment_key, fingerprint
from harness.measure.host import cores, numa_nodes
from harness.results.records import CellRecord
from harness.results.store import ResultStore, write_json
from harness.sizing import cells as C
from harness.sizing.findings import (
    boundary_summary,
    extrapolate,
    fastest_safe,
    median_speed,
    peak_of,
    placement_row,
    predictions,
    recommend,
    scaling_fit,
)
from harness.sizing.fit import breakdown, fit_memory
from harness.sizing.job import job_shape
from harness.sizing.project import JobShape
from harness.sizing.search import Probe, search
from harness.sizing.soak import soak

AT_LIMIT = 0.98  # a peak this close to the budget was limited by it, not measured
PROBE_SHARE = 0.45  # of the time budget, for the boundary search; the rest for placements and the soak
SOAK_SHARE = 0.25  # of the time budget, kept for the soak run (placement repeats stop short of it)


@dataclass
class SizeRequest:
    cfg: FinetuneConfig  # the job: model, data, precision, sequence length, checkpointing, epochs, eval, saves
    memory: int  # bytes, the budget for a cell's whole process tree
    budget_s: float = 1200.0  # wall time for probes and placements (validation comes on top)
    margin: float = 0.10  # of the memory budget left free by the recommended batch
    batch: int | None = None  # given: no boundary search
    probe_steps: tuple[int, int] = (1, 2)  # timing warm-up, measured
    run_steps: tuple[int, int] = (1, 3)
    max_repeats: int = 3
    soak_max: int = 200  # most steps of the soak run (0: none)
    probe_eval_rows: int = 16
    predict_budgets: tuple[int, ...] = (64 * GIB, 128 * GIB, 256 * GIB)
    cores: tuple[int, ...] = ()  # core counts to extrapolate the job's time to
    price_per_hour: float | None = None
    max_batch: int = 256
    placements: tuple[tuple[int, int], ...] = ()  # (threads, ranks) to measure; () = every one worth measuring
    name: str = "size"
    extra: dict[str, Any] = field(default_factory=dict)  # what the command line said (rows drawn, ...)


def _probe(record: CellRecord, batch: int) -> Probe:
    s = record.result.summary if record.result else None
    tokens = s.measured_tokens / s.measured_steps if s and s.measured_tokens and s.measured_steps else None
    peak = peak_of(record)
    if record.budget and record.budget.get("exceeded"):
        peak = record.budget.get("cgroup_peak_bytes") or record.budget.get("exceeded_rss_bytes") or peak
    tps = s.tokens_per_second if s else None
    all_tokens = sum(st.tokens for st in record.result.steps) if record.result else 0
    fixed = (record.wall_seconds or 0.0) - all_tokens / tps if tps else None
    return Probe(batch=batch, ok=record.status in ("ok", "disturbed"), peak_bytes=peak, tokens_per_step=tokens,
                 status=record.status, reason=record.reason, seconds=record.wall_seconds or 0.0, key=record.key,
                 tokens_per_second=tps, fixed_seconds=fixed)


class Sizing:
    """One sizing session's state: the request, the result set, the clock."""

    def __init__(self, req: SizeRequest, out: Path) -> None:
        self.req, self.out = req, out
        self.store = ResultStore(out)
        self.fp = fingerprint()
        self.runner = Runner(self.store, environment_key(self.fp))
        self.started = time.monotonic()
        self.here = len(cores()) or 1
        self.nodes = max(1, len(numa_nodes()))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def shapes(self) -> tuple[JobShape, JobShape]:
        console.print("counting the job's tokens as trl packs them ...")
        job = job_shape(self.req.cfg)
        probe = job_shape(self.req.cfg.model_copy(update={"eval_size": self.req.probe_eval_rows}))
        console.print(f"  {job.train_rows} train rows -> {job.packed_rows} packed rows of up to {job.seq_len} "
                      f"tokens, {job.train_tokens:,} tokens per epoch; eval {job.eval_rows} rows, "
                      f"{job.eval_tokens:,} tokens")
        return job, probe

    def boundary(self, probe_job: JobShape) -> dict[int, Probe]:
        req = self.req
        w, m = req.probe_steps
        max_batch = max(1, min(req.max_batch, probe_job.packed_rows // (w + m)))
        row_tokens = probe_job.train_tokens / max(1, probe_job.packed_rows)
        tried: dict[int, Probe] = {}

        def affordable(batch: int) -> bool:
            done = [p for p in tried.values() if p.ok and p.tokens_per_second and p.fixed_seconds is not None]
            if not done:
                return True
            # the fixed part (start, load, compile, evaluation, save) as the probes so far had it, the steps at
            # the slowest rate they measured; a probe over the budget stops early, so this is an upper bound
            fixed = max(p.fixed_seconds or 0.0 for p in done)
            rate = min(p.tokens_per_second or math.inf for p in done)
            estimate = fixed + (w + m) * batch * row_tokens / rate
            fits = self.elapsed() + estimate <= req.budget_s * PROBE_SHARE
            if not fits:
                console.print(f"[yellow]size:[/] no time left for a probe at batch {batch} (about {estimate:.0f} s); "
                              "the boundary lies between the probes so far")
            return fits

        def run_probe(batch: int) -> Probe:
            spec = C.cell(req.cfg, batch, C.Placement(self.here), req.memory, w, m, req.probe_eval_rows,
                          timeout_s=max(600.0, req.budget_s))
            p = _probe(self.runner.run(spec, f"probe batch {batch}", "probe"), batch)
            tried[batch] = p
            return p

        console.print(f"[bold]boundary[/]: largest batch within {req.memory / GIB:.2f} GiB "
                      f"(doubling, then bisecting; {w + m} steps a probe)")
        search(run_probe, max_batch, affordable)
        return tried

    def run_placements(self, batch: int, fit: Any, row_tokens: float) -> dict[C.Placement, list[CellRecord]]:
        req = self.req
        w, m = req.run_steps
        plans: list[tuple[C.Placement, int]] = []
        chosen = [C.Placement(t, r) for t, r in req.placements] or C.placements(self.here, self.nodes)
        for place in chosen:
            if place.cores > self.here:
                console.print(f"  {place.label()}: needs {place.cores} cores, this machine has {self.here}; skipped")
                continue
            per_rank = batch
            if place.ranks > 1 and fit is not None:  # every rank holds the model: the budget is shared
                per_rank = min(batch, int(fit.max_tokens(req.memory / place.ranks, req.margin) // row_tokens))
            if per_rank < 1:
                console.print(f"  {place.label()}: no batch fits {req.memory / GIB:.2f} GiB across "
                              f"{place.ranks} ranks; skipped")
                continue
            plans.append((place, per_rank))
        runs: dict[C.Placement, list[CellRecord]] = {p: [] for p, _ in plans}
        console.print(f"[bold]placements[/]: {', '.join(p.label() for p, _ in plans)}; up to {req.max_repeats} "
                      "runs each, interleaved")
        for r in range(req.max_repeats):
            # later rounds: the fastest placements first, each only while the budget has room for it
            order = plans if r == 0 else sorted(plans, key=lambda pr: -median_speed(runs[pr[0]]))
            for place, per_rank in order:
                walls = [rec.wall_seconds for rec in runs[place] if rec.wall_seconds]
                if r > 0 and walls and self.elapsed() + max(walls) > req.budget_s * (1 - SOAK_SHARE):
                    console.print(f"[yellow]size:[/] no room in the time budget for run {r + 1} of "
                                  f"{place.label()} (about {max(walls):.0f} s)")
                    continue
                spec = C.cell(req.cfg, per_rank, place, req.memory, w, m, req.probe_eval_rows, repeat=r,
                              timeout_s=max(600.0, req.budget_s))
                runs[place].append(self.runner.run(spec, f"{place.label()} batch {per_rank} run {r + 1}",
                                                   "placement"))
        return runs


def size(req: SizeRequest, out: Path) -> dict[str, Any]:
    """Run the sizing and return its findings (also written to `out/sizing.json`)."""
    s = Sizing(req, out)
    job, probe_job = s.shapes()  # a bad model or dataset is named here, before anything is created
    check_free_space(out)
    with termination_as_interrupt(), ResultSetLock(out), MachineLock(wait=True):
        s.store.open({"name": req.name, "sizing": True}, s.fp, s.runner.env_key, [], resume=True)
        row_tokens = probe_job.train_tokens / max(1, probe_job.packed_rows)
        tried: dict[int, Probe] = {}
        if req.batch is None:
            tried = s.boundary(probe_job)
        # a probe whose peak reached the budget was held there (the kernel reclaimed its file pages): censored
        fitted = [p for p in tried.values() if p.ok and p.tokens_per_step and p.peak_bytes
                  and p.peak_bytes < AT_LIMIT * req.memory]
        fit = fit_memory([p.tokens_per_step for p in fitted], [p.peak_bytes for p in fitted])  # type: ignore[misc]
        batch = req.batch or fastest_safe(tried, req)
        findings: dict[str, Any] = {"request": _request(req), "job": job.to_dict(), "row_tokens": row_tokens,
                                    "probes": [{**p.__dict__, "in_fit": p in fitted}
                                               for p in sorted(tried.values(), key=lambda p: p.batch)],
                                    "boundary": boundary_summary(tried, req), "fit": fit.to_dict() if fit else None,
                                    "fingerprint": {"cpu": s.fp["cpu"].get("brand"), "cores": s.here,
                                                    "amx": s.fp["cpu"].get("amx"), "numa_nodes": s.nodes}}
        findings["predicted_boundaries"] = predictions(fit, req, row_tokens)

        def parts() -> dict[str, Any] | None:  # the model's shape, from the first cell that loaded it
            model = next((r.result.model for k in s.runner.keys if (r := s.store.get(k)) and r.result), {})
            return breakdown(model, req.cfg.precision, req.cfg.lora_r, req.cfg.lora_target_modules,
                             req.cfg.gradient_checkpointing, fit) if model else None

        findings["breakdown"] = parts()
        if batch < 1:
            findings["recommendation"] = None
            findings["verdict"] = (f"nothing fits: even batch 1 went over {req.memory / GIB:.2f} GiB (or left less "
                                   f"than {req.margin:.0%} of it free); give more memory or a shorter seq_len")
            _write(out, findings)
            return findings
        runs = s.run_placements(batch, fit, row_tokens)
        whole = C.Placement(s.here)
        probe_key = tried[batch].key if batch in tried else None
        probe_rec = s.store.get(probe_key) if probe_key else None
        if whole in runs and probe_rec is not None and probe_rec.status == "ok":
            # the probe at this batch on every core is one more run of that placement (fewer measured steps, the
            # same batch, threads, evaluation and save): the rates it gives are of the same kind
            runs[whole].append(probe_rec)
        findings["breakdown"] = findings["breakdown"] or parts()
        findings["placements"] = [placement_row(p, recs, job, probe_job, req) for p, recs in runs.items()]
        findings["scaling"] = (sc := scaling_fit(findings["placements"])) and sc.__dict__
        findings["recommendation"] = recommend(findings, fit, req, row_tokens)
        findings["soak"] = soak(s, findings)
        findings["extrapolations"] = extrapolate(findings, sc, req)
        findings["elapsed_s"] = s.elapsed()
        s.store.add_cells(s.runner.keys)
        _write(out, findings)
        return findings


def _request(req: SizeRequest) -> dict[str, Any]:
    return {"memory_bytes": req.memory, "budget_s": req.budget_s, "margin": req.margin, "batch": req.batch,
            "config": req.cfg.model_dump(mode="json"), "cores": list(req.cores),
            "price_per_hour": req.price_per_hour, **req.extra}


def _write(out: Path, findings: dict[str, Any]) -> None:
    write_json(out / "sizing.json", findings)


def load_findings(out: Path) -> dict[str, Any]:
    path = out / "sizing.json"
    if not path.is_file():
        raise XeonftError(f"'{out}' holds no sizing (no sizing.json): run `xeonft size` first")
    return json.loads(path.read_text(encoding="utf-8"))

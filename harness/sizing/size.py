"""`xeonft size`: what a fine-tune needs here and how long it will take, within a time budget.

1. the job's shape (trl's packing of the real rows); 2. the OOM boundary under the memory budget (probes);
3. throughput over placements with the boundary's batch (repeats, interleaved); 4. the projection of the job per
placement; 5. a recommendation, written as JSON and a report. `--validate` then runs the job (or a fraction of it)
and sets the projection beside what happened.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

from harness.base.units import GIB
from harness.config.identity import MEASURED
from harness.launch.console import console
from harness.launch.lifeline import termination_as_interrupt
from harness.launch.locks import MachineLock, ResultSetLock
from harness.launch.runner import Runner
from harness.launch.sweep import check_free_space
from harness.measure.fingerprint import environment_key, fingerprint
from harness.measure.host import cores, numa_nodes
from harness.measure.kind import machine_facts
from harness.results.records import CellRecord
from harness.results.store import ResultStore
from harness.sizing import cells as C
from harness.sizing.findings import (
    LayoutRuns,
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
from harness.sizing.findings_model import FILE, Breakdown, Findings, Machine, RequestSummary, row_of
from harness.sizing.fit import MemoryFit, breakdown, fit_memory
from harness.sizing.job import job_shape
from harness.sizing.project import JobShape, fixed_seconds
from harness.sizing.request import SizeRequest
from harness.sizing.search import Probe, ProbeRow, search
from harness.sizing.soak import soak

AT_LIMIT = 0.98  # a peak this close to the budget was limited by it, not measured
PROBE_SHARE = 0.45  # of the time budget, for the boundary search; the rest for placements and the soak
SOAK_SHARE = 0.25  # of the time budget, kept for the soak run (placement repeats stop short of it)


def _probe(record: CellRecord, batch: int) -> Probe:
    s = record.result.summary if record.result else None
    tokens = s.measured_tokens / s.measured_steps if s and s.measured_tokens and s.measured_steps else None
    peak = peak_of(record)
    if record.budget and record.budget.exceeded:
        peak = record.budget.cgroup_peak_bytes or record.budget.exceeded_rss_bytes or peak
    return Probe(batch=batch, ok=record.status in MEASURED, peak_bytes=peak, tokens_per_step=tokens,
                 status=record.status, reason=record.reason, seconds=record.wall_seconds or 0.0, key=record.key,
                 tokens_per_second=s.tokens_per_second if s else None, fixed_seconds=fixed_seconds(record))


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
            done = [p for p in tried.values() if p.ok and p.tokens_per_second and p.tokens_per_step]
            if not done:
                return True
            # what a probe takes beside its steps (start, load, compile, its evaluation and save) as the probes so
            # far had it, the steps at the slowest rate they measured; a probe over the budget stops early, so this
            # is an upper bound
            rest = max(p.seconds - (w + m) * (p.tokens_per_step or 0.0) / (p.tokens_per_second or math.inf)
                       for p in done)
            rate = min(p.tokens_per_second or math.inf for p in done)
            estimate = rest + (w + m) * batch * row_tokens / rate
            fits = self.elapsed() + estimate <= req.budget_s * PROBE_SHARE
            if not fits:
                console.print(f"[yellow]size:[/] no time left for a probe at batch {batch} (about {estimate:.0f} s); "
                              "the boundary lies between the probes so far")
            return fits

        def run_probe(batch: int) -> Probe:
            spec = C.cell(req.cfg, batch, C.Layout(self.here), req.memory, w, m, req.probe_eval_rows,
                          timeout_s=max(600.0, req.budget_s))
            p = _probe(self.runner.run(spec, f"probe batch {batch}", "probe"), batch)
            tried[batch] = p
            return p

        console.print(f"[bold]boundary[/]: largest batch within {req.memory / GIB:.2f} GiB "
                      f"(doubling, then bisecting; {w + m} steps a probe)")
        search(run_probe, max_batch, affordable)
        return tried

    def run_placements(self, batch: int, fit: MemoryFit | None, row_tokens: float) -> list[LayoutRuns]:
        req = self.req
        w, m = req.run_steps
        plans: list[LayoutRuns] = []
        chosen = list(dict.fromkeys(C.Layout(t, r) for t, r in req.placements)) or C.layouts(self.here, self.nodes)
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
            plans.append(LayoutRuns(place, per_rank))
        console.print(f"[bold]placements[/]: {', '.join(p.layout.label() for p in plans)}; up to {req.max_repeats} "
                      "runs each, interleaved")
        for r in range(req.max_repeats):
            # later rounds: the fastest placements first, each only while the budget has room for it
            order = plans if r == 0 else sorted(plans, key=lambda p: -median_speed(p.records))
            for plan in order:
                place = plan.layout
                walls = [rec.wall_seconds for rec in plan.records if rec.wall_seconds]
                if r > 0 and walls and self.elapsed() + max(walls) > req.budget_s * (1 - SOAK_SHARE):
                    console.print(f"[yellow]size:[/] no room in the time budget for run {r + 1} of "
                                  f"{place.label()} (about {max(walls):.0f} s)")
                    continue
                spec = C.cell(req.cfg, plan.batch, place, req.memory, w, m, req.probe_eval_rows, repeat=r,
                              timeout_s=max(600.0, req.budget_s))
                plan.records.append(self.runner.run(spec, f"{place.label()} batch {plan.batch} run {r + 1}",
                                                    "placement"))
        return plans

    def breakdown(self, fit: MemoryFit | None) -> Breakdown | None:
        """Memory by part, from the model's shape as the first cell that loaded it recorded it."""
        model = next((r.result.model for k in self.runner.keys if (r := self.store.get(k)) and r.result), {})
        cfg = self.req.cfg
        return breakdown(model, cfg.precision, cfg.lora_r, cfg.lora_target_modules, cfg.gradient_checkpointing,
                         fit, cfg.quant) if model else None


def size(req: SizeRequest, out: Path) -> Findings:
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
        findings = Findings(
            request=_summary(req), job=job, row_tokens=row_tokens,
            probes=[ProbeRow(**asdict(p), in_fit=p in fitted) for p in sorted(tried.values(), key=lambda p: p.batch)],
            boundary=boundary_summary(tried, req), fit=fit,
            fingerprint=Machine(cpu=s.fp["cpu"].get("brand"), cores=s.here, amx=s.fp["cpu"].get("amx"),
                                numa_nodes=s.nodes, kind=machine_facts(s.fp).kind, hostname=s.fp.get("hostname")),
            predicted_boundaries=predictions(fit, req, row_tokens), breakdown=s.breakdown(fit))
        if batch < 1:
            findings = findings.model_copy(update={
                "recommendation": None,
                "verdict": f"nothing fits: even batch 1 went over {req.memory / GIB:.2f} GiB (or left less than "
                           f"{req.margin:.0%} of it free); give more memory or a shorter seq_len"})
            findings.write(out / FILE)
            return findings
        runs = s.run_placements(batch, fit, row_tokens)
        whole = next((p for p in runs if p.layout == C.Layout(s.here)), None)
        probe_key = tried[batch].key if batch in tried else None
        probe_rec = s.store.get(probe_key) if probe_key else None
        if whole is not None and probe_rec is not None and probe_rec.status == "ok":
            # the probe at this batch on every core is one more run of that placement (fewer measured steps, the
            # same batch, threads, evaluation and save): the rates it gives are of the same kind
            whole.records.append(probe_rec)
        rows = [placement_row(p, job, probe_job, req) for p in runs]
        scaling = scaling_fit(rows)
        rec = recommend(rows, fit, req, row_tokens)
        soaked = None
        if rec is not None:
            soaked, rec = soak(req, row_of(rows, rec), rec, req.budget_s - s.elapsed(), s.runner.run)
        extrapolations, why_not = extrapolate(rows, rec, scaling, req)
        if why_not:
            console.print(f"[yellow]size:[/] {why_not}")
        findings = findings.model_copy(update={
            "breakdown": findings.breakdown or s.breakdown(fit), "placements": rows, "scaling": scaling,
            "recommendation": rec, "soak": soaked, "extrapolations": extrapolations, "elapsed_s": s.elapsed(),
            **({"no_extrapolation": why_not} if why_not else {})})
        s.store.add_cells(s.runner.keys)
        findings.write(out / FILE)
        return findings


def _summary(req: SizeRequest) -> RequestSummary:
    rows = {"rows_drawn": req.rows_drawn, "rows_from": req.rows_from} if req.rows_drawn else {}
    return RequestSummary(memory_bytes=req.memory, budget_s=req.budget_s, margin=req.margin, batch=req.batch,
                          config=req.cfg, cores=list(req.cores), price_per_hour=req.price_per_hour, **rows)

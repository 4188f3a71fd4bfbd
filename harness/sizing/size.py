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

from harness.analysis.stats import decide
from harness.config.run import FinetuneConfig
from harness.errors import XeonftError
from harness.launch.console import console
from harness.launch.lifeline import termination_as_interrupt
from harness.launch.locks import MachineLock, ResultSetLock
from harness.launch.runner import Runner
from harness.launch.sweep import check_free_space
from harness.launch.topology import cores, numa_nodes
from harness.measure.fingerprint import environment_key, fingerprint
from harness.results.records import CellRecord
from harness.results.store import ResultStore, write_json
from harness.sizing import cells as C
from harness.sizing.fit import breakdown, fit_memory, fit_scaling
from harness.sizing.job import job_shape
from harness.sizing.project import JobShape, project, rates_from_record, schedule
from harness.sizing.search import Probe, bounds, safe_batch, search

GIB = 2**30
AT_LIMIT = 0.98  # a peak this close to the budget was limited by it, not measured
PROBE_SHARE = 0.45  # of the time budget, for the boundary search; the rest for placements


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
    probe_eval_rows: int = 16
    predict_budgets: tuple[int, ...] = (64 * GIB, 128 * GIB, 256 * GIB)
    cores: tuple[int, ...] = ()  # core counts to extrapolate the job's time to
    price_per_hour: float | None = None
    max_batch: int = 256
    placements: tuple[tuple[int, int], ...] = ()  # (threads, ranks) to measure; () = every one worth measuring
    name: str = "size"
    extra: dict[str, Any] = field(default_factory=dict)  # what the command line said (rows drawn, ...)


def _peak(record: CellRecord) -> int | None:
    return record.memory.peak_rss_bytes if record.memory else None


def _probe(record: CellRecord, batch: int) -> Probe:
    s = record.result.summary if record.result else None
    tokens = s.measured_tokens / s.measured_steps if s and s.measured_tokens and s.measured_steps else None
    peak = _peak(record)
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
            order = plans if r == 0 else sorted(plans, key=lambda pr: -_median_speed(runs[pr[0]]))
            for place, per_rank in order:
                walls = [rec.wall_seconds for rec in runs[place] if rec.wall_seconds]
                if r > 0 and walls and self.elapsed() + max(walls) > req.budget_s:
                    console.print(f"[yellow]size:[/] no room in the time budget for run {r + 1} of "
                                  f"{place.label()} (about {max(walls):.0f} s)")
                    continue
                spec = C.cell(req.cfg, per_rank, place, req.memory, w, m, req.probe_eval_rows, repeat=r,
                              timeout_s=max(600.0, req.budget_s))
                runs[place].append(self.runner.run(spec, f"{place.label()} batch {per_rank} run {r + 1}",
                                                   "placement"))
        return runs


def _median_speed(records: list[CellRecord]) -> float:
    values = sorted(r.result.summary.tokens_per_second for r in records
                    if r.status == "ok" and r.result and r.result.summary.tokens_per_second)
    return values[len(values) // 2] if values else 0.0


def _scaling(rows: list[dict[str, Any]]) -> Any:
    pts = [(row["cores"], row["tokens_per_second"]) for row in rows if row.get("tokens_per_second")]
    return fit_scaling([c for c, _ in pts], [t for _, t in pts])


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
        batch = req.batch or _fastest_safe(tried, req)
        findings: dict[str, Any] = {"request": _request(req), "job": job.to_dict(), "row_tokens": row_tokens,
                                    "probes": [{**p.__dict__, "in_fit": p in fitted}
                                               for p in sorted(tried.values(), key=lambda p: p.batch)],
                                    "boundary": _boundary(tried, req), "fit": fit.to_dict() if fit else None,
                                    "fingerprint": {"cpu": s.fp["cpu"].get("brand"), "cores": s.here,
                                                    "amx": s.fp["cpu"].get("amx"), "numa_nodes": s.nodes}}
        findings["predicted_boundaries"] = _predictions(fit, req, row_tokens)

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
        findings["placements"] = [_placement_row(p, recs, job, probe_job, req) for p, recs in runs.items()]
        findings["scaling"] = (sc := _scaling(findings["placements"])) and sc.__dict__
        findings["recommendation"] = _recommend(findings, fit, req, row_tokens)
        findings["extrapolations"] = _extrapolate(findings, sc, req)
        findings["elapsed_s"] = s.elapsed()
        s.store.add_cells(s.runner.keys)
        _write(out, findings)
        return findings


def _fastest_safe(tried: dict[int, Probe], req: SizeRequest) -> int:
    """The batch the placements run: of the batches whose peak left the margin free, the one whose probe trained
    fastest (a larger batch is not always faster: attention over a packed row grows with its square), unless it
    beats the largest safe batch by less than 15% (one probe each: noise), when the largest is kept."""
    largest = safe_batch(tried, req.memory, req.margin)
    safe = [p for b, p in tried.items() if p.ok and b <= largest and p.tokens_per_second and p.peak_bytes
            and p.peak_bytes <= req.memory * (1 - req.margin)]
    if not safe or largest not in tried or not tried[largest].tokens_per_second:
        return largest
    best = max(safe, key=lambda p: p.tokens_per_second or 0.0)
    return best.batch if (best.tokens_per_second or 0.0) > 1.15 * (tried[largest].tokens_per_second or 0.0) \
        else largest


def _request(req: SizeRequest) -> dict[str, Any]:
    return {"memory_bytes": req.memory, "budget_s": req.budget_s, "margin": req.margin, "batch": req.batch,
            "config": req.cfg.model_dump(mode="json"), "cores": list(req.cores),
            "price_per_hour": req.price_per_hour, **req.extra}


def _boundary(tried: dict[int, Probe], req: SizeRequest) -> dict[str, Any]:
    ok, failed = bounds(tried)
    return {"largest_ok": ok or None, "smallest_failed": failed,
            "safe_batch": safe_batch(tried, req.memory, req.margin) or None,
            "fastest_safe_batch": _fastest_safe(tried, req) or None,
            "found": failed is not None and failed - ok <= 1}


def _predictions(fit: Any, req: SizeRequest, row_tokens: float) -> list[dict[str, Any]]:
    if fit is None:
        return []
    out = []
    for budget in sorted({req.memory, *req.predict_budgets}):
        tokens = fit.max_tokens(budget, req.margin)
        out.append({"budget_bytes": budget, "tokens_per_step": tokens,
                    "batch": int(tokens // row_tokens) if math.isfinite(tokens) else None,
                    "measured": budget == req.memory})
    return out


def _placement_row(place: C.Placement, recs: list[CellRecord], job: JobShape, probe_job: JobShape,
                   req: SizeRequest) -> dict[str, Any]:
    batch = recs[0].spec.get("config", {}).get("batch_size") if recs and recs[0].spec else None
    rates = [r for rec in recs if (r := rates_from_record(rec, probe_job.eval_tokens)) is not None]
    row: dict[str, Any] = {"placement": place.label(), "threads": place.threads, "ranks": place.ranks,
                           "cores": place.cores, "batch_per_rank": batch, "runs": len(rates),
                           "failed": [f"{r.status}: {r.reason}" for r in recs if r.status not in ("ok", "disturbed")],
                           "disturbed": sum(r.status == "disturbed" for r in recs),
                           "peak_rss_bytes": max((_peak(r) or 0 for r in recs), default=None)}
    if not rates or batch is None:
        return row
    cfg = req.cfg
    plan = schedule(job, batch, place.ranks, cfg.gradient_accumulation_steps, cfg.num_train_epochs,
                    cfg.eval_steps, cfg.save_steps if cfg.save_checkpoints else None, cfg.max_steps)
    epoch = schedule(job, batch, place.ranks, cfg.gradient_accumulation_steps).steps
    proj = project(rates, job, plan, epoch)
    from harness.analysis.stats import summarize_runs

    tps = summarize_runs([r.tokens_per_second for r in rates])
    row.update(tokens_per_second=tps.median, tps_low=tps.low, tps_high=tps.high, schedule=plan.__dict__,
               epoch_steps=epoch, projection=proj.to_dict(), rates=[r.__dict__ for r in rates])
    return row


def _recommend(findings: dict[str, Any], fit: Any, req: SizeRequest, row_tokens: float) -> dict[str, Any] | None:
    rows = [r for r in findings["placements"] if r.get("projection")]
    if not rows:
        return None
    best = min(rows, key=lambda r: r["projection"]["seconds"])
    # placements the runs cannot tell from the best (Welch on each run's projected time, as `compare` decides)
    speed = [1 / t for t in best["projection"]["per_run"]]
    rivals = [r["placement"] for r in rows if r is not best
              and decide(speed, [1 / t for t in r["projection"]["per_run"]]).verdict != "slower"]
    tokens = best["batch_per_rank"] * row_tokens
    predicted = fit.predict(tokens) * best["ranks"] if fit is not None else None
    peak = max(v for v in (predicted, best["peak_rss_bytes"]) if v) if (predicted or best["peak_rss_bytes"]) else None
    provision = math.ceil(peak / (1 - req.margin) / GIB) if peak else None
    proj = best["projection"]
    hours = proj["seconds"] / 3600
    rec = {"placement": best["placement"], "threads": best["threads"], "ranks": best["ranks"],
           "batch_per_rank": best["batch_per_rank"], "projected_seconds": proj["seconds"],
           "projected_low": proj["low"], "projected_high": proj["high"], "hours": hours,
           "projected_peak_bytes": peak, "measured_peak_bytes": best["peak_rss_bytes"],
           "fit_peak_bytes": predicted, "provision_gib": provision, "indistinguishable_from": rivals,
           "steps": best["schedule"]["steps"]}
    if req.price_per_hour is not None:
        rec["cost"] = hours * req.price_per_hour
        rec["cost_low"] = proj["low"] / 3600 * req.price_per_hour if proj["low"] else None
        rec["cost_high"] = proj["high"] / 3600 * req.price_per_hour if proj["high"] else None
    return rec


def _extrapolate(findings: dict[str, Any], scaling: Any, req: SizeRequest) -> list[dict[str, Any]]:
    """The job at more cores than this machine has: training and evaluation sped up as Amdahl's law fitted here
    says, the fixed part as measured. Always marked as an extrapolation, naming the fit and its range."""
    rec = findings.get("recommendation")
    if not req.cores or rec is None or scaling is None:
        return []
    best = next(r for r in findings["placements"] if r["placement"] == rec["placement"])
    parts = best["projection"]["parts"]
    here = scaling.predict(best["cores"])
    out = []
    for c in req.cores:
        speed = scaling.predict(c) / here
        seconds = (parts["train"] + parts["eval"]) / speed + parts["save"] + parts["fixed"]
        few = " (two core counts only: their noise sets the curve)" if len(scaling.cores_measured) < 3 else ""
        out.append({"cores": c, "seconds": seconds, "speedup": speed, "extrapolation": c > max(
            scaling.cores_measured), "from": f"Amdahl's law fitted over {', '.join(map(str, scaling.cores_measured))} "
                                             f"cores here, serial share {scaling.serial:.2f}{few}"})
    return out


def _write(out: Path, findings: dict[str, Any]) -> None:
    write_json(out / "sizing.json", findings)


def load_findings(out: Path) -> dict[str, Any]:
    path = out / "sizing.json"
    if not path.is_file():
        raise XeonftError(f"'{out}' holds no sizing (no sizing.json): run `xeonft size` first")
    return json.loads(path.read_text(encoding="utf-8"))

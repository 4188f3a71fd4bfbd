"""`xeonft size --validate`: run the recommended job (or a stated fraction of its steps) for real, capped at the
same budget, and set projected against actual wall time and peak memory, with the noise the run recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.base.errors import XeonftError
from harness.config.finetune import FinetuneConfig
from harness.launch.console import console
from harness.launch.lifeline import termination_as_interrupt
from harness.launch.locks import MachineLock, ResultSetLock
from harness.launch.runner import Runner
from harness.measure.fingerprint import environment_key, fingerprint
from harness.results.store import ResultStore, write_json
from harness.sizing import cells as C
from harness.sizing.growth import Growth
from harness.sizing.project import JobShape, RunRates, project, schedule
from harness.sizing.size import load_findings


def validate(out: Path, fraction: float = 1.0) -> dict[str, Any]:
    findings = load_findings(out)
    rec = findings.get("recommendation")
    if not rec:
        raise XeonftError(f"the sizing in '{out}' made no recommendation; nothing to validate")
    if not 0 < fraction <= 1:
        raise XeonftError(f"--validate takes a fraction of the job in (0, 1], not {fraction}")
    req = findings["request"]
    cfg = FinetuneConfig.model_validate(req["config"])
    job = JobShape(**findings["job"])
    row = next(r for r in findings["placements"] if r["placement"] == rec["placement"])
    place = C.Placement(row["threads"], row["ranks"], numa="NUMA" in row["placement"])
    batch = row["batch_per_rank"]
    full = schedule(job, batch, place.ranks, cfg.gradient_accumulation_steps, cfg.num_train_epochs,
                    cfg.eval_steps, cfg.save_steps if cfg.save_checkpoints else None, cfg.max_steps)
    steps = max(2, round(full.steps * fraction))
    plan = schedule(job, batch, place.ranks, cfg.gradient_accumulation_steps, cfg.num_train_epochs,
                    cfg.eval_steps, cfg.save_steps if cfg.save_checkpoints else None, steps)
    epoch = row["epoch_steps"]
    proj = project([RunRates(**r) for r in row["rates"]], job, plan, epoch)
    timeout = 3 * (proj.high or proj.seconds) + 600
    spec = C.cell(cfg, batch, place, req["memory_bytes"], 1, steps - 1, None, timeout_s=timeout,
                  save=cfg.save_checkpoints, max_steps=steps)
    console.print(f"[bold]validate[/]: {steps} of {full.steps} steps ({steps / full.steps:.0%} of the job) at "
                  f"{place.label()}, batch {batch}; projected {proj.seconds / 60:.1f} min")
    with termination_as_interrupt(), ResultSetLock(out), MachineLock(wait=True):
        fp = fingerprint()
        store = ResultStore(out)
        runner = Runner(store, environment_key(fp))
        record = runner.run(spec, f"validation {steps} steps", "validation")
        store.add_cells(runner.keys)
    peak = record.memory.peak_rss_bytes if record.memory else None
    projected_peak, projected_high = rec.get("projected_peak_bytes"), rec.get("projected_peak_high_bytes")
    soaked = findings.get("soak") or {}
    if soaked.get("growth") and soaked.get("peak_bytes"):  # the peak at the steps validated, not the job's
        point, upper = Growth(**soaked["growth"]).factors(steps)
        projected_peak = max(soaked["peak_bytes"] * point, rec.get("measured_peak_bytes") or 0)
        projected_high = max(projected_peak, soaked["peak_bytes"] * upper)
    finished = record.status in ("ok", "disturbed")
    noise = ((record.result.model_extra or {}).get("noise") if record.result else None) or {}
    result = {
        "fraction": steps / full.steps, "steps": steps, "status": record.status, "reason": record.reason,
        "projected_seconds": proj.seconds, "projected_low": proj.low, "projected_high": proj.high,
        "projected_parts": proj.parts, "actual_seconds": record.wall_seconds,
        # a run that did not finish has no time to compare (its memory still does)
        "time_error": (record.wall_seconds / proj.seconds - 1) if record.wall_seconds and finished else None,
        "inside_interval": (proj.low is not None and proj.high is not None and record.wall_seconds is not None
                            and proj.low <= record.wall_seconds <= proj.high) if finished else None,
        "actual_parts": _actual_parts(record),
        "projected_peak_bytes": projected_peak, "actual_peak_bytes": peak,
        "projected_peak_high_bytes": projected_high,
        "memory_error": (peak / projected_peak - 1) if peak and projected_peak else None,
        "noise": noise, "foreign_cpu_cores": (record.memory.foreign_cpu_cores_mean if record.memory else None),
        "key": record.key,
        "memory_growth": _growth(record, steps),
    }
    findings["validation"] = result
    write_json(out / "sizing.json", findings)
    return findings


def _growth(record: Any, steps: int) -> dict[str, float] | None:
    """How the tree's RSS moved over the run (after its first minute, which holds loading): a least-squares slope,
    per step. A few probe steps cannot see a slow growth (allocator fragmentation, caches) that a whole job shows."""
    import numpy as np

    timeline = (record.memory.model_extra or {}).get("rss_timeline") if record.memory else None
    if not timeline or not record.wall_seconds:
        return None
    points = [(t, r) for t, r in timeline if t >= 60]
    if len(points) < 10:
        return None
    t, r = np.asarray(points, float).T
    slope = float(np.polyfit(t, r, 1)[0])
    tail = r[t >= t.max() - 60]
    return {"bytes_per_second": slope, "bytes_per_step": slope * record.wall_seconds / max(1, steps),
            "rss_after_first_minute": float(r[:10].mean()), "rss_last_minute": float(tail.mean())}


def _actual_parts(record: Any) -> dict[str, float] | None:
    """Where the validation run's time went: steps, evaluations, saves, the rest."""
    res = record.result
    if res is None or not record.wall_seconds:
        return None
    steps = sum(s.seconds for s in res.steps)
    evals = sum(e.get("seconds") or 0 for e in res.evals)
    saves = sum(s.get("seconds") or 0 for s in (res.model_extra or {}).get("saves") or [])
    return {"train": steps, "eval": evals, "save": saves, "fixed": record.wall_seconds - steps - evals - saves}

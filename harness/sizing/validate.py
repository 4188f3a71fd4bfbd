"""`xeonft size --validate`: run the recommended job (or a stated fraction of its steps) for real, capped at the
same budget, and set projected against actual wall time and peak memory, with the noise the run recorded."""

from __future__ import annotations

from pathlib import Path

from harness.base.errors import XeonftError
from harness.config.identity import MEASURED
from harness.launch.console import console
from harness.launch.lifeline import termination_as_interrupt
from harness.launch.locks import MachineLock, ResultSetLock
from harness.launch.runner import Runner
from harness.measure.fingerprint import environment_key, fingerprint
from harness.results.records import CellRecord
from harness.results.store import ResultStore
from harness.sizing import cells as C
from harness.sizing.findings_model import FILE, Findings, MemoryGrowth, Validation, load_findings, row_of
from harness.sizing.project import epoch_steps, evals_and_saves, fixed_seconds, job_schedule, project


def validate(out: Path, fraction: float = 1.0) -> Findings:
    findings = load_findings(out)
    rec = findings.recommendation
    if not rec:
        raise XeonftError(f"the sizing in '{out}' made no recommendation; nothing to validate")
    if not 0 < fraction <= 1:
        raise XeonftError(f"--validate takes a fraction of the job in (0, 1], not {fraction}")
    req, job = findings.request, findings.job
    cfg = req.config
    row = row_of(findings.placements, rec)
    place, batch = row.layout, rec.batch_per_rank
    full = job_schedule(cfg, job, batch, place.ranks)
    steps = max(2, round(full.steps * fraction))
    plan = job_schedule(cfg, job, batch, place.ranks, max_steps=steps)
    proj = project(row.rates, job, plan, epoch_steps(cfg, job, batch, place.ranks))
    timeout = 3 * (proj.high or proj.seconds) + 600
    spec = C.cell(cfg, batch, place, req.memory_bytes, 1, steps - 1, None, timeout_s=timeout,
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
    projected_peak, projected_high = rec.projected_peak_bytes, rec.projected_peak_high_bytes
    soaked = findings.soak
    if soaked and soaked.growth and soaked.peak_bytes:  # the peak at the steps validated, not the job's
        point, upper = soaked.growth.factors(steps)
        projected_peak = max(soaked.peak_bytes * point, rec.measured_peak_bytes or 0)
        projected_high = max(projected_peak, soaked.peak_bytes * upper)
    finished = record.status in MEASURED
    noise = (record.result.noise if record.result else None) or {}
    result = Validation(
        fraction=steps / full.steps, steps=steps, status=record.status, reason=record.reason,
        projected_seconds=proj.seconds, projected_low=proj.low, projected_high=proj.high,
        projected_parts=proj.parts, actual_seconds=record.wall_seconds,
        # a run that did not finish has no time to compare (its memory still does)
        time_error=(record.wall_seconds / proj.seconds - 1) if record.wall_seconds and finished else None,
        inside_interval=(proj.low is not None and proj.high is not None and record.wall_seconds is not None
                         and proj.low <= record.wall_seconds <= proj.high) if finished else None,
        actual_parts=_actual_parts(record),
        projected_peak_bytes=projected_peak, actual_peak_bytes=peak,
        projected_peak_high_bytes=projected_high,
        memory_error=(peak / projected_peak - 1) if peak and projected_peak else None,
        noise=noise, foreign_cpu_cores=(record.memory.foreign_cpu_cores_mean if record.memory else None),
        key=record.key,
        memory_growth=_growth(record, steps),
    )
    findings = findings.model_copy(update={"validation": result})
    findings.write(out / FILE)
    return findings


def _growth(record: CellRecord, steps: int) -> MemoryGrowth | None:
    """How the tree's RSS moved over the run (after its first minute, which holds loading): a least-squares slope,
    per step. A few probe steps cannot see a slow growth (allocator fragmentation, caches) that a whole job shows."""
    import numpy as np

    timeline = record.memory.rss_timeline if record.memory else None
    if not timeline or not record.wall_seconds:
        return None
    points = [(t, r) for t, r in timeline if t >= 60]
    if len(points) < 10:
        return None
    t, r = np.asarray(points, float).T
    slope = float(np.polyfit(t, r, 1)[0])
    tail = r[t >= t.max() - 60]
    return MemoryGrowth(bytes_per_second=slope, bytes_per_step=slope * record.wall_seconds / max(1, steps),
                        rss_after_first_minute=float(r[:10].mean()), rss_last_minute=float(tail.mean()))


def _actual_parts(record: CellRecord) -> dict[str, float] | None:
    """Where the validation run's time went, in the projection's parts and by its rules (the fixed part is
    `fixed_seconds`, the training its tokens at its measured rate), so each part sets beside its projection.
    None for a run that did not train."""
    res, fixed = record.result, fixed_seconds(record)
    if res is None or fixed is None or not record.wall_seconds:
        return None
    evals, saves = evals_and_saves(res)
    return {"train": record.wall_seconds - fixed - sum(evals) - sum(saves), "eval": sum(evals), "save": sum(saves),
            "fixed": fixed}

"""What sizing concludes from its cells: the batch to run, the boundary, predicted boundaries for budgets not
tried, each placement's projection, the recommendation and the extrapolation to more cores."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from harness.base.stats import decide
from harness.base.units import GIB
from harness.results.records import CellRecord
from harness.sizing import cells as C
from harness.sizing.fit import fit_scaling
from harness.sizing.project import JobShape, project, rates_from_record, schedule
from harness.sizing.search import Probe, bounds, safe_batch

if TYPE_CHECKING:
    from harness.sizing.size import SizeRequest


def peak_of(record: CellRecord) -> int | None:
    return record.memory.peak_rss_bytes if record.memory else None


def median_speed(records: list[CellRecord]) -> float:
    values = sorted(r.result.summary.tokens_per_second for r in records
                    if r.status == "ok" and r.result and r.result.summary.tokens_per_second)
    return values[len(values) // 2] if values else 0.0


def scaling_fit(rows: list[dict[str, Any]]) -> Any:
    pts = [(row["cores"], row["tokens_per_second"]) for row in rows if row.get("tokens_per_second")]
    return fit_scaling([c for c, _ in pts], [t for _, t in pts])


def fastest_safe(tried: dict[int, Probe], req: SizeRequest) -> int:
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


def boundary_summary(tried: dict[int, Probe], req: SizeRequest) -> dict[str, Any]:
    ok, failed = bounds(tried)
    return {"largest_ok": ok or None, "smallest_failed": failed,
            "safe_batch": safe_batch(tried, req.memory, req.margin) or None,
            "fastest_safe_batch": fastest_safe(tried, req) or None,
            "found": failed is not None and failed - ok <= 1}


def predictions(fit: Any, req: SizeRequest, row_tokens: float) -> list[dict[str, Any]]:
    if fit is None:
        return []
    out = []
    for budget in sorted({req.memory, *req.predict_budgets}):
        tokens = fit.max_tokens(budget, req.margin)
        out.append({"budget_bytes": budget, "tokens_per_step": tokens,
                    "batch": int(tokens // row_tokens) if math.isfinite(tokens) else None,
                    "measured": budget == req.memory})
    return out


def placement_row(place: C.Placement, recs: list[CellRecord], job: JobShape, probe_job: JobShape,
                   req: SizeRequest) -> dict[str, Any]:
    batch = recs[0].spec.get("config", {}).get("batch_size") if recs and recs[0].spec else None
    rates = [r for rec in recs if (r := rates_from_record(rec, probe_job.eval_tokens)) is not None]
    row: dict[str, Any] = {"placement": place.label(), "threads": place.threads, "ranks": place.ranks,
                           "cores": place.cores, "batch_per_rank": batch, "runs": len(rates),
                           "failed": [f"{r.status}: {r.reason}" for r in recs if r.status not in ("ok", "disturbed")],
                           "disturbed": sum(r.status == "disturbed" for r in recs),
                           "peak_rss_bytes": max((peak_of(r) or 0 for r in recs), default=None)}
    if not rates or batch is None:
        return row
    cfg = req.cfg
    plan = schedule(job, batch, place.ranks, cfg.gradient_accumulation_steps, cfg.num_train_epochs,
                    cfg.eval_steps, cfg.save_steps if cfg.save_checkpoints else None, cfg.max_steps)
    epoch = schedule(job, batch, place.ranks, cfg.gradient_accumulation_steps).steps
    proj = project(rates, job, plan, epoch)
    from harness.base.stats import summarize_runs

    tps = summarize_runs([r.tokens_per_second for r in rates])
    row.update(tokens_per_second=tps.median, tps_low=tps.low, tps_high=tps.high, schedule=plan.__dict__,
               epoch_steps=epoch, projection=proj.to_dict(), rates=[r.__dict__ for r in rates])
    return row


def recommend(findings: dict[str, Any], fit: Any, req: SizeRequest, row_tokens: float) -> dict[str, Any] | None:
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


def extrapolate(findings: dict[str, Any], scaling: Any, req: SizeRequest) -> list[dict[str, Any]]:
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

"""What sizing concludes from its cells: the batch to run, the boundary, predicted boundaries for budgets not
tried, each placement's projection, the recommendation and the extrapolation to more cores."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.base.stats import decide, summarize_runs
from harness.base.units import GIB
from harness.config.identity import MEASURED
from harness.results.records import CellRecord
from harness.sizing.cells import Layout
from harness.sizing.findings_model import (
    Boundary,
    Extrapolation,
    PlacementRow,
    PredictedBoundary,
    Recommendation,
    row_of,
)
from harness.sizing.fit import MemoryFit, Scaling, fit_scaling
from harness.sizing.project import JobShape, epoch_steps, job_schedule, project, rates_from_record
from harness.sizing.request import SizeRequest
from harness.sizing.search import Probe, bounds, safe_batch


@dataclass
class LayoutRuns:
    """The runs of one layout, each at `batch` per rank."""

    layout: Layout
    batch: int
    records: list[CellRecord] = field(default_factory=list)


def peak_of(record: CellRecord) -> int | None:
    return record.memory.peak_rss_bytes if record.memory else None


def median_speed(records: list[CellRecord]) -> float:
    values = sorted(r.result.summary.tokens_per_second for r in records
                    if r.status == "ok" and r.result and r.result.summary.tokens_per_second)
    return values[len(values) // 2] if values else 0.0


def scaling_fit(rows: list[PlacementRow]) -> Scaling | None:
    pts = [(row.cores, row.tokens_per_second) for row in rows if row.tokens_per_second]
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


def boundary_summary(tried: dict[int, Probe], req: SizeRequest) -> Boundary:
    ok, failed = bounds(tried)
    return Boundary(largest_ok=ok or None, smallest_failed=failed,
                    safe_batch=safe_batch(tried, req.memory, req.margin) or None,
                    fastest_safe_batch=fastest_safe(tried, req) or None,
                    found=failed is not None and failed - ok <= 1)


def predictions(fit: MemoryFit | None, req: SizeRequest, row_tokens: float) -> list[PredictedBoundary]:
    if fit is None:
        return []
    out = []
    for budget in sorted({req.memory, *req.predict_budgets}):
        tokens = fit.max_tokens(budget, req.margin)
        out.append(PredictedBoundary(budget_bytes=budget, tokens_per_step=tokens,
                                     batch=int(tokens // row_tokens) if math.isfinite(tokens) else None,
                                     measured=budget == req.memory))
    return out


def placement_row(runs: LayoutRuns, job: JobShape, probe_job: JobShape, req: SizeRequest) -> PlacementRow:
    place, recs = runs.layout, runs.records
    batch = runs.batch if recs else None
    rates = [r for rec in recs if (r := rates_from_record(rec, probe_job.eval_tokens)) is not None]
    row = PlacementRow(threads=place.threads, ranks=place.ranks, numa=place.numa, batch_per_rank=batch,
                       runs=len(rates), failed=[f"{r.status}: {r.reason}" for r in recs if r.status not in MEASURED],
                       disturbed=sum(r.status == "disturbed" for r in recs),
                       peak_rss_bytes=max((peak_of(r) or 0 for r in recs), default=None))
    if not rates or batch is None:
        return row
    plan = job_schedule(req.cfg, job, batch, place.ranks)
    epoch = epoch_steps(req.cfg, job, batch, place.ranks)
    tps = summarize_runs([r.tokens_per_second for r in rates])
    return row.model_copy(update={"tokens_per_second": tps.median, "tps_low": tps.low, "tps_high": tps.high,
                                  "schedule": plan, "epoch_steps": epoch,
                                  "projection": project(rates, job, plan, epoch), "rates": rates})


def recommend(rows: list[PlacementRow], fit: MemoryFit | None, req: SizeRequest,
              row_tokens: float) -> Recommendation | None:
    projected = [r for r in rows if r.projection and r.schedule and r.batch_per_rank]
    if not projected:
        return None
    best = min(projected, key=lambda r: r.projection.seconds if r.projection else math.inf)
    proj, plan, batch = best.projection, best.schedule, best.batch_per_rank
    assert proj is not None and plan is not None and batch is not None
    # placements the runs cannot tell from the best (Welch on each run's projected time, as `compare` decides)
    speed = [1 / t for t in proj.per_run]
    rivals = [r.placement for r in projected if r is not best and r.projection
              and decide(speed, [1 / t for t in r.projection.per_run]).verdict != "slower"]
    predicted = fit.predict(batch * row_tokens) * best.ranks if fit is not None else None
    peak = max(v for v in (predicted, best.peak_rss_bytes) if v) if (predicted or best.peak_rss_bytes) else None
    hours = proj.seconds / 3600
    costs = {}
    if req.price_per_hour is not None:
        costs = {"cost": hours * req.price_per_hour,
                 "cost_low": proj.low / 3600 * req.price_per_hour if proj.low else None,
                 "cost_high": proj.high / 3600 * req.price_per_hour if proj.high else None}
    return Recommendation(threads=best.threads, ranks=best.ranks, numa=best.numa, batch_per_rank=batch,
                          projected_seconds=proj.seconds, projected_low=proj.low, projected_high=proj.high,
                          hours=hours, projected_peak_bytes=peak, measured_peak_bytes=best.peak_rss_bytes,
                          fit_peak_bytes=predicted, provision_gib=provision_gib(peak, req.margin),
                          indistinguishable_from=rivals, steps=plan.steps, **costs)


def provision_gib(peak: float | None, margin: float) -> int | None:
    """The memory to provision for a peak: enough that the peak leaves `margin` of it free, in whole GiB."""
    return math.ceil(peak / (1 - margin) / GIB) if peak else None


def extrapolate(rows: list[PlacementRow], rec: Recommendation | None, scaling: Scaling | None,
                req: SizeRequest) -> tuple[list[Extrapolation], str | None]:
    """The job at the core counts `--cores` asked for: training and evaluation sped up as Amdahl's law fitted here
    says, the fixed part as measured, each marked as an extrapolation beyond the core counts measured. None, and
    the reason, when the runs measured fewer than two core counts: one point fits no curve."""
    if not req.cores or rec is None:
        return [], None
    if scaling is None:
        measured = sorted({r.cores for r in rows if r.tokens_per_second})
        return [], no_extrapolation(req.cores, measured)
    best = row_of(rows, rec)
    assert best.projection is not None
    parts = best.projection.parts
    here = scaling.predict(best.cores)
    out = []
    few = " (two core counts only: their noise sets the curve)" if len(scaling.cores_measured) < 3 else ""
    for c in req.cores:
        speed = scaling.predict(c) / here
        seconds = (parts["train"] + parts["eval"]) / speed + parts["save"] + parts["fixed"]
        out.append(Extrapolation(cores=c, seconds=seconds, speedup=speed, extrapolation=c > max(scaling.cores_measured),
                                 source=f"Amdahl's law fitted over {', '.join(map(str, scaling.cores_measured))} "
                                        f"cores here, serial share {scaling.serial:.2f}{few}"))
    return out, None


def no_extrapolation(asked: tuple[int, ...], measured: list[int]) -> str:
    """Why `--cores` gave no projection, and what to measure instead."""
    which = f"only {measured[0]} core{'s' if measured[0] > 1 else ''}" if measured else "none"
    other = 1 if measured and measured[0] > 1 else 2
    hint = (f"; measure another core count too, e.g. --placements {measured[0]}x1,{other}x1" if measured else "")
    return (f"no projection to {', '.join(map(str, asked))} cores: it needs throughput measured at two core counts "
            f"or more (Amdahl's law is fitted through them), and the placements here measured {which}{hint}")

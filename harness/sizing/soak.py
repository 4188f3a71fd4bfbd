"""The soak run: the recommended configuration for as many of the job's steps as the time left allows, evaluating
as the job does, under the same memory budget; its per-step peaks give the growth to the job's end
(harness/sizing/growth.py), and the recommendation's peak memory is projected with it."""

from __future__ import annotations

import math
from collections.abc import Callable

from harness.config.identity import MEASURED
from harness.config.spec import CellSpec
from harness.launch.console import console
from harness.results.records import CellRecord
from harness.sizing import cells as C
from harness.sizing.findings import provision_gib
from harness.sizing.findings_model import PlacementRow, Recommendation, Soak
from harness.sizing.growth import MIN_STEPS, fit_growth
from harness.sizing.request import SizeRequest

RunCell = Callable[[CellSpec, str, str], CellRecord]  # (spec, what to call it, its role) -> its record


def soak_steps(row: PlacementRow, seconds_left: float, most: int) -> int:
    """As many of the job's steps as fit the time left, at the rate the placement's runs projected."""
    proj, plan = row.projection, row.schedule
    if proj is None or plan is None:
        return 0
    per_step = (proj.parts["train"] + proj.parts["eval"] + proj.parts["save"]) / max(1, plan.steps)
    fit = math.floor((seconds_left - proj.parts["fixed"]) / per_step) if per_step > 0 else plan.steps
    return max(0, min(plan.steps, most, fit))


def soak(req: SizeRequest, row: PlacementRow, rec: Recommendation, seconds_left: float,
         run: RunCell) -> tuple[Soak | None, Recommendation]:
    """Run the soak of `rec` (made from `row`) with `run`, in `seconds_left`: what it found, and the recommendation
    with the peak it projects to the job's end. None (and a note) where there is no time for it."""
    if req.soak_max == 0:
        return None, rec
    steps = soak_steps(row, seconds_left, req.soak_max)
    if steps < MIN_STEPS + 2:
        console.print(f"[yellow]size:[/] no time left for a soak run ({steps} steps would fit); the peak memory "
                      "projected is the short runs' and does not include growth over the job")
        return Soak(ran=False, steps_that_fit=steps), rec
    spec = C.cell(req.cfg, rec.batch_per_rank, rec.layout, req.memory, 1, steps - 1, req.probe_eval_rows,
                  timeout_s=max(600.0, req.budget_s), save=req.cfg.save_checkpoints, max_steps=steps)
    record = run(spec, f"soak {steps} of {rec.steps} steps", "soak")
    ran = Soak(ran=True, steps=steps, job_steps=rec.steps, status=record.status, key=record.key)
    tree_peak = record.memory.peak_rss_bytes if record.memory else None
    growth = fit_growth([st.hwm_bytes for st in record.result.steps]) if record.result else None
    if record.status not in MEASURED or not tree_peak or growth is None:
        note = (f"the soak ended {record.status}" + (f": {record.reason}" if record.reason else "")
                if record.status not in MEASURED else "the soak recorded too few steps' peaks")
        return ran.model_copy(update={"note": note}), rec
    point, upper = growth.factors(rec.steps)
    ran = ran.model_copy(update={"growth": growth, "peak_bytes": tree_peak, "factor": point, "factor_high": upper,
                                 "projected_peak_bytes": tree_peak * point,
                                 "projected_peak_high_bytes": tree_peak * upper})
    peak = max(rec.projected_peak_bytes or 0, tree_peak * point)
    high = max(peak, tree_peak * upper)
    # provision for the upper end: a job that outgrows its memory is lost, one that is given too much is not
    peak_from = f"soak of {steps} steps, grown to {rec.steps}" if rec.steps > steps else \
        f"soak of the whole job ({steps} steps)"
    return ran, rec.model_copy(update={"projected_peak_bytes": peak, "projected_peak_high_bytes": high,
                                       "provision_gib": provision_gib(high, req.margin), "peak_from": peak_from})

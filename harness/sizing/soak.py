"""The soak run: the recommended configuration for as many of the job's steps as the time left allows, evaluating
as the job does, under the same memory budget; its per-step peaks give the growth to the job's end
(harness/sizing/growth.py), and the recommendation's peak memory is projected with it."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from harness.base.units import GIB
from harness.launch.console import console
from harness.sizing import cells as C
from harness.sizing.growth import MIN_STEPS, fit_growth

if TYPE_CHECKING:
    from harness.sizing.size import Sizing


def soak_steps(row: dict[str, Any], seconds_left: float, most: int) -> int:
    """As many of the job's steps as fit the time left, at the rate the placement's runs projected."""
    proj, steps = row["projection"], row["schedule"]["steps"]
    per_step = (proj["parts"]["train"] + proj["parts"]["eval"] + proj["parts"]["save"]) / max(1, steps)
    fit = math.floor((seconds_left - proj["parts"]["fixed"]) / per_step) if per_step > 0 else steps
    return max(0, min(steps, most, fit))


def soak(s: Sizing, findings: dict[str, Any]) -> dict[str, Any] | None:
    """Run the soak and fold its growth into the recommendation; None (and a note) where there is no time for it."""
    rec, req = findings.get("recommendation"), s.req
    if not rec or req.soak_max == 0:
        return None
    row = next(r for r in findings["placements"] if r["placement"] == rec["placement"])
    steps = soak_steps(row, req.budget_s - s.elapsed(), req.soak_max)
    if steps < MIN_STEPS + 2:
        console.print(f"[yellow]size:[/] no time left for a soak run ({steps} steps would fit); the peak memory "
                      "projected is the short runs' and does not include growth over the job")
        return {"ran": False, "steps_that_fit": steps}
    place = C.Placement(rec["threads"], rec["ranks"], numa="NUMA" in rec["placement"])
    spec = C.cell(req.cfg, rec["batch_per_rank"], place, req.memory, 1, steps - 1, req.probe_eval_rows,
                  timeout_s=max(600.0, req.budget_s), save=req.cfg.save_checkpoints, max_steps=steps)
    record = s.runner.run(spec, f"soak {steps} of {rec['steps']} steps", "soak")
    out: dict[str, Any] = {"ran": True, "steps": steps, "job_steps": rec["steps"], "status": record.status,
                           "key": record.key}
    tree_peak = record.memory.peak_rss_bytes if record.memory else None
    growth = fit_growth([st.hwm_bytes for st in record.result.steps]) if record.result else None
    if record.status not in ("ok", "disturbed") or not tree_peak or growth is None:
        out["note"] = (f"the soak ended {record.status}" + (f": {record.reason}" if record.reason else "")
                       if record.status not in ("ok", "disturbed") else "the soak recorded too few steps' peaks")
        return out
    point, upper = growth.factors(rec["steps"])
    out.update(growth=growth.to_dict(), peak_bytes=tree_peak, factor=point, factor_high=upper,
               projected_peak_bytes=tree_peak * point, projected_peak_high_bytes=tree_peak * upper)
    rec["projected_peak_bytes"] = max(rec["projected_peak_bytes"] or 0, tree_peak * point)
    rec["projected_peak_high_bytes"] = max(rec["projected_peak_bytes"], tree_peak * upper)
    # provision for the upper end: a job that outgrows its memory is lost, one that is given too much is not
    rec["provision_gib"] = math.ceil(rec["projected_peak_high_bytes"] / (1 - req.margin) / GIB)
    rec["peak_from"] = f"soak of {steps} steps, grown to {rec['steps']}" if rec["steps"] > steps else \
        f"soak of the whole job ({steps} steps)"
    return out

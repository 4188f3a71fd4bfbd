"""The sizing report (`xeonft size`): the boundary (memory against batch, budgets marked), throughput over
placements, the projected job per placement, the recommendation and, where run, the validation. HTML (images
embedded, everything escaped) and Markdown, beside the JSON for scripts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from harness.base.units import GIB, num
from harness.config.identity import MEASURED
from harness.render.figures import Figures, setup
from harness.render.pages import Page, md_table
from harness.sizing.findings_model import FILE, Findings

LEAD = ("Peak memory is the process tree's peak RSS (shared pages counted in each process), sampled at 10 Hz. "
        "Throughput is tokens trained on per second over measured steps (timing warm-up, evaluation and saves "
        "apart). Projected times are a 95% prediction interval for one run of the job, from each run's own "
        "projection (its throughput, evaluation rate, save time and fixed cost); fewer runs, wider intervals. "
        "Predicted boundaries for budgets not tried come from the fitted line and are predictions, not "
        "measurements.")


def _h(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 3600


def tables(f: Findings) -> dict[str, pd.DataFrame]:
    req, job, cfg = f.request, f.job, f.request.config
    out: dict[str, pd.DataFrame] = {}
    out["job"] = pd.DataFrame([
        ("model", cfg.model), ("dataset", cfg.dataset), ("precision", cfg.precision), ("sequence length", job.seq_len),
        ("gradient checkpointing", cfg.gradient_checkpointing),
        ("train rows -> packed rows", f"{job.train_rows} -> {job.packed_rows}"),
        ("tokens per epoch", job.train_tokens), ("epochs", cfg.num_train_epochs),
        ("eval rows (tokens), every N steps", f"{job.eval_rows} ({job.eval_tokens}), {cfg.eval_steps}"),
        ("memory budget GiB", req.memory_bytes / GIB), ("margin left free", f"{req.margin:.0%}")],
        columns=["", "value"])
    out["probes"] = pd.DataFrame([{
        "batch": p.batch, "status": p.status, "peak GiB": (p.peak_bytes or 0) / GIB or None,
        "tokens/step": p.tokens_per_step, "wall s": p.seconds,
        "in fit": "yes" if p.in_fit else ("no: held at the budget" if p.status == "ok" else "no"),
        "reason": p.reason or ""}
        for p in f.probes])
    out["predicted"] = pd.DataFrame([{
        "budget GiB": r.budget_bytes / GIB, "tokens/step": r.tokens_per_step, "batch": r.batch,
        "kind": "measured budget (fit)" if r.measured else "prediction"}
        for r in f.predicted_boundaries])
    b = f.breakdown
    mib = 2**20

    def part(name: str, analytic: float | None, measured: float | None, unit: float) -> tuple[str, Any, Any]:
        return name, None if analytic is None else analytic / unit, None if measured is None else measured / unit

    quant = f.request.config.quant
    out["breakdown"] = pd.DataFrame([
        part("weights, GiB" if quant == "none" else f"weights ({quant} decoder linears), GiB", b.weights_bytes,
             None, GIB),
        *([part("the same weights dense, GiB", b.dense_weights_bytes, None, GIB)] if b.dense_weights_bytes else []),
        part("LoRA adapters, their gradients and AdamW state, GiB", b.adapters_optimizer_bytes, None, GIB),
        part("runtime (the measured fixed part less the two above), GiB", None, b.runtime_bytes, GIB),
        part("fixed part, GiB", b.weights_bytes + b.adapters_optimizer_bytes, b.measured_fixed_bytes, GIB),
        part("per token of a step, MiB", b.activations_bytes_per_token, b.measured_bytes_per_token, mib),
        part("of which the logits, MiB", b.logits_bytes_per_token, None, mib),
    ], columns=["part", "analytic", "measured (fit)"]) if b else pd.DataFrame()
    out["placements"] = pd.DataFrame([{
        "placement": r.placement, "batch/rank": r.batch_per_rank, "runs": r.runs,
        "tok/s": r.tokens_per_second, "95% interval": _pair(r.tps_low, r.tps_high),
        "peak GiB": (r.peak_rss_bytes or 0) / GIB or None,
        "projected h": _h(r.projection.seconds if r.projection else None),
        "95% prediction h": _pair(_h(r.projection.low if r.projection else None),
                                  _h(r.projection.high if r.projection else None), "{:.2f}"),
        "failed": "; ".join(r.failed)} for r in f.placements])
    out["extrapolations"] = pd.DataFrame([{
        "cores": e.cores, "projected h": e.seconds / 3600, "speedup": e.speedup,
        "kind": "extrapolation" if e.extrapolation else "within measured range", "from": e.source}
        for e in f.extrapolations])
    sk, g = f.soak, f.soak.growth if f.soak else None
    out["soak"] = pd.DataFrame([
        ("steps run (of the job's)", f"{sk.steps} ({sk.job_steps})"), ("status", sk.status),
        ("peak GiB (whole process tree)", (sk.peak_bytes or 0) / GIB or None),
        ("growth, MiB per doubling of the steps (all ranks)", (g.log_slope if g else 0) * math.log(2) / 2**20),
        ("growth over the later half, MiB per step (all ranks)", (g.linear_slope if g else 0) / 2**20),
        ("projected peak at the job's end GiB (log curve)", (sk.projected_peak_bytes or 0) / GIB or None),
        ("upper end GiB (straight line)", (sk.projected_peak_high_bytes or 0) / GIB or None),
        ("note", sk.note or "")], columns=["", "value"]) if sk and sk.ran else pd.DataFrame()
    v = f.validation
    out["validation"] = pd.DataFrame([
        ("steps (share of the job)", f"{v.steps} ({v.fraction:.0%})"), ("status", v.status),
        ("projected min (95% prediction)", f"{v.projected_seconds / 60:.1f} "
                                           f"({_pair(_m(v.projected_low), _m(v.projected_high))})"),
        ("actual min", _m(v.actual_seconds)),
        ("time error", "did not finish" if v.time_error is None else f"{v.time_error:+.1%}"),
        ("inside the interval", {True: "yes", False: "no", None: "-"}[v.inside_interval]),
        ("reason", v.reason or ""),
        ("projected peak GiB (upper end)", f"{(v.projected_peak_bytes or 0) / GIB:.2f} "
                                           f"({(v.projected_peak_high_bytes or 0) / GIB:.2f})"),
        ("actual peak GiB", (v.actual_peak_bytes or 0) / GIB),
        ("memory error", f"{(v.memory_error or 0):+.1%}"),
        ("CPU steal during measured steps", num(v.noise.get("steal_share"))),
        ("other processes, cores", num(v.foreign_cpu_cores))], columns=["", "value"]) if v else pd.DataFrame()
    return out


def _m(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 60


def _pair(low: float | None, high: float | None, pattern: str = "{:.1f}") -> str:
    return "-" if low is None or high is None else f"{pattern.format(low)}-{pattern.format(high)}"


def figures(f: Findings, out: Path) -> Figures:
    plt = setup()
    figs: Figures = {}
    req = f.request
    probes = f.probes
    if probes:
        fig, ax = plt.subplots(figsize=(7, 4))
        for ok, marker, label in ((True, "o", "trained"), (False, "x", "over the budget (oom)")):
            pts = [(p.batch, (p.peak_bytes or 0) / GIB) for p in probes if (p.status in MEASURED) == ok]
            if pts:
                ax.scatter(*zip(*pts, strict=True), marker=marker, s=60, label=label)
        fit = f.fit
        if fit:
            top = max(p.batch for p in probes) * 1.3
            xs = [top * i / 50 for i in range(51)]
            ax.plot(xs, [fit.predict(x * f.row_tokens) / GIB for x in xs], "--", label="fit: fixed + per token")
        rec = f.recommendation
        if rec and rec.ranks == 1:
            ax.axvline(rec.batch_per_rank, color="green", ls="-.", label="recommended batch")
        ax.axhline(req.memory_bytes / GIB, color="red", label="budget")
        ax.axhline(req.memory_bytes * (1 - req.margin) / GIB, color="orange", ls=":", label="budget less margin")
        ax.set(xlabel="batch (packed rows per step)", ylabel="peak RSS of the tree (GiB)",
               title="Memory against batch: the boundary")
        ax.legend(fontsize=8)
        figs["memory"] = _save(fig, out / "memory.png", plt, "Peak memory (GiB, tree RSS) per probe against batch; "
                               "the budget and the margin marked; the dashed line is the fitted model")
    rows = [(r, r.tokens_per_second, r.projection) for r in f.placements if r.tokens_per_second and r.projection]
    if rows:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        names = [r.placement for r, _, _ in rows]
        tps = [t for _, t, _ in rows]
        err = [[t - (r.tps_low or t) for r, t, _ in rows], [(r.tps_high or t) - t for r, t, _ in rows]]
        a1.barh(names, tps, xerr=err, color="#4c72b0")
        a1.set(xlabel="tokens/s (median of runs, 95% interval)", title="Throughput by placement")
        hours = [p.seconds / 3600 for _, _, p in rows]
        herr = [[h - (_h(p.low) or h) for h, (_, _, p) in zip(hours, rows, strict=True)],
                [(_h(p.high) or h) - h for h, (_, _, p) in zip(hours, rows, strict=True)]]
        a2.barh(names, hours, xerr=herr, color="#dd8452")
        a2.set(xlabel="hours (95% prediction interval)", title="Projected job time by placement")
        figs["placements"] = _save(fig, out / "placements.png", plt, "Throughput and the job's projected wall time "
                                   "per placement (threads per process x ranks)")
    return figs


def _save(fig: Any, path: Path, plt: Any, caption: str) -> tuple[Path, str]:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path, caption


def _hm(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _dense_line(f: Findings) -> list[str]:
    """For a quantized base: the weights it holds against the same weights dense, and whether the recommended
    job's peak with the dense weights instead (analytic: the peak plus the weights' difference) fits the budget."""
    b, rec, cfg = f.breakdown, f.recommendation, f.request.config
    if b is None or b.dense_weights_bytes is None or rec is None or not rec.projected_peak_bytes:
        return []
    dense_peak = rec.projected_peak_bytes + b.dense_weights_bytes - b.weights_bytes
    budget = f.request.memory_bytes
    verdict = "within" if dense_peak <= budget else "beyond"
    return [f"  weights: {b.weights_bytes / GIB:.2f} GiB with {cfg.quant}, {b.dense_weights_bytes / GIB:.2f} GiB "
            f"dense ({cfg.precision}); with the dense base this job would peak near {dense_peak / GIB:.2f} GiB "
            f"(the peak above plus the weights' difference, analytic), {verdict} the {budget / GIB:.2f} GiB budget"]


def summary_lines(f: Findings) -> list[str]:
    """The answer in words: the boundary, the recommendation with its interval, the validation if run."""
    lines = []
    b = f.boundary
    if b.largest_ok:
        fail = f", batch {b.smallest_failed} did not" if b.smallest_failed else \
            " (the largest tried; the boundary is above it)"
        lines.append(f"boundary: batch {b.largest_ok} trains within {f.request.memory_bytes / GIB:.2f} GiB{fail}")
        if b.fastest_safe_batch and b.fastest_safe_batch != b.safe_batch:
            lines.append(f"  batch {b.fastest_safe_batch} trained more than 15% faster than batch "
                         f"{b.safe_batch} (the largest within the margin) in the probes: the placements run it")
    rec = f.recommendation
    if not rec:
        lines.append(f.verdict or "no recommendation: no placement trained")
        return lines
    interval = (f" (95% prediction interval {_hm(rec.projected_low)} to {_hm(rec.projected_high)})"
                if rec.projected_low else " (one run: no interval, cannot tell how far off)")
    lines.append(f"recommendation: batch {rec.batch_per_rank} per rank, {rec.placement}, provision "
                 f"{rec.provision_gib} GiB; the job ({rec.steps} steps) takes {_hm(rec.projected_seconds)}"
                 f"{interval}")
    if rec.projected_peak_bytes:
        high = rec.projected_peak_high_bytes
        lines.append(f"  peak memory: {rec.projected_peak_bytes / GIB:.2f} GiB"
                     + (f" (up to {high / GIB:.2f} GiB if it keeps growing as the soak's later half did)"
                        if high and high > 1.01 * rec.projected_peak_bytes else "")
                     + f", from the {rec.peak_from or 'short runs (no soak: growth over the job not included)'}")
    lines.extend(_dense_line(f))
    if rec.indistinguishable_from:
        lines.append(f"  cannot tell apart from: {', '.join(rec.indistinguishable_from)}")
    if rec.cost is not None:
        lines.append(f"  cost: {rec.cost:.2f} at the given price per hour")
    for e in f.extrapolations:
        lines.append(f"  at {e.cores} cores: {_hm(e.seconds)}" + (f" (extrapolated: {e.source})"
                                                                 if e.extrapolation else ""))
    if f.no_extrapolation:
        lines.append(f"  {f.no_extrapolation}")
    v = f.validation
    if v:
        memory = (f"peak memory projected {(v.projected_peak_bytes or 0) / GIB:.2f} GiB, actual "
                  f"{(v.actual_peak_bytes or 0) / GIB:.2f} GiB ({(v.memory_error or 0):+.1%})")
        if v.projected_peak_high_bytes and v.actual_peak_bytes:
            memory += (", inside the projected range" if v.actual_peak_bytes <= v.projected_peak_high_bytes
                       else f", above the projected range's top ({v.projected_peak_high_bytes / GIB:.2f} GiB)")
        g = v.memory_growth
        if g and g.rss_last_minute > 1.1 * g.rss_after_first_minute:
            memory += (f"; memory grew during the run, {g.rss_after_first_minute / GIB:.2f} -> "
                       f"{g.rss_last_minute / GIB:.2f} GiB ({g.bytes_per_step / 2**20:+.1f} MiB per step)")
        if v.time_error is None:
            lines.append(f"validation ({v.steps} steps, {v.fraction:.0%} of the job) did not finish: "
                         f"{v.status}, {v.reason}; {memory}")
        else:
            inside = "inside" if v.inside_interval else "outside"
            lines.append(f"validation ({v.steps} steps, {v.fraction:.0%} of the job, {v.status}): projected "
                         f"{_hm(v.projected_seconds)}, actual {_hm(v.actual_seconds)} "
                         f"({v.time_error:+.1%}, {inside} the interval); {memory}")
    return lines


SECTIONS = (("job", "The job, as trl packs it"), ("probes", "The boundary: probes"),
            ("predicted", "Largest batch by budget"), ("breakdown", "Memory by part (analytic beside measured)"),
            ("placements", "Placements"), ("soak", "Memory over the job: the soak run"),
            ("extrapolations", "More cores than here"),
            ("validation", "Validation: projected against actual"))


def render_sizing(f: Findings, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    t = tables(f)
    figs = figures(f, out)
    lines = summary_lines(f)
    fp = f.fingerprint
    machine = f"{fp.cpu}, {fp.cores} cores, {fp.numa_nodes} NUMA node(s), AMX: {'yes' if fp.amx else 'no'}"
    model = f.request.config.model
    md = [f"# xeonft sizing: {model}", "", f"Machine: {machine}.", "", LEAD, ""]
    md += [f"**{line}**" if i == 0 else line for i, line in enumerate(lines)] + [""]
    page = Page("xeonft sizing").heading(f"xeonft sizing: {model}", level=1)
    page.paragraph(f"Machine: {machine}.").paragraph(LEAD).bullets(lines)
    for key, title in SECTIONS:
        if t[key].empty:
            continue
        md += [f"## {title}", "", md_table(t[key])]
        page.heading(title).table(t[key])
    for path, caption in figs.values():
        md += [f"![{caption}]({path.name})", "", f"_{caption}_", ""]
    page.figures(figs)
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    (out / "index.html").write_text(page.html(), encoding="utf-8")
    f.write(out / FILE)
    return out

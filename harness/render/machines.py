"""The machines page (`xeonft machines`): the verdict first, then the machines, the headline configuration on each
(tokens/s, MFU against each machine's own peak, cost per million tokens, intervals), the tests between them, every
other configuration, sizings' jobs; two figures (throughput and cost per machine). HTML, Markdown and JSON."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.history.machines_model import ConfigurationComparison, MachinesFindings
from harness.render.figures import save, setup
from harness.render.pages import Page, md_table
from harness.results.store import write_json

LEAD = ("Throughput is tokens trained on per second of measured steps (timing warm-up, compile, evaluation and "
        "start-up excluded), one value per run (a process); each figure is the median of a machine's runs with a "
        "95% interval of the typical run. MFU is model FLOPs per second over each machine's own GEMM peak, "
        "measured on it at the cell's threads and dtype. Cost per million tokens is the machine's price per hour "
        "over the tokens it trains in an hour, at the median and at the interval's ends; it leaves out everything "
        "but the measured steps (evaluation, start-up, idle time), so a whole job costs more: see the sizings.")


def _span(low: float | None, high: float | None, digits: int = 1) -> str:
    return "-" if low is None or high is None else f"{low:.{digits}f}-{high:.{digits}f}"


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def machines_table(f: MachinesFindings) -> pd.DataFrame:
    return pd.DataFrame([{
        "machine": m.name, "kind": m.label, "kind id": m.kind, "hosts": ", ".join(m.hosts) or "-",
        "result sets": len(m.sources), "runs": m.runs,
        "GEMM peak TFLOP/s": ", ".join(f"{d} {v:.3f}" for d, v in m.gemm_peak_tflops.items()) or "-",
        f"price {f.currency}/h": "-" if m.price_per_hour is None else f"{m.price_per_hour:g}"} for m in f.machines])


def _against(c: ConfigurationComparison, machine: str) -> str:
    """How a machine stands against the fastest one of its configuration, in a few words."""
    if machine == c.fastest:
        return "fastest" if len(c.results) > 1 else "-"
    x = next(x for x in c.speed if x.machine == machine)
    words = {"slower": "slower", "unchanged": "same speed", "faster": "faster", "inconclusive": "cannot tell"}
    return f"{words.get(x.verdict, x.verdict)} ({x.ratio:.2f}x, {_span(x.low, x.high, 2)})"


def results_table(c: ConfigurationComparison, currency: str, with_label: bool = False) -> pd.DataFrame:
    rows = []
    for r in c.results:
        row: dict[str, object] = {"configuration": c.label} if with_label else {}
        row.update({
            "machine": r.machine, "runs": r.runs, "tok/s median": round(r.tokens_per_second, 1),
            "95% interval": _span(r.low, r.high), "against the fastest": _against(c, r.machine),
            "MFU": "-" if r.mfu is None else f"{r.mfu:.1%}",
            "GEMM peak TFLOP/s": _g(r.gemm_tflops),
            f"{currency} per M tokens": _g(r.cost_per_million_tokens),
            "cost interval": _span(r.cost_low, r.cost_high, 4) if r.cost_low is not None else "-",
            "versions": ", ".join(f"{k} {v}" for k, v in r.versions.items())})
        rows.append(row)
    return pd.DataFrame(rows)


def contrasts_table(c: ConfigurationComparison) -> pd.DataFrame:
    return pd.DataFrame([{
        "machine": x.machine, "against": x.against, "by": x.measure, "verdict": x.verdict,
        "ratio": round(x.ratio, 3), "95% interval": _span(x.low, x.high, 3), "test": x.test}
        for x in [*c.speed, *c.cost]])


def jobs_table(f: MachinesFindings) -> pd.DataFrame:
    return pd.DataFrame([{
        "machine": j.machine, "sizing": j.source, "recommended": j.configuration, "hours": round(j.hours, 2),
        "95% prediction interval": _span(j.low, j.high, 2), f"cost {f.currency}": _g(j.cost),
        "cost interval": _span(j.cost_low, j.cost_high, 2) if j.cost_low is not None else "-"} for j in f.jobs])


def _bars(f: MachinesFindings, path: Path, cost: bool) -> Path | None:
    shown = [c for c in f.configurations if len(c.results) > 1 or len(f.configurations) == 1][:8]
    if cost:
        shown = [c for c in shown if c.cheapest]
    if not shown:
        return None
    plt = setup()
    machines = [m.name for m in f.machines]
    fig, ax = plt.subplots(figsize=(max(6.5, 1.2 * len(shown) * max(1, len(machines)) / 2 + 3), 4.2))
    width = 0.8 / max(1, len(machines))
    for i, name in enumerate(machines):
        xs: list[float] = []
        ys: list[float] = []
        errs: list[list[float]] = [[], []]
        for j, c in enumerate(shown):
            r = next((r for r in c.results if r.machine == name), None)
            if r is None:
                continue
            mid = r.cost_per_million_tokens if cost else r.tokens_per_second
            low, high = (r.cost_low, r.cost_high) if cost else (r.low, r.high)
            if mid is None:
                continue
            xs.append(j + (i - (len(machines) - 1) / 2) * width)
            ys.append(mid)
            errs[0].append(mid - (low if low is not None else mid))
            errs[1].append((high if high is not None else mid) - mid)
        ax.bar(xs, ys, width=width, yerr=errs, capsize=3, label=name)
    ax.set_xticks(range(len(shown)), [c.label[:48] for c in shown], rotation=20, ha="right", fontsize=8)
    ax.set(ylabel=f"{f.currency} per million tokens trained" if cost else "tokens/s (median, 95% interval)",
           title="Cost per million trained tokens, measured steps only" if cost else "Throughput per machine")
    ax.legend(fontsize=8)
    return save(fig, path)


def render_machines(f: MachinesFindings, out: Path) -> Path:
    """machines.json, report.md and index.html in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "machines.json", f.model_dump(mode="json"))
    top = next((c for c in f.configurations if c.identity == f.headline), None)
    figures = [(p, caption) for p, caption in (
        (_bars(f, out / "throughput.png", cost=False), "Throughput per machine and configuration: median of runs, "
                                                       "95% interval"),
        (_bars(f, out / "cost.png", cost=True), "Cost per million tokens trained at the stated prices (measured "
                                                "steps only)")) if p is not None]
    page = Page("xeonft machines").heading("xeonft machines: which server for this job", level=1)
    md = ["# xeonft machines: which server for this job", "", "## Verdict", ""]
    page.heading("Verdict").bullets(f.verdict)
    md += [f"- {line}" for line in f.verdict] + ["", LEAD, ""]
    page.paragraph(LEAD)
    if f.common:
        page.paragraph(f"Every configuration here: {f.common}.", kind="")
        md += [f"Every configuration here: {f.common}.", ""]
    page.heading("Machines").table(machines_table(f)).paragraph(f.kinds_rule, kind="note")
    md += ["## Machines", "", md_table(machines_table(f)), f"> {f.kinds_rule}", ""]
    if top is not None:
        title = f"The headline configuration: {top.label}"
        page.heading(title).table(results_table(top, f.currency))
        md += [f"## {title}", "", md_table(results_table(top, f.currency))]
        if top.speed or top.cost:
            page.heading("Verdicts between machines").table(contrasts_table(top))
            md += ["## Verdicts between machines", "", md_table(contrasts_table(top))]
    others = [c for c in f.configurations if c.identity != f.headline]
    if others:
        frame = pd.concat([results_table(c, f.currency, with_label=True) for c in others], ignore_index=True)
        page.heading("Every other configuration").table(frame)
        md += ["## Every other configuration", "", md_table(frame)]
    if f.jobs:
        page.heading("The job on each machine (from sizings)").table(jobs_table(f))
        md += ["## The job on each machine (from sizings)", "", md_table(jobs_table(f))]
    for path, caption in figures:
        page.figure(path, alt=caption, caption=caption)
        md += [f"![{caption}]({path.name})", "", f"_{caption}_", ""]
    page.heading("Sources").bullets(f.sources or ["-"])
    md += ["## Sources", "", *[f"- {s}" for s in f.sources], ""]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    (out / "index.html").write_text(page.html(), encoding="utf-8")
    return out

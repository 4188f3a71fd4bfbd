"""The trend page (`xeonft history`): per cell and machine, run-level medians with their 95% intervals against
library version, date or commit, the change points marked and named, the work of a step beside each point."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.history.trend import Series, describe_step
from harness.render.figures import save, setup
from harness.render.pages import Page, md_table

LEAD = ("Each point is one library version (or date, or commit) of one cell on one machine: the median of its runs' "
        "throughput (tokens trained on per second over measured steps; disturbed runs left out) with a 95% interval "
        "across runs. Change points come from a penalized piecewise-constant fit over the runs, each kept only when "
        "Welch's test on the runs either side calls it slower or faster beyond the threshold; where the work of a "
        "step (tokens, rows, documents, attention span) changed across it, the speed change is not the library's "
        "speed alone.")


def _table(s: Series) -> pd.DataFrame:
    return pd.DataFrame([{
        s.by: p.x, "runs": p.n, "tok/s median": p.median,
        "95% interval": "-" if p.low is None else f"{p.low:.1f}-{p.high:.1f}",
        "eval loss": p.eval_loss, "tokens/step": p.work.get("tokens_per_step"),
        "docs/step": p.work.get("documents_per_step"), "attention span": p.work.get("attention_span"),
        "stacks": ", ".join(p.stacks), "faults injected": ", ".join(p.faults),
        "left out (other stacks)": "; ".join(p.aside)} for p in s.points])


def _plot(s: Series, path: Path) -> None:
    plt = setup()
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(s.points) + 3), 3.8))
    xs = list(range(len(s.points)))
    med = [p.median for p in s.points]
    err = [[m - (p.low or m) for m, p in zip(med, s.points, strict=True)],
           [(p.high or m) - m for m, p in zip(med, s.points, strict=True)]]
    ax.errorbar(xs, med, yerr=err, fmt="o-", capsize=4, label="median, 95% interval")
    for i, p in enumerate(s.points):
        ax.scatter([i] * len(p.runs), p.runs, s=12, color="grey", alpha=0.6)
    names = [p.x for p in s.points]
    for step in s.steps:
        at = names.index(step.after) - 0.5
        ax.axvline(at, color="red" if step.verdict == "slower" else "green", ls="--")
    ax.set_xticks(xs, names, rotation=30, ha="right")
    ax.set(xlabel=s.by, ylabel="tokens/s", title=s.label[:90])
    save(fig, path)


def render_history(all_series: list[Series], out: Path, by: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# xeonft history by {by}", "", LEAD, ""]
    page = Page("xeonft history").heading(f"xeonft history by {by}", level=1).paragraph(LEAD)
    if not all_series:
        md.append("_No cell has runs at two or more points yet._")
        page.paragraph("No cell has runs at two or more points yet.", kind="")
    for i, s in enumerate(all_series):
        png = out / f"trend-{i}.png"
        _plot(s, png)
        title = f"{s.label} on {s.cpu or s.machine}"
        found = [describe_step(by, st) for st in s.steps] or ["no change point: the runs cannot tell the points "
                                                             "apart beyond the threshold"]
        md += [f"## {title}", "", *[f"- {line}" for line in found], "", md_table(_table(s)),
               f"![trend]({png.name})", ""]
        page.heading(title).bullets(found).table(_table(s)).figure(png, alt="trend")
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    (out / "index.html").write_text(page.html(), encoding="utf-8")
    return out

"""The bisect page (`bisect.html` in its result set): the releases tried in release order, each with its runs'
median and interval, the work of a step and its verdict against the good release; the culprit with every package
that moved there and what putting each back did; the packages each stack resolved to; what the search cost."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pandas as pd

from harness.base.stats import summarize_runs
from harness.history.bisect_report import SavedBisect, culprit_lines, mean_work
from harness.render.figures import save, setup
from harness.render.pages import Page

LEAD = ("Each release of {lib} ran the same cell in a stack of its own ({how}), each run a separate process. "
        "{unit}; a release shows the median of its runs and a 95% interval across runs. Each verdict compares a "
        "release's runs with the good release's (Welch's t-test on log values, threshold {threshold:.0%}, alpha "
        "{alpha:g}); 'inconclusive' means the runs cannot tell. rows, docs: packed rows and documents in a step; "
        "span: the tokens a token attends to within its document (mean); ms/token: milliseconds of a measured "
        "step per non-padding token; own eval loss: xeonft's own, one definition under every stack (each eval row "
        "run alone, every token after the first). Where rows, documents or span change, the release changed the "
        "work of a step, not only its speed.")


def _shown(saved: SavedBisect, runs: list[float]) -> tuple[float, float | None, float | None]:
    """Median and 95% interval in the unit shown (eval loss is searched as 1/loss, higher being better)."""
    s = summarize_runs(runs)
    if saved.metric == "throughput":
        return s.median, s.low, s.high
    return 1 / s.median, (1 / s.high if s.high else None), (1 / s.low if s.low else None)


def _varying(stacks: dict[str, Any], labels: list[str]) -> list[str]:
    """The packages whose resolved versions differ between the stacks shown (the rest are the same everywhere)."""
    seen: dict[str, set[str]] = {}
    for label in labels:
        for k, v in ((stacks.get(label) or {}).get("resolved") or {}).items():
            seen.setdefault(k, set()).add(str(v))
    return sorted(k for k, v in seen.items() if len(v) > 1)


def _median_loss(timings: dict[str, Any], label: str) -> float | None:
    own = (timings.get("own_eval") or {}).get(label)
    return statistics.median(x["loss"] for x in own) if own else None


def version_table(saved: SavedBisect) -> pd.DataFrame:
    """One row per release measured, in release order."""
    r, t = saved.result, saved.timings
    tried = [v for v in r.versions if r.runs.get(v)]
    stacks = t.get("stacks", {})
    moved = [k for k in _varying(stacks, tried) if k != saved.libs[0]]  # the bisected library is the first column
    unit = "tok/s median" if saved.metric == "throughput" else "eval loss median"
    rows = []
    for v in tried:
        median, low, high = _shown(saved, r.runs[v])
        work = mean_work(t.get("work", {}).get(v))
        verdict = r.verdicts.get(v)
        good = v == r.versions[0]
        row: dict[str, Any] = {
            saved.libs[0]: v, "released": (stacks.get(v) or {}).get("day") or "", "runs": len(r.runs[v]),
            unit: median, "95% interval": "-" if low is None or high is None else f"{low:.4g}-{high:.4g}",
            "ms/token": 1000 / median if saved.metric == "throughput" else None,
            "rows": work.get("rows_per_step"), "docs": work.get("documents_per_step"),
            "span": work.get("attention_span"),
            "own eval loss": _median_loss(t, v),
            "verdict": "good (the base)" if good else verdict.verdict if verdict else "",
            "ratio": None if good or not verdict else verdict.ratio,
            "ratio 95%": "" if good or not verdict or verdict.low is None else
            f"{verdict.low:.3f}-{verdict.high:.3f}",
            "p": None if good or not verdict else verdict.p_value,
            "culprit": "culprit" if v == r.culprit else "last good" if v == r.last_good else ""}
        for k in moved:
            row[k] = ((stacks.get(v) or {}).get("resolved") or {}).get(k, "")
        rows.append(row)
    return pd.DataFrame(rows)


def put_back_table(saved: SavedBisect) -> pd.DataFrame:
    rows = []
    for entry in saved.timings.get("put_back", {}).values():
        vc, vg = entry.get("vs_culprit"), entry.get("vs_good")
        median = _shown(saved, entry["runs"])[0] if len(entry.get("runs") or []) >= 1 else None
        rows.append({"package put back": f"{entry['package']} {entry['from']} -> {entry['to']}",
                     "runs": len(entry.get("runs") or []), "median": median,
                     f"against {saved.result.culprit}": f"{vc.verdict} x{vc.ratio:.3f}" if vc else "did not run",
                     "95%": f"{vc.low:.3f}-{vc.high:.3f}" if vc and vc.low is not None else "",
                     f"against {saved.result.last_good}": f"{vg.verdict} x{vg.ratio:.3f}" if vg else "",
                     "a cause": {True: "yes", False: "no", None: "-"}[entry.get("restores")]})
    return pd.DataFrame(rows)


def _plot(saved: SavedBisect, path: Path) -> Path:
    r = saved.result
    tried = [v for v in r.versions if r.runs.get(v)]
    plt = setup()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(tried) + 3), 3.8))
    shown = [_shown(saved, r.runs[v]) for v in tried]
    med = [m for m, _, _ in shown]
    err = [[m - (lo if lo is not None else m) for m, lo, _ in shown],
           [(hi if hi is not None else m) - m for m, _, hi in shown]]
    ax.errorbar(range(len(tried)), med, yerr=err, fmt="o-", capsize=4, label="median, 95% interval")
    for i, v in enumerate(tried):
        values = r.runs[v] if saved.metric == "throughput" else [1 / x for x in r.runs[v]]
        ax.scatter([i] * len(values), values, s=12, color="grey", alpha=0.6)
    if r.culprit in tried and r.last_good in tried:
        ax.axvline(tried.index(r.culprit) - 0.5, color="red", ls="--", label=f"culprit: {r.culprit}")
    ax.set_xticks(range(len(tried)), tried, rotation=30, ha="right")
    ylabel = "tokens/s (measured steps)" if saved.metric == "throughput" else "eval loss"
    ax.set(xlabel=saved.libs[0], ylabel=ylabel, title=f"{saved.libs[0]}: each release's runs (grey)")
    ax.legend(loc="best", fontsize="small")
    return save(fig, path)


def headline(saved: SavedBisect) -> str:
    r, lib = saved.result, saved.libs[0]
    if r.direction is None:
        return f"No change between {lib} {r.versions[0]} and {r.versions[-1]} to bisect."
    sure = "" if r.certain else " The culprit is uncertain: see the notes."
    return (f"Culprit: {lib} {r.culprit}, the first release {r.direction} than {r.versions[0]} (the last release "
            f"like it: {r.last_good}; {r.rounds} release(s) measured between the ends).{sure}")


def render_bisect(saved: SavedBisect, out: Path) -> Path:
    """Write `bisect.html` into the result set `out` and return its path."""
    lib, r, t = saved.libs[0], saved.result, saved.timings
    title = f"xeonft bisect: {lib} {r.versions[0]} -> {r.versions[-1]}"
    how = ("packages given with --with pinned to their newest release out on that release's day"
           if any((s or {}).get("day") for s in t.get("stacks", {}).values()) else "the other libraries as pinned")
    unit = ("Throughput is non-padding tokens trained on per second of measured steps (warm-up, evaluation and "
            "start-up excluded)" if saved.metric == "throughput" else "The metric is the eval loss after the same "
            "steps (lower is better)")
    page = Page(title).heading(title, level=1)
    if saved.cpu:
        page.paragraph(f"Machine: {saved.cpu}.", kind="")
    page.paragraph(LEAD.format(lib=lib, how=how, unit=unit, threshold=saved.threshold, alpha=saved.alpha))
    page.paragraph(headline(saved), strong=True)
    at_culprit = culprit_lines(r, saved.libs, t, saved.metric)
    if at_culprit:
        page.heading("At the culprit").bullets(at_culprit)
    if r.notes:
        page.heading("Notes").bullets(r.notes)
    png = _plot(saved, out / "bisect.png")
    page.heading("The releases tried").table(version_table(saved)).figure(
        png, caption="Each release's runs (grey) and their median with its 95% interval; the dashed line falls "
        "between the last good release and the culprit.")
    backs = put_back_table(saved)
    if not backs.empty:
        page.heading(f"Each moved package put back in {r.culprit}'s stack").paragraph(
            "A package is a cause when putting it back moves the speed back, significantly against the culprit's "
            "runs; its verdict against the last good release says whether all the way.", kind="").table(backs)
    builds = t.get("builds") or {}
    cost = [f"bisect wall time: {t.get('wall_seconds', 0) / 60:.1f} min"
            + (f", reusing {t['reused']} run(s) an earlier try recorded" if t.get("reused") else "")]
    if t.get("cell_seconds"):
        cost.append(f"the cells' own wall time, summed over every run shown: {t['cell_seconds'] / 60:.1f} min")
    if builds:
        secs = [b["seconds"] for b in builds.values()]
        cost.append(f"stacks built: {len(builds)}, {min(secs):.0f}-{max(secs):.0f} s each")
    page.heading("What it cost").bullets(cost)
    path = out / "bisect.html"
    path.write_text(page.html(), encoding="utf-8")
    return path

"""What a bisect found, in words and as data: the text report (`bisect.txt`), the culprit's lines (moved packages,
speed or work, the put-backs) and the saved outcome (`bisect.json`) that the page (`harness.render.bisect`) and a
later reader take it from, so the search's verdicts outlive the process that made them."""

from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.base.errors import XeonftError
from harness.base.stats import Verdict, decide, summarize_runs
from harness.history.bisect import BisectResult
from harness.results.store import write_atomic

SAVED = "bisect.json"
SAVED_LAYOUT = 1


@dataclass
class SavedBisect:
    """A finished bisect: what was bisected and how, the search's result and what each step measured."""

    libs: list[str]
    metric: str  # throughput | loss
    threshold: float
    alpha: float
    result: BisectResult
    timings: dict[str, Any]  # builds, stacks (pins, resolved, day), work, put_back, wall_seconds
    cpu: str | None = None

    def lines(self) -> list[str]:
        return report_lines(self.result, self.libs, self.timings, self.metric)


def _plain(o: Any) -> Any:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    raise TypeError(f"{type(o).__name__} is not JSON")


def save(root: Path, saved: SavedBisect) -> Path:
    """`bisect.json` in the result set (written whole or not at all)."""
    doc = {"layout": SAVED_LAYOUT, **dataclasses.asdict(saved)}
    path = root / SAVED
    write_atomic(path, json.dumps(doc, default=_plain, indent=1))
    return path


def load(root: Path) -> SavedBisect:
    """The saved outcome of the bisect whose result set is `root`; one message when it is absent or damaged."""
    path = root / SAVED
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("layout") != SAVED_LAYOUT:
            raise ValueError(f"not a layout-{SAVED_LAYOUT} bisect outcome")
        r = doc["result"]
        result = BisectResult(**{**r, "verdicts": {k: Verdict(**v) for k, v in r["verdicts"].items()}})
        timings = doc["timings"]
        for entry in timings.get("put_back", {}).values():
            for side in ("vs_good", "vs_culprit"):
                if entry.get(side):
                    entry[side] = Verdict(**entry[side])
        return SavedBisect(libs=doc["libs"], metric=doc["metric"], threshold=doc["threshold"], alpha=doc["alpha"],
                           result=result, timings=timings, cpu=doc.get("cpu"))
    except FileNotFoundError:
        raise XeonftError(f"{path}: no saved bisect outcome (the bisect did not finish, or ran before xeonft saved "
                          "one): run the same `xeonft bisect` again; it reuses every run already recorded") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise XeonftError(f"{path}: damaged bisect outcome ({type(err).__name__}: {str(err)[:200]}); run the "
                          "same `xeonft bisect` again to write it anew from the recorded runs") from None


def report_lines(result: BisectResult, libs: list[str], timings: dict[str, Any], metric: str) -> list[str]:
    """The versions measured, each with its median and verdict, then the culprit, the notes and what it cost."""
    lines = [f"{'version':>12}  {'released':>10}  runs  {'median':>9}  {'ms/tok':>6}  {'rows':>4}  {'docs':>5}  "
             f"{'span':>5}  verdict against {result.versions[0]}"]
    for v in result.versions:
        if v not in result.runs or not result.runs[v]:
            continue
        s = summarize_runs(result.runs[v])
        verdict = result.verdicts.get(v)
        shown = s.median if metric == "throughput" else 1 / s.median
        work = mean_work(timings.get("work", {}).get(v))
        day = (timings.get("stacks", {}).get(v) or {}).get("day") or ""
        per_token = f"{1000 / s.median:6.2f}" if metric == "throughput" else f"{'':6}"
        lines.append(f"{v:>12}  {day:>10}  {s.n:>4}  {shown:>9.3f}  {per_token}  {work.get('rows_per_step', 0):4.1f}"
                     f"  {work.get('documents_per_step', 0):5.1f}  {work.get('attention_span', 0):5.0f}  " + (
            "(the good version)" if v == result.versions[0] else f"{verdict.verdict}: {verdict.reason}"
            if verdict else ""))
    lines.append("(ms/tok: milliseconds of a measured step per non-padding token; rows, docs: packed rows and "
                 "documents in a step; span: tokens a token attends within its document, mean)")
    unit = "tokens/s" if metric == "throughput" else "eval loss"
    lines.append(f"(median {unit} over runs; each run a separate process)")
    if result.direction is None:
        lines.append(f"no change between {result.versions[0]} and {result.versions[-1]} to bisect")
    else:
        sure = "" if result.certain else " (uncertain: see the notes)"
        lines.append(f"culprit: {libs[0]} {result.culprit} ({result.direction} than {result.versions[0]}; the last "
                     f"version like it: {result.last_good}){sure}; {result.rounds} version(s) measured between")
    lines += [f"note: {n}" for n in result.notes]
    lines += culprit_lines(result, libs, timings, metric)
    builds = timings["builds"]
    if builds:
        secs = [b["seconds"] for b in builds.values()]
        sizes = [b["bytes"] or 0 for b in builds.values()]
        lines.append(f"stacks built: {len(builds)}, {min(secs):.0f}-{max(secs):.0f} s each, "
                     f"{min(sizes) / 2**20:.1f}-{max(sizes) / 2**20:.1f} MiB on disk each")
    reused = timings.get("reused")
    lines.append(f"bisect wall time: {timings['wall_seconds'] / 60:.1f} min"
                 + (f", reusing {reused} run(s) an earlier try recorded" if reused else ""))
    return lines


def mean_work(works: list[dict[str, float]] | None) -> dict[str, float]:
    if not works:
        return {}
    return {k: sum(w.get(k, 0.0) for w in works) / len(works) for k in works[0]}


def culprit_lines(result: BisectResult, libs: list[str], timings: dict[str, Any],
                  metric: str = "throughput") -> list[str]:
    """At the culprit: every package that moved between the last good and the culprit's stacks, whether the work
    of a step changed or the speed at the same work (or both), and what putting each moved pin back did."""
    from harness.analysis.compare import work_change
    from harness.history.bisect_run import moved_between

    if not result.culprit or not result.last_good:
        return []
    stacks_seen = timings.get("stacks", {})
    lo, hi = stacks_seen.get(result.last_good), stacks_seen.get(result.culprit)
    lines = []
    if lo and hi:
        moved = moved_between(lo["resolved"], hi["resolved"])
        lines.append(f"moved between {libs[0]} {result.last_good} and {result.culprit}: " + (", ".join(
            f"{k} {a or '-'} -> {b or '-'}" for k, (a, b) in moved.items()) or "nothing else"))
    works = timings.get("work", {})
    changed = work_change(works.get(result.last_good, []), works.get(result.culprit, []))
    runs_lo, runs_hi = result.runs.get(result.last_good, []), result.runs.get(result.culprit, [])
    if runs_lo and runs_hi:
        speed = summarize_runs(runs_hi).median / summarize_runs(runs_lo).median
        per_token = f"time per token x{1 / speed:.2f}" if metric == "throughput" else f"eval loss x{1 / speed:.3f}"
        if changed:
            what = ", ".join(f"{k.replace('_', ' ')} {a:.4g} -> {b:.4g}" for k, (a, b) in changed.items())
            lines.append(f"the work of a step changed ({what}); {per_token} at the new work: the speed verdict "
                         "compares different work, so the loss must be set beside it")
        else:
            lines.append(f"the work of a step is the same (within 2%): the speed changed, {per_token}")
    lines += own_eval_lines(result, timings)
    for label, entry in timings.get("put_back", {}).items():
        if entry.get("restores") is None:
            why = (timings.get("failures") or {}).get(label)
            lines.append(f"put back {entry['package']} {entry['to']} in {result.culprit}'s stack: did not run"
                         + (f" ({why})" if why else ""))
            continue
        vg, vc = entry["vs_good"], entry["vs_culprit"]
        median = summarize_runs(entry["runs"]).median
        lines.append(f"put back {entry['package']} {entry['from']} -> {entry['to']} ({label}): {len(entry['runs'])} "
                     f"runs, median {median:.3f}; against {result.culprit}: {vc.verdict} x{vc.ratio:.3f} "
                     f"({_interval(vc)}); against {result.last_good}: {vg.verdict} x{vg.ratio:.3f} ({_interval(vg)})"
                     + ("; this package is a cause" if entry["restores"] else ""))
    return lines


def _interval(v: Any) -> str:
    return f"95% {v.low:.3f}-{v.high:.3f}, p={v.p_value:.2g}" if v.low is not None else "no interval"


def own_eval_lines(result: BisectResult, timings: dict[str, Any]) -> list[str]:
    """Does the new work train better: xeonft's own eval loss (one definition under every stack) of the last good
    release's runs against the culprit's, where both measured it; the bisect's matrix says `evaluate: every` for
    more than a release's first run."""
    from harness.analysis.own_eval import LOSS_THRESHOLD

    own = timings.get("own_eval") or {}
    lo, hi = own.get(result.last_good or ""), own.get(result.culprit or "")
    if not lo or not hi:
        return []
    a, b = [x["loss"] for x in lo], [x["loss"] for x in hi]

    def gain(side: list[dict[str, Any]]) -> float:
        return statistics.median(1 - x["loss"] / x["base_loss"] for x in side)

    text = (f"xeonft's own eval loss (each row alone, every token after the first): {result.last_good} "
            f"{statistics.median(a):.4f} ({len(a)} run(s), {gain(lo):.1%} below its base), {result.culprit} "
            f"{statistics.median(b):.4f} ({len(b)}, {gain(hi):.1%} below its base)")
    if {x.get("tokens") for x in lo} != {x.get("tokens") for x in hi}:
        text += ": not comparable loss for loss, the stacks tokenized the eval rows differently"
    elif len(set(a)) == 1 or len(set(b)) == 1:
        text += ": one value a side (runs of one seed train alike), no interval"
    elif len(a) >= 2 and len(b) >= 2:
        v = decide(a, b, threshold=LOSS_THRESHOLD)
        word = {"slower": "the culprit's work trains better (lower loss)",
                "faster": "the culprit's work trains worse (higher loss)",
                "unchanged": f"they train alike (within {LOSS_THRESHOLD:.0%})"}.get(v.verdict, "cannot tell")
        text += f": {word}, x{v.ratio:.4f} (95% {v.low:.4f}-{v.high:.4f})"
    else:
        text += ": too few runs to tell (a matrix with `evaluate: every` gives one per run)"
    return [text]

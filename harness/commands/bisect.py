"""`xeonft bisect`: the release of a library that changed a cell's throughput (or loss), each release built as a
stack and run as cells of one result set (`harness.history.bisect_run`); the set then joins the catalog."""

from __future__ import annotations

import argparse
from typing import Any

from harness.base.stats import summarize_runs
from harness.commands.base import Command
from harness.history.bisect import BisectResult


class Bisect(Command):
    name = "bisect"
    help = ("find the release of a library that changed a cell's throughput (or loss); builds a stack per release "
            "measured, writes its cells to a result set and adds that to the catalog (results/catalog.sqlite)")

    @classmethod
    def setup_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--lib", action="append", required=True,
                            help="the library to bisect; a second --lib moves with the first (same major.minor)")
        parser.add_argument("--with", dest="with_", action="append", default=[], metavar="PACKAGE",
                            help="a package that moves with the bisected library by date: at each release, its "
                            "newest release out on that release's day (PyPI's upload times), never newer than this "
                            "environment's; the release this environment holds runs on this environment as it is")
        parser.add_argument("--no-put-back", dest="put_back", action="store_false",
                            help="with --with: do not measure the culprit's stack with each moved package put back")
        parser.add_argument("--good", required=True)
        parser.add_argument("--bad", required=True)
        parser.add_argument("--matrix", default="bench/matrices/bisect.yaml", help="the matrix holding the cell")
        parser.add_argument("--cell", help="which configuration of the matrix (key=value,...), when it has several")
        parser.add_argument("--metric", choices=["throughput", "loss"], default="throughput")
        parser.add_argument("--runs", type=int, default=3, help="runs per version (more where a verdict needs them)")
        parser.add_argument("--max-runs", type=int, default=6)
        parser.add_argument("--threshold", default="5%")
        parser.add_argument("--alpha", type=float, default=0.01)
        parser.add_argument("--out", help="result set (default results/bisect-LIB-GOOD-BAD)")
        parser.add_argument("--catalog", default="results/catalog.sqlite", help="the catalog the result set "
                            "joins: an SQLite file or a postgresql://USER@HOST/DATABASE URL")
        parser.add_argument("--allow-torch-stacks", action="store_true",
                            help="let the stacks pin torch (bisecting torch itself): each downloads a torch build of "
                            "its own, from PyPI on Linux x86_64 the CUDA build (6.3 GB for torch 2.8.0)")

    @classmethod
    def run(cls, args: argparse.Namespace) -> int:
        from pathlib import Path

        from harness.analysis.compare import parse_threshold
        from harness.history import catalog
        from harness.history.bisect_run import run_bisect
        from harness.history.catalog_db import CatalogLocation

        where = CatalogLocation.parse(args.catalog)  # a wrong URL: before any stack is built

        out = Path(args.out or Path("results") / f"bisect-{args.lib[0]}-{args.good}-{args.bad}")
        result, timings = run_bisect(args.lib, args.good, args.bad, args.matrix, args.cell, out, runs=args.runs,
                                     max_runs=args.max_runs, threshold=parse_threshold(args.threshold),
                                     alpha=args.alpha, metric=args.metric, allow_torch=args.allow_torch_stacks,
                                     with_=args.with_, put_back=args.put_back)
        warning = catalog.add_after_run(out, where)
        if warning:
            print(f"warning: {warning}")
        lines = report_lines(result, args.lib, timings, args.metric)
        (out / "bisect.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for line in lines:
            print(line)
        print(f"(written to {out / 'bisect.txt'})")
        return 0


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
        work = _mean_work(timings.get("work", {}).get(v))
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
    lines.append(f"bisect wall time: {timings['wall_seconds'] / 60:.1f} min")
    return lines


def _mean_work(works: list[dict[str, float]] | None) -> dict[str, float]:
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
    for label, entry in timings.get("put_back", {}).items():
        if entry.get("restores") is None:
            lines.append(f"put back {entry['package']} {entry['to']} in {result.culprit}'s stack: did not run")
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

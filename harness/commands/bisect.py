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
                                     alpha=args.alpha, metric=args.metric, allow_torch=args.allow_torch_stacks)
        warning = catalog.add_after_run(out, where)
        if warning:
            print(f"warning: {warning}")
        for line in report_lines(result, args.lib, timings, args.metric):
            print(line)
        return 0


def report_lines(result: BisectResult, libs: list[str], timings: dict[str, Any], metric: str) -> list[str]:
    """The versions measured, each with its median and verdict, then the culprit, the notes and what it cost."""
    lines = [f"{'version':>12}  runs  {'median':>9}  verdict against {result.versions[0]}"]
    for v in result.versions:
        if v not in result.runs or not result.runs[v]:
            continue
        s = summarize_runs(result.runs[v])
        verdict = result.verdicts.get(v)
        shown = s.median if metric == "throughput" else 1 / s.median
        lines.append(f"{v:>12}  {s.n:>4}  {shown:>9.3f}  " + (
            "(the good version)" if v == result.versions[0] else f"{verdict.verdict}: {verdict.reason}"
            if verdict else ""))
    unit = "tokens/s" if metric == "throughput" else "eval loss"
    lines.append(f"(median {unit} over runs; each run a separate process)")
    if result.direction is None:
        lines.append(f"no change between {result.versions[0]} and {result.versions[-1]} to bisect")
    else:
        sure = "" if result.certain else " (uncertain: see the notes)"
        lines.append(f"culprit: {libs[0]} {result.culprit} ({result.direction} than {result.versions[0]}; the last "
                     f"version like it: {result.last_good}){sure}; {result.rounds} version(s) measured between")
    lines += [f"note: {n}" for n in result.notes]
    builds = timings["builds"]
    if builds:
        secs = [b["seconds"] for b in builds.values()]
        sizes = [b["bytes"] or 0 for b in builds.values()]
        lines.append(f"stacks built: {len(builds)}, {min(secs):.0f}-{max(secs):.0f} s each, "
                     f"{min(sizes) / 2**20:.1f}-{max(sizes) / 2**20:.1f} MiB on disk each")
    lines.append(f"bisect wall time: {timings['wall_seconds'] / 60:.1f} min")
    return lines

"""`xeonft bisect`: the release of a library that changed a cell's throughput (or loss), each release built as a
stack and run as cells of one result set (`harness.history.bisect_run`); the set then joins the catalog."""

from __future__ import annotations

import argparse

from harness.commands.base import Command


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
        from harness.history import bisect_report, catalog
        from harness.history.bisect_report import SavedBisect
        from harness.history.bisect_run import run_bisect
        from harness.history.catalog_db import CatalogLocation
        from harness.render.bisect import render_bisect
        from harness.results.store import ResultStore

        where = CatalogLocation.parse(args.catalog)  # a wrong URL: before any stack is built

        out = Path(args.out or Path("results") / f"bisect-{args.lib[0]}-{args.good}-{args.bad}")
        result, timings = run_bisect(args.lib, args.good, args.bad, args.matrix, args.cell, out, runs=args.runs,
                                     max_runs=args.max_runs, threshold=parse_threshold(args.threshold),
                                     alpha=args.alpha, metric=args.metric, allow_torch=args.allow_torch_stacks,
                                     with_=args.with_, put_back=args.put_back)
        warning = catalog.add_after_run(out, where)
        if warning:
            print(f"warning: {warning}")
        cpu = (ResultStore(out).manifest().fingerprint.cpu or {}).get("brand")
        saved = SavedBisect(libs=args.lib, metric=args.metric, threshold=parse_threshold(args.threshold),
                            alpha=args.alpha, result=result, timings=timings, cpu=cpu)
        bisect_report.save(out, saved)
        lines = saved.lines()
        (out / "bisect.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        page = render_bisect(saved, out)
        for line in lines:
            print(line)
        print(f"(written to {out / 'bisect.txt'}, {page} and {out / bisect_report.SAVED})")
        return 0

"""`xeonft history`: the catalog of result sets: add sets to it, check a new set against it (the CI gate: exit 1
on a slower cell or one that measured before and fails now), or trace a cell's throughput across library versions,
dates or commits with change points."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands.base import Command

if TYPE_CHECKING:
    from harness.history.catalog_db import CatalogLocation


class History(Command):
    name = "history"
    help = ("a cell's throughput across library versions, dates or commits, with change points (the catalog of "
            "result sets); --add writes the catalog, --check only reads it")

    @classmethod
    def setup_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--add", nargs="+", default=[], metavar="RESULTS",
                            help="add result sets to the catalog first (writes the catalog)")
        parser.add_argument("--check", metavar="RESULTS", help="compare a result set with the catalog's last good "
                            "result of the same machine; exit 1 when a cell is slower or now fails (does not write the "
                            "catalog: add the set with --add)")
        parser.add_argument("--rebuild", action="store_true",
                            help="make the catalog anew from the result sets it indexed (or, when it cannot be "
                            "read, those beside it) and the --add ones; the old file is kept beside it (writes the "
                            "catalog)")
        parser.add_argument("--cell",
                            help="only cells matching key=value[,key=value] (e.g. precision=bf16,batch_size=4)")
        parser.add_argument("--by", default="transformers",
                            help="transformers | torch | peft | trl | ... | date | commit")
        parser.add_argument("--catalog", default="results/catalog.sqlite",
                            help="the catalog: an SQLite file, or a postgresql://USER@HOST/DATABASE URL several "
                            "machines share (default results/catalog.sqlite)")
        parser.add_argument("--out", default="reports/history",
                            help="the trend page's folder (default reports/history)")
        parser.add_argument("--threshold", default="5%", help="smallest change that counts (default 5%%)")
        parser.add_argument("--alpha", type=float, default=0.01)

    @classmethod
    def run(cls, args: argparse.Namespace) -> int:
        from harness.analysis.compare import parse_threshold
        from harness.history import catalog
        from harness.history.catalog_db import CatalogLocation

        db = CatalogLocation.parse(args.catalog)
        if args.rebuild:
            return rebuild(db, [Path(f) for f in args.add])
        for folder in args.add:
            print(f"{folder}: {catalog.add(Path(folder), db)} runs in the catalog {db}")
        threshold = parse_threshold(args.threshold)
        if args.check:
            return check(Path(args.check), db, threshold, args.alpha)
        trend(db, args.by, args.cell, Path(args.out), threshold, args.alpha)
        return 0


def rebuild(db: CatalogLocation, extra: list[Path]) -> int:
    """A catalog made anew from the result sets it indexed: what was added, what could not be, where the old went."""
    from harness.history import catalog

    sets = list(dict.fromkeys([*catalog.indexed_sets(db), *extra]))
    done = catalog.rebuild(db, sets)
    for folder, rows in done.added.items():
        print(f"{folder}: {rows} runs")
    for folder, why in done.skipped.items():
        print(f"{folder}: skipped ({why})")
    print(f"catalog {db}: rebuilt from {len(done.added)} result set(s)"
          + (f"; the old file is {done.moved_to}" if done.moved_to else ""))
    return 0


def check(result_set: Path, db: CatalogLocation, threshold: float, alpha: float) -> int:
    """Each cell's verdict against the last good run of it; the exit code a CI job gates on: 1 when one regressed
    (slower, or failing where it measured before)."""
    from harness.history.check import check as verdicts_of

    verdicts = verdicts_of(result_set, db, threshold=threshold, alpha=alpha)
    for v in verdicts:
        print(f"{v.cell}: {v.verdict} ({v.reason})")
    return 1 if any(v.regressed for v in verdicts) else 0


def trend(db: CatalogLocation, by: str, cell: str | None, out: Path, threshold: float, alpha: float) -> None:
    """Each configuration's series by `by`, its change points printed, and the trend page written to `out`."""
    from harness.analysis.summary import parse_selector
    from harness.history import catalog
    from harness.history.trend import describe_step, series
    from harness.render.history import render_history

    found = series(catalog.runs(db), by, parse_selector(cell) if cell else None, threshold=threshold, alpha=alpha)
    for s in found:
        print(f"{s.label} on {s.cpu}: {len(s.points)} points by {by}")
        for step in s.steps:
            print(f"  change: {describe_step(by, step)}")
        if not s.steps:
            print("  no change point")
    page = render_history(found, out, by)
    print(f"history: {page / 'index.html'}\n         {page / 'report.md'}")

"""`xeonft machines`: the same configurations on every machine in a catalog, result sets or bundles, side by side:
tokens/s with intervals, MFU against each machine's own peak, cost per million trained tokens at a stated price,
sizings' jobs and their cost, and the verdict (`harness.history.machines`, rendered by `harness.render.machines`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands.base import Command

if TYPE_CHECKING:
    from harness.history.machines import SizedJob


class Machines(Command):
    name = "machines"
    help = ("compare machines on the same configurations: speed, MFU and cost per million tokens with intervals, "
            "the fastest and cheapest and which the data cannot tell apart; writes reports/machines/ (or --out), "
            "reads everything else")

    @classmethod
    def setup_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("sources", nargs="*", metavar="SOURCE",
                            help="result set folders or bundle files (default: the catalog, when none is given)")
        parser.add_argument("--catalog", action="append", default=[], metavar="CATALOG",
                            help="a catalog to read (a file, or a postgresql:// URL); repeatable")
        parser.add_argument("--name", action="append", default=[], metavar="SELECTOR=NAME",
                            help="name a machine: SELECTOR is a source as given, a result set, a hostname or a kind "
                            "id; machines of one kind pool unless names tell them apart; different kinds never pool")
        parser.add_argument("--price", action="append", default=[], metavar="NAME=X/h",
                            help="a machine's price per hour (NAME: a machine's name, hostname or kind id)")
        parser.add_argument("--prices", action="append", default=[], type=Path, metavar="FILE",
                            help="a YAML file of prices per hour by machine name")
        parser.add_argument("--currency", default="USD", help="the unit of the prices (default USD)")
        parser.add_argument("--sizing", action="append", default=[], type=Path, metavar="DIR",
                            help="a sizing's folder (`xeonft size --out`): its job's time and cost on its machine")
        parser.add_argument("--cell", help="the configuration the verdict is about, key=value[,key=value] "
                            "(default: the recipe's cell, else the one on the most machines)")
        parser.add_argument("--threshold", default="5%", help="smallest difference that counts (default 5%%)")
        parser.add_argument("--alpha", type=float, default=0.01)
        parser.add_argument("--out", type=Path, default=Path("reports/machines"), help="the page's folder")

    @classmethod
    def run(cls, args: argparse.Namespace) -> int:
        from harness.analysis.compare import parse_threshold
        from harness.analysis.summary import parse_selector
        from harness.base.errors import XeonftError
        from harness.history.machines import compare_machines
        from harness.history.prices import prices
        from harness.history.sources import gather
        from harness.render.machines import render_machines

        names = {}
        for text in args.name:
            selector, sep, name = text.rpartition("=")
            if not sep or not selector.strip() or not name.strip():
                raise XeonftError(f"--name '{text}': expected SELECTOR=NAME")
            names[selector.strip()] = name.strip()
        catalogs = args.catalog or ([] if args.sources else ["results/catalog.sqlite"])
        runs, described = gather([Path(s) for s in args.sources], catalogs)
        found = compare_machines(
            runs, names=names, prices=prices(args.price, args.prices), sized=sized_jobs(args.sizing),
            selector=parse_selector(args.cell) if args.cell else None, threshold=parse_threshold(args.threshold),
            alpha=args.alpha, currency=args.currency, sources=described)
        out = render_machines(found, args.out)
        for line in found.verdict:
            print(line)
        print(f"machines: {out / 'index.html'}\n          {out / 'report.md'}\n          {out / 'machines.json'}")
        return 0


def sized_jobs(folders: list[Path]) -> list[SizedJob]:
    """Each sizing's recommended job on the machine it ran on (a sizing that found nothing to run has none)."""
    from harness.history.machines import SizedJob
    from harness.sizing.findings_model import load_findings

    out = []
    for folder in folders:
        found = load_findings(folder)
        rec, machine = found.recommendation, found.fingerprint
        if rec is None:
            continue
        out.append(SizedJob(source=str(folder), cpu=machine.cpu, cores=machine.cores, kind=machine.kind,
                            hostname=machine.hostname, configuration=f"batch {rec.batch_per_rank} per rank, "
                            f"{rec.placement}", seconds=rec.projected_seconds, low=rec.projected_low,
                            high=rec.projected_high))
    return out

"""`xeonft compare`: two result sets, configuration by configuration, by the run-level verdict."""

from __future__ import annotations

import argparse

from harness.commands.base import Command


class Compare(Command):
    name = "compare"
    help = "compare two result sets; exit 1 on a regression"

    @classmethod
    def setup_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("base")
        parser.add_argument("new")
        parser.add_argument("--threshold", default="5%",
                            help="slowdown that counts, when also significant (default 5%%)")
        parser.add_argument("--alpha", type=float, default=0.01, help="significance level (default 0.01)")
        parser.add_argument("--loss-tolerance", type=float, default=0.02,
                            help="relative loss drift allowed (default 0.02)")
        parser.add_argument("--json", help="also write the comparison as JSON to this file")

    @classmethod
    def run(cls, args: argparse.Namespace) -> int:
        from pathlib import Path

        from harness.analysis.compare import compare, parse_threshold

        result = compare(args.base, args.new, threshold=parse_threshold(args.threshold), alpha=args.alpha,
                         loss_tolerance=args.loss_tolerance)
        print(result.to_markdown())
        if args.json:
            Path(args.json).write_text(result.to_json(), encoding="utf-8")
        return 1 if result.regressed else 0

"""`xeonft report`: a result set rendered for people (`harness.render.report`), and its first lines printed."""

from __future__ import annotations

import argparse

from harness.commands.base import Command


class Report(Command):
    name = "report"
    help = "render a result set: HTML, Markdown, CSV, JSON and plots, into reports/<name>/ (or --out)"

    @classmethod
    def setup_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("results", help="result set folder (results/<name>)")
        parser.add_argument("--baseline", help="cell to compare against, e.g. precision=bf16-autocast,batch_size=4 "
                            "(default: the recipe's cell)")
        parser.add_argument("--out", help="report folder (default: reports/<name>)")

    @classmethod
    def run(cls, args: argparse.Namespace) -> int:
        from pathlib import Path

        from harness.history import bisect_report
        from harness.render.bisect import render_bisect
        from harness.render.report import render

        report = render(args.results, out=args.out, baseline=args.baseline)
        for line in report.summary_lines():
            print(line)
        if (Path(args.results) / bisect_report.SAVED).exists():  # a bisect's set: its page beside the report
            print(f"bisect page: {render_bisect(bisect_report.load(Path(args.results)), report.folder)}")
        return 0

"""`xeonft merge`: the result sets of several machines (or runs) of one sweep, as one result set."""

from __future__ import annotations

import argparse

from harness.commands.base import Command


class Merge(Command):
    name = "merge"
    help = "merge the result sets of several machines (or runs) of one sweep into a new result set"

    @classmethod
    def setup_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("results", nargs="+", help="result set folders")
        parser.add_argument("--out", required=True, help="the merged result set's folder")

    @classmethod
    def run(cls, args: argparse.Namespace) -> int:
        from harness.results.merge import merge

        store = merge(args.results, args.out)
        print(f"merged {len(store.records())} cells into {store.root}")
        return 0

"""`xeonft bundle`: a result set as one file that checks itself, to move it to another machine (`xeonft import`
there)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.base import Command


class Bundle(Command):
    name = "bundle"
    help = ("write a result set (manifest and cell records; logs with --logs) into one file with its machine's "
            "summary and a digest over it, for `xeonft import` elsewhere (writes only that file)")

    @classmethod
    def setup_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("results", metavar="RESULTS", help="a result set folder")
        parser.add_argument("--out", metavar="FILE", type=Path,
                            help="the bundle's file (default bundles/<name>-<hostname, or the machine's kind>-"
                            "<first 12 of the digest>.xeonft.tar.gz)")
        parser.add_argument("--logs", action="store_true", help="include the cells' logs (logs/<key>.log)")

    @classmethod
    def run(cls, args: argparse.Namespace) -> int:
        from harness.results.bundle import write

        done = write(Path(args.results), args.out, logs=args.logs)
        for rel, why in done.skipped.items():
            print(f"xeonft: warning: left out {Path(args.results) / rel} ({why})", file=sys.stderr)
        cells = sum(f.path.startswith("cells/") for f in done.header.files)
        logs = sum(f.path.startswith("logs/") for f in done.header.files)
        print(f"bundle: {done.path}\n  size: {done.size:,} bytes\n  digest: sha256:{done.header.digest}\n"
              f"  holds: {done.header.name or 'a result set'}, {cells} cells" + (f", {logs} logs" if logs else "")
              + f", from {done.header.label}")
        return 0

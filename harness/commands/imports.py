"""`xeonft import`: bundles from other machines checked and added as result sets, each all or nothing (the
module cannot be called import.py: `import` is Python's)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.base import Command


class Import(Command):
    name = "import"
    help = ("check bundles (`xeonft bundle`) and add each as a result set under --into and to the catalog, all or "
            "nothing per bundle; a damaged or newer one is refused in one line (exit 2) and the others still "
            "imported (writes the result sets and the catalog)")

    @classmethod
    def setup_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE", type=Path, help="bundle files")
        parser.add_argument("--into", metavar="DIR", type=Path, default=Path("results/imported"),
                            help="where the result sets go, each in <name>-<first 12 of its digest>/ (default "
                            "results/imported)")
        parser.add_argument("--catalog", metavar="FILE|URL", default="results/catalog.sqlite",
                            help="the catalog the imported sets join: an SQLite file or a "
                            "postgresql://USER@HOST/DATABASE URL (default results/catalog.sqlite)")

    @classmethod
    def run(cls, args: argparse.Namespace) -> int:
        from harness.base.errors import Failure, XeonftError
        from harness.base.messages import one_line
        from harness.history.catalog_db import CatalogLocation
        from harness.history.imports import import_bundle

        db = CatalogLocation.parse(args.catalog)  # as `history` reads --catalog
        code = 0
        for path in args.files:
            try:
                done = import_bundle(path, args.into, db)
            except XeonftError as err:  # this bundle refused; the others go on
                kind = "failed" if isinstance(err, Failure) else "error"
                print(f"xeonft: {kind}: {one_line(str(err))}", file=sys.stderr)
                code = max(code, err.exit_code)
                continue
            if done.already:
                print(f"{path}: already imported as {done.folder} (digest sha256:{done.header.short}...): "
                      "nothing to do")
            else:
                cells = sum(f.path.startswith("cells/") for f in done.header.files)
                print(f"{path}: imported {cells} cells of {done.header.name or 'a result set'} from "
                      f"{done.header.label} into {done.folder}; {done.runs} runs in the catalog {db}")
        return code

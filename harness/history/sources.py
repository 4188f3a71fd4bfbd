"""Where `xeonft machines` reads runs from: result set folders, bundle files and catalogs, each run tagged with
the source the user named (so `--name` can select by it). Nothing is written: a bundle is read, never imported."""

from __future__ import annotations

from pathlib import Path

from harness.base.errors import XeonftError
from harness.history import catalog
from harness.history.catalog_db import CatalogLocation
from harness.history.machines import SourcedRun


def gather(sources: list[Path], catalogs: list[str]) -> tuple[list[SourcedRun], list[str]]:
    """Every run of the sources and catalogs given, and a line describing each source."""
    runs: list[SourcedRun] = []
    described: list[str] = []
    for path in sources:
        if path.is_dir():
            found = catalog.runs_of_set(path)
            kind = "result set"
        elif path.is_file():
            found = _bundle_runs(path)
            kind = "bundle"
        else:
            raise XeonftError(f"{path}: no such result set folder or bundle file")
        runs += [SourcedRun(source=str(path), run=r) for r in found]
        described.append(f"{kind} {path}: {len(found)} runs")
    for where in catalogs:
        location = CatalogLocation.parse(where)
        found = catalog.runs(location)
        shown = str(location)  # a URL's password never reaches the page
        runs += [SourcedRun(source=shown, run=r) for r in found]
        described.append(f"catalog {shown}: {len(found)} runs")
    if not runs:
        raise XeonftError("no runs to compare: give result set folders or bundles, or a --catalog that holds runs")
    return runs, described


def _bundle_runs(path: Path) -> list[catalog.CatalogRun]:
    """A bundle's runs: checked whole, unpacked into a temporary folder that goes when they are read; each run
    names the bundle as its result set (its set id is the bundle's own, as an import would keep it)."""
    import dataclasses
    import tempfile

    from harness.results import bundle_check as bundle

    header = bundle.check(path)
    with tempfile.TemporaryDirectory(prefix="xeonft-machines-") as tmp:
        folder = Path(tmp) / "set"
        bundle.unpack(path, header, folder)
        return [dataclasses.replace(r, result_set=str(path.resolve())) for r in catalog.runs_of_set(folder)]

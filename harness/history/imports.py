"""Importing a bundle: check it, unpack it into a folder of its own and add it to the catalog, all or nothing.

A bundle is checked whole before anything is written (`harness.results.bundle_check.check`), unpacked into
`<into>/<name>-<digest12>` through a temporary folder beside it, then added to the catalog; when the catalog
cannot take it the folder is removed again and the bundle refused with the catalog's message, so a refused bundle
leaves nothing behind. A bundle already imported there (the folder holds exactly its files) is left as it is.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from harness.base.errors import XeonftError
from harness.history import catalog
from harness.results import bundle_check, bundle_files
from harness.results.bundle import slug
from harness.results.bundle_model import BundleHeader

DEFAULT_INTO = Path("results/imported")


@dataclass(frozen=True)
class Imported:
    """One bundle imported: where its result set is, its header, and the catalog's rows for it (None when it was
    imported before and nothing was done)."""

    bundle: Path
    folder: Path
    header: BundleHeader
    runs: int | None

    @property
    def already(self) -> bool:
        return self.runs is None


def destination(header: BundleHeader, into: Path = DEFAULT_INTO) -> Path:
    """`<into>/<name>-<digest12>`: one folder per result set's content, so the same bundle always lands there."""
    return into / f"{slug(header.name, 'results')}-{header.short}"


def import_bundle(path: Path, into: Path, db: catalog.Where) -> Imported:
    """Check `path`, unpack it under `into` and add it to the catalog `db`; an XeonftError naming the bundle and
    the problem, with nothing left behind, when any step refuses."""
    header = bundle_check.check(path)
    folder = destination(header, into)
    if folder.exists():
        if bundle_files.holds(folder, header):
            return Imported(bundle=path, folder=folder, header=header, runs=None)
        raise XeonftError(f"{path}: {folder} exists and holds other files; move it away or import --into another "
                          "folder")
    bundle_check.unpack(path, header, folder)
    try:
        runs = catalog.add(folder, db)
    except BaseException as err:
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(err, XeonftError | OSError):
            raise XeonftError(f"{path}: not imported: {err}") from None
        raise
    return Imported(bundle=path, folder=folder, header=header, runs=runs)

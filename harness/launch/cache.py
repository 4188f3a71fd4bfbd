"""The cache folder ($XEONFT_CACHE, default ~/.cache/xeonft): what takes the space, and pruning what can be rebuilt.

Compiled graphs (the Inductor caches, one per library environment), tokenized and packed data (`prepared`) and
half-built environments can go: the next compiled cell recompiles (and records a cold compile time), the next cell
prepares its data again, the next `env create` rebuilds. Downloaded assets,
converted models and created environments stay.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.cell.assets import cache_dir

PRUNABLE = ("inductor", "prepared", "envs/*.building", "envs/*.old")


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def usage() -> list[tuple[str, int]]:
    """(sub-folder, bytes) of the cache, largest first."""
    root = cache_dir()
    if not root.is_dir():
        return []
    rows = [(str(p.relative_to(root)), folder_bytes(p)) for p in root.iterdir() if p.is_dir()]
    return sorted(rows, key=lambda r: -r[1])


def prune() -> int:
    """Remove what can be rebuilt; return the bytes freed."""
    root, freed = cache_dir(), 0
    for pattern in PRUNABLE:
        for path in root.glob(pattern):
            if path.is_dir():
                freed += folder_bytes(path)
                shutil.rmtree(path, ignore_errors=True)
    return freed

"""`xeonft run --dry-run`: what a sweep would do, before anything runs: its cells, their keys, which a `--resume`
would skip or run again, and how long it should take, from earlier records of the same cells. The plan is of the
matrix as given: the verb applies `--memory-limit` to it first (a set limit is part of a cell's key)."""

from __future__ import annotations

import statistics
from pathlib import Path

from rich.table import Table

from harness.config.identity import MEASURED, match_key, retried, should_run
from harness.config.matrix import Matrix
from harness.launch.console import describe
from harness.launch.sweep import axis_values, cell_key
from harness.measure.fingerprint import environment_key, fingerprint
from harness.results.records import CellRecord
from harness.results.store import ResultStore


def earlier_walls(roots: list[Path]) -> dict[str, list[float]]:
    """Wall seconds of earlier records, by configuration (match key), from every readable result set given."""
    out: dict[str, list[float]] = {}
    for root in roots:
        store = ResultStore(root)
        if not store.manifest_path.is_file():
            continue
        for r in store.records(warn=False):
            if r.match_key and r.wall_seconds and r.status in MEASURED:
                out.setdefault(r.match_key, []).append(r.wall_seconds)
    return out


def plan(matrix: Matrix, out: Path, resume: bool, retry_failed: bool, results_dir: Path = Path("results")) -> Table:
    store = ResultStore(out)
    env_key = environment_key(fingerprint())
    walls = earlier_walls([out, *sorted(p for p in results_dir.glob("*") if p.is_dir() and p != out)])
    table = Table(title=f"{matrix.name}: what `xeonft run` would do (nothing has run)")
    for col in ("cell", "repeat", "key", "recorded", "action", "est. s"):
        table.add_column(col, justify="right" if col == "est. s" else "left")
    total, unknown = 0.0, 0
    for spec in matrix.cells:
        key = cell_key(spec, env_key)
        record: CellRecord | None = store.get(key) if store.manifest_path.is_file() else None
        if record is None:
            action = "run"
        elif not resume:
            action = "refused (exists: --resume)"
        elif should_run(record.status, resume, retried(retry_failed)):
            action = "run again"
        else:
            action = "skip"
        known = walls.get(match_key(spec))
        estimate = statistics.median(known) if known else None
        if action.startswith("run"):
            if estimate is None:
                unknown += 1
            else:
                total += estimate
        table.add_row(describe(axis_values(spec, list(matrix.axes))), str(spec.repeat), key,
                      record.status if record else "-", action, f"{estimate:.0f}" if estimate else "?")
    extra = f" + {matrix.auto.max - matrix.auto.min} more round(s) at most (repeats: auto)" if matrix.auto else ""
    table.caption = (f"estimated {total / 60:.1f} min from earlier records of the same cells"
                     + (f"; {unknown} cell(s) never ran before (no estimate)" if unknown else "") + extra)
    return table

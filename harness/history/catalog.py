"""The catalog of result sets (`results/catalog.sqlite`): one row per cell run, keyed by the cell's identity
(its definition less the library stack or environment it ran under), the machine, the resolved library versions,
the xeonft commit and the date, so a cell can be followed across releases, commits and time.

A sweep adds its result set when it ends; `xeonft history add` adds any other. Adding again replaces the rows of
that result set (it may have been resumed).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.config.identity import lineage_key, without_stack
from harness.config.spec import CellSpec
from harness.results.store import ResultStore

LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "intel-extension-for-pytorch")
SCHEMA = """
create table if not exists runs (
  result_set text not null, key text not null, identity text not null, config text not null,
  machine text, cpu text, stack text, versions text, xeonft_commit text, date text, repeat integer,
  status text, tokens_per_second real, eval_loss real, fault text, work text,
  primary key (result_set, key))
"""


def default_path(results: Path = Path("results")) -> Path:
    return results / "catalog.sqlite"


def machine_key(fp: dict[str, Any]) -> str:
    """What makes two machines' numbers comparable: the CPU (model and flags), its cores, its memory."""
    keep = {"cpu": (fp.get("cpu") or {}).get("brand"), "flags": (fp.get("cpu") or {}).get("flags"),
            "cores": (fp.get("topology") or {}).get("physical_cores"), "memory": fp.get("memory_bytes")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:12]


def identity(spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A cell's identity across stacks: its match key with the stack and environment left out, and its flat
    definition (for selectors)."""
    cell = CellSpec.model_validate(spec)
    bare = without_stack(cell)
    flat = {**cell.config.model_dump(mode="json"), **bare.launch.model_dump(mode="json", exclude={"stack", "env"})}
    return lineage_key(cell), flat


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    try:
        db.execute(SCHEMA)
        yield db
        db.commit()
    finally:
        db.close()


def add(result_set: Path, catalog: Path) -> int:
    """Add (or refresh) a result set's runs; returns how many rows it holds now."""
    store = ResultStore(result_set)
    manifest = store.manifest()
    fp = manifest.fingerprint.model_dump(mode="json") if manifest.fingerprint else {}
    name = str(result_set.resolve())
    rows = []
    for r in store.records(warn=False):
        if not r.spec or (r.result is None and r.status in ("ok", "disturbed")):
            continue
        try:
            ident, flat = identity(r.spec)
        except ValueError:
            continue  # a record of an older layout that no longer validates: left out of the history
        res = r.result
        packages = (res.model_extra or {}).get("packages") if res else None
        versions = {lib: (packages or {}).get(lib) or (res.versions.get(lib) if res else None) for lib in LIBRARIES}
        stack = (r.spec.get("launch") or {}).get("stack") or {}
        rows.append((name, r.key, ident, json.dumps(flat, sort_keys=True), machine_key(fp),
                     (fp.get("cpu") or {}).get("brand"), stack.get("name") or (r.spec.get("launch") or {}).get("env"),
                     json.dumps({k: v for k, v in versions.items() if v}),
                     (res.model_extra or {}).get("xeonft_commit") if res else None,
                     r.started or manifest.created, r.repeat, r.status,
                     res.summary.tokens_per_second if res else None, res.eval_loss if res else None,
                     (r.spec.get("launch") or {}).get("inject_fault", "none"), json.dumps(r.step_work())))
    with connect(catalog) as db:
        db.execute("delete from runs where result_set = ?", (name,))
        db.executemany("insert into runs values (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    return len(rows)


def runs(catalog: Path) -> list[dict[str, Any]]:
    if not catalog.is_file():
        return []
    with connect(catalog) as db:
        db.row_factory = sqlite3.Row
        out = [dict(row) for row in db.execute("select * from runs order by date, result_set, repeat")]
    for row in out:
        for k in ("config", "versions", "work"):
            row[k] = json.loads(row[k]) if row[k] else None
    return out

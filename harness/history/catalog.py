"""The catalog of result sets (`results/catalog.sqlite`): one row per cell run, keyed by the cell's identity across
library stacks (`harness.config.identity.lineage_key`), the machine, the resolved library versions, the xeonft
commit and the date, so a cell can be followed across releases, commits and time.

A sweep adds its result set when it ends; `xeonft history add` adds any other. Adding again replaces the rows of
that result set (it may have been resumed). Rows are `CatalogRun` values, read and written here only: this module
holds all of the catalog's SQL, so another database can take its place behind the same functions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.identity import MEASURED, NO_FAULT, lineage_key, without_stack
from harness.config.spec import CellSpec
from harness.results.records import CellRecord, Manifest
from harness.results.store import ResultStore

LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "intel-extension-for-pytorch")
SCHEMA = """
create table if not exists runs (
  result_set text not null, key text not null, identity text not null, config text not null,
  machine text, cpu text, stack text, versions text, xeonft_commit text, date text, repeat integer,
  status text, tokens_per_second real, eval_loss real, fault text, work text,
  primary key (result_set, key))
"""
JSON_COLUMNS = ("config", "versions", "work")


@dataclass(frozen=True)
class CatalogRun:
    """One cell run as the catalog holds it (a row of `runs`, its JSON columns decoded)."""

    result_set: str  # the result set's resolved path
    key: str  # the cell's store key
    identity: str  # the cell's identity across library stacks (`lineage_key`)
    config: dict[str, Any]  # the cell's flat definition, stack and environment left out (for selectors, labels)
    machine: str | None  # `machine_key` of the fingerprint
    cpu: str | None
    stack: str | None  # the library stack's name, or the environment's
    versions: dict[str, str]  # resolved library versions
    xeonft_commit: str | None
    date: str | None
    repeat: int | None
    status: str
    tokens_per_second: float | None
    eval_loss: float | None
    fault: str | None
    work: dict[str, float] | None  # the work of a measured step (`CellRecord.step_work`)

    @property
    def measured(self) -> bool:
        """A run whose throughput a verdict may use (disturbed runs are left out)."""
        return self.status == "ok" and bool(self.tokens_per_second)


COLUMNS = tuple(f.name for f in dataclasses.fields(CatalogRun))


def default_path(results: Path = Path("results")) -> Path:
    return results / "catalog.sqlite"


def set_name(result_set: Path) -> str:
    """How the catalog names a result set: its resolved path."""
    return str(result_set.resolve())


def machine_key(fp: dict[str, Any]) -> str:
    """What makes two machines' numbers comparable: the CPU (model and flags), its cores, its memory."""
    keep = {"cpu": (fp.get("cpu") or {}).get("brand"), "flags": (fp.get("cpu") or {}).get("flags"),
            "cores": (fp.get("topology") or {}).get("physical_cores"), "memory": fp.get("memory_bytes")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:12]


def flat_definition(spec: CellSpec) -> dict[str, Any]:
    """A cell's definition as the catalog's selectors see it: config and launch fields in one namespace, the
    library stack and environment left out."""
    bare = without_stack(spec)
    return {**bare.config.model_dump(mode="json"), **bare.launch.model_dump(mode="json", exclude={"stack", "env"})}


def _run(name: str, r: CellRecord, manifest: Manifest, fp: dict[str, Any]) -> CatalogRun | None:
    """A record as a catalog row; None for one the history cannot use (no definition, or one of an older layout
    that no longer validates)."""
    if not r.spec or (r.result is None and r.status in MEASURED):
        return None
    try:
        spec = CellSpec.model_validate(r.spec)
    except ValueError:
        return None
    res = r.result
    extra = (res.model_extra or {}) if res else {}
    packages = extra.get("packages") or {}
    versions = {lib: packages.get(lib) or (res.versions.get(lib) if res else None) for lib in LIBRARIES}
    return CatalogRun(
        result_set=name, key=r.key, identity=lineage_key(spec), config=flat_definition(spec),
        machine=machine_key(fp), cpu=(fp.get("cpu") or {}).get("brand"),
        stack=spec.launch.stack.name if spec.launch.stack else spec.launch.env,
        versions={k: v for k, v in versions.items() if v}, xeonft_commit=extra.get("xeonft_commit"),
        date=r.started or manifest.created, repeat=r.repeat, status=r.status,
        tokens_per_second=res.summary.tokens_per_second if res else None, eval_loss=res.eval_loss if res else None,
        fault=spec.launch.inject_fault or NO_FAULT, work=r.step_work())


def runs_of_set(result_set: Path) -> list[CatalogRun]:
    """A result set's runs as the catalog would hold them, read from the set itself (nothing is written)."""
    store = ResultStore(result_set)
    manifest = store.manifest()
    fp = manifest.fingerprint.model_dump(mode="json") if manifest.fingerprint else {}
    name = set_name(result_set)
    return [run for r in store.records(warn=False) if (run := _run(name, r, manifest, fp)) is not None]


@contextmanager
def _writing(path: Path) -> Iterator[sqlite3.Connection]:
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
    rows = runs_of_set(result_set)
    encoded = [tuple(json.dumps(getattr(run, c), sort_keys=True) if c in JSON_COLUMNS else getattr(run, c)
                     for c in COLUMNS) for run in rows]
    with _writing(catalog) as db:
        db.execute("delete from runs where result_set = ?", (set_name(result_set),))
        db.executemany(f"insert into runs ({', '.join(COLUMNS)}) values ({', '.join('?' * len(COLUMNS))})", encoded)
    return len(rows)


def runs(catalog: Path) -> list[CatalogRun]:
    """Every run in the catalog, oldest first; the file is opened read-only (a missing one holds none)."""
    if not catalog.is_file():
        return []
    db = sqlite3.connect(f"{catalog.resolve().as_uri()}?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        rows = db.execute("select * from runs order by date, result_set, repeat").fetchall()
    finally:
        db.close()
    out = []
    for row in rows:
        values = {c: row[c] for c in row.keys() if c in COLUMNS}  # noqa: SIM118 (a Row is not a mapping)
        for c in JSON_COLUMNS:
            values[c] = json.loads(values[c]) if values.get(c) else None
        out.append(CatalogRun(**{**values, "config": values["config"] or {}, "versions": values["versions"] or {}}))
    return out

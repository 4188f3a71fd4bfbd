"""The catalog of result sets: one row per cell run, keyed by the result set's portable id and the cell's store key,
with the cell's identity across library stacks (`harness.config.identity.lineage_key`), the machine (its key and
facts), the resolved library versions, the xeonft commit, the date, the throughput and MFU, so a cell can be
followed across releases, commits, time and machines.

A sweep adds its result set when it ends; `xeonft history --add` adds any other. Adding a set again replaces the
rows of its id (it may have been resumed, or copied here from another machine), in one transaction: a writer killed
or a disk full mid-way leaves the catalog as it was. Rows are `CatalogRun` values, read and written here only; where
the catalog is (an SQLite file, or a PostgreSQL database machines share) is `catalog_db`'s, its tables
`catalog_schema`'s, its versions `migrations`'.

The catalog is an index, never the only copy: every row comes from a result set. A catalog that is damaged, locked,
newer than this xeonft or out of reach is a `CatalogError` naming it (password hidden) and the remedy, never a failed
sweep.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass
from sqlalchemy import Connection, delete, insert

from harness.analysis.efficiency import cell_efficiency, gemm_peak
from harness.base.errors import XeonftError
from harness.config.identity import MEASURED, NO_FAULT, lineage_key, without_stack
from harness.config.spec import CellSpec
from harness.history import catalog_db, migrations
from harness.history.catalog_db import BUSY_SECONDS as BUSY_SECONDS
from harness.history.catalog_db import CatalogError as CatalogError
from harness.history.catalog_db import CatalogLocation
from harness.history.catalog_schema import CATALOG_VERSION as CATALOG_VERSION
from harness.history.catalog_schema import runs as runs_table
from harness.measure.kind import MachineFacts, machine_facts
from harness.results.records import CellRecord, Manifest
from harness.results.store import ResultStore

LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "intel-extension-for-pytorch")
Where = CatalogLocation | Path | str  # what the functions here accept as a catalog (`CatalogLocation.parse`)


@pydantic_dataclass(frozen=True)
class CatalogRun:
    """One cell run as the catalog holds it (a row of `runs`, its JSON columns decoded), validated as it is built:
    a row of the wrong shape is refused, not handed on."""

    set_id: str  # the result set's identity (`Manifest.identity`), the same on every machine it is copied to
    result_set: str  # the result set's resolved path where it was added
    key: str  # the cell's store key
    identity: str  # the cell's identity across library stacks (`lineage_key`)
    config: dict[str, Any]  # the cell's flat definition, stack and environment left out (for selectors, labels)
    machine: str | None  # `machine_key` of the fingerprint
    facts: MachineFacts | None  # the machine's facts (None for a run added by a catalog of version 1)
    cpu: str | None
    stack: str | None  # the library stack's name, or the environment's
    versions: dict[str, str]  # resolved library versions
    xeonft_commit: str | None
    date: str | None
    repeat: int | None
    status: str
    tokens_per_second: float | None
    eval_loss: float | None
    mfu: float | None  # model FLOPs utilization of the measured steps against `gemm_tflops`
    gemm_tflops: float | None  # the GEMM peak (TFLOP/s) of the cell's dtype, as measured for it
    fault: str | None
    work: dict[str, float] | None  # the work of a measured step (`CellRecord.step_work`)

    @property
    def measured(self) -> bool:
        """A run whose throughput a verdict may use (disturbed runs are left out)."""
        return self.status == "ok" and bool(self.tokens_per_second)

    def row(self) -> dict[str, Any]:
        """The run as a row of `runs`."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**values, "facts": self.facts.model_dump(mode="json") if self.facts else None}

    @classmethod
    def of_row(cls, row: dict[str, Any]) -> CatalogRun:
        """A row of `runs` (at the current version) as a run; a value of the wrong shape raises."""
        values: dict[str, Any] = {c: row.get(c) for c in COLUMNS}
        facts = values["facts"]
        return cls(**{**values, "config": values["config"] or {}, "versions": values["versions"] or {},
                      "facts": MachineFacts.model_validate(facts) if facts else None})


COLUMNS = tuple(f.name for f in dataclasses.fields(CatalogRun))


def default_path(results: Path = Path("results")) -> Path:
    return results / "catalog.sqlite"


def set_name(result_set: Path) -> str:
    """Where the catalog says a result set is: its resolved path (for display and `rebuild`; its id is
    `ResultStore.set_id`)."""
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


def _run(name: str, set_id: str, r: CellRecord, manifest: Manifest, fp: dict[str, Any],
         facts: MachineFacts) -> CatalogRun | None:
    """A record as a catalog row; None for one the history cannot use (measured, but without its result). The spec
    is valid: a record of an older layout is migrated as it is read."""
    if r.result is None and r.status in MEASURED:
        return None
    spec, res = r.spec, r.result
    packages = (res.packages if res else None) or {}
    versions = {lib: packages.get(lib) or (res.versions.get(lib) if res else None) for lib in LIBRARIES}
    return CatalogRun(
        set_id=set_id, result_set=name, key=r.key, identity=lineage_key(spec), config=flat_definition(spec),
        machine=machine_key(fp), facts=facts, cpu=(fp.get("cpu") or {}).get("brand"),
        stack=spec.launch.stack.name if spec.launch.stack else spec.launch.env,
        versions={k: v for k, v in versions.items() if v}, xeonft_commit=res.xeonft_commit if res else None,
        date=r.started or manifest.created, repeat=r.repeat, status=r.status,
        tokens_per_second=res.summary.tokens_per_second if res else None, eval_loss=res.eval_loss if res else None,
        mfu=cell_efficiency(r, manifest.peak_tflops)["mfu"] if res else None,
        gemm_tflops=gemm_peak(r, manifest.peak_tflops), fault=spec.launch.inject_fault or NO_FAULT,
        work=r.step_work())


def runs_of_set(result_set: Path) -> list[CatalogRun]:
    """A result set's runs as the catalog would hold them, read from the set itself (nothing is written)."""
    store = ResultStore(result_set)
    manifest = store.manifest()
    fp = manifest.fingerprint.model_dump(mode="json") if manifest.fingerprint else {}
    name, set_id, facts = set_name(result_set), manifest.identity(store.root), machine_facts(fp)
    return [run for r in store.records(warn=False)
            if (run := _run(name, set_id, r, manifest, fp, facts)) is not None]


def add_after_run(result_set: Path, catalog: Where) -> str | None:
    """A verb that has recorded its cells adds them to the catalog; a catalog that cannot take them is a warning
    for that verb (returned, to print), never its failure: the cells are safe in the result set."""
    try:
        add(result_set, catalog)
    except CatalogError as err:
        return f"the cells are recorded in {result_set}, but {err}"
    return None


def replace(conn: Connection, set_id: str, rows: list[CatalogRun]) -> None:
    """Inside a write transaction: the set's rows, and only these, under its id."""
    conn.execute(delete(runs_table).where(runs_table.c.set_id == set_id))
    if rows:
        conn.execute(insert(runs_table), [run.row() for run in rows])


def add(result_set: Path, catalog: Where) -> int:
    """Add (or refresh) a result set's runs; returns how many rows it holds now."""
    where = CatalogLocation.parse(catalog)
    rows = runs_of_set(result_set)
    set_id = ResultStore(result_set).set_id()
    with catalog_db.writing(where) as conn:
        replace(conn, set_id, rows)
    return len(rows)


def runs(catalog: Where) -> list[CatalogRun]:
    """Every run in the catalog, oldest first, read in one read-only transaction (a missing file holds none; an
    older catalog is read as this version holds it, without being changed)."""
    where = CatalogLocation.parse(catalog)
    with catalog_db.reading(where) as opened:
        if opened is None:
            return []
        conn, version = opened
        try:
            found = [CatalogRun.of_row(row) for row in migrations.current_rows(conn, version)]
        except (TypeError, ValueError, KeyError, ValidationError) as err:
            raise CatalogError(where, f"has a row that is not a run ({type(err).__name__})") from None
    return sorted(found, key=lambda r: (r.date or "", r.result_set, r.repeat if r.repeat is not None else -1, r.key))


def indexed_sets(catalog: Where) -> list[Path]:
    """The result sets a catalog indexes: its own list where it can be read, else (a file) the sets beside it."""
    where = CatalogLocation.parse(catalog)
    try:
        names = sorted({r.result_set for r in runs(where)})
    except CatalogError:
        names = []
    found = [Path(n) for n in names]
    beside = sorted(p.parent for p in where.path.parent.glob("*/manifest.json")) if where.path else []
    return list(dict.fromkeys([*found, *beside]))


@dataclass(frozen=True)
class Rebuilt:
    """What `rebuild` did: the sets added with their rows, the sets it could not read, where the old file went."""

    added: dict[str, int]
    skipped: dict[str, str]
    moved_to: Path | None


def rebuild(catalog: Where, result_sets: list[Path] | None = None) -> Rebuilt:
    """A new catalog from the result sets the old one indexed (or those given).

    A file: the old one is kept beside it (`.before-rebuild-<time>`), never deleted; the new one is written under
    another name and moved into place, so a rebuild stopped half-way leaves no half-written catalog. A server's
    catalog is shared: the sets readable here are added again in one transaction, and the rows of sets this machine
    cannot read (another machine's) are kept."""
    where = CatalogLocation.parse(catalog)
    sets = result_sets if result_sets is not None else indexed_sets(where)
    if where.server:
        return _rebuild_shared(where, sets)
    path = where.file
    fresh = path.with_name(path.name + ".rebuilding")
    fresh.unlink(missing_ok=True)
    added: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for folder in sets:
        try:
            added[str(folder)] = add(folder, fresh)
        except (XeonftError, OSError) as err:
            skipped[str(folder)] = str(err)
    if not fresh.exists():
        with catalog_db.writing(CatalogLocation(path=fresh)):
            pass
    moved = None
    if path.exists():
        moved = path.with_name(f"{path.name}.before-rebuild-{time.strftime('%Y%m%d-%H%M%S')}")
        path.rename(moved)
    fresh.rename(path)
    return Rebuilt(added=added, skipped=skipped, moved_to=moved)


def _rebuild_shared(where: CatalogLocation, sets: list[Path]) -> Rebuilt:
    read: dict[str, tuple[str, list[CatalogRun]]] = {}
    skipped: dict[str, str] = {}
    for folder in sets:
        try:
            read[str(folder)] = (ResultStore(folder).set_id(), runs_of_set(folder))
        except (XeonftError, OSError) as err:
            skipped[str(folder)] = f"{err} (its rows are kept)"
    with catalog_db.writing(where) as conn:
        for set_id, rows in read.values():
            replace(conn, set_id, rows)
    return Rebuilt(added={k: len(rows) for k, (_, rows) in read.items()}, skipped=skipped, moved_to=None)

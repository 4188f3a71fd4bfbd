"""The catalog of result sets (`results/catalog.sqlite`): one row per cell run, keyed by the cell's identity across
library stacks (`harness.config.identity.lineage_key`), the machine, the resolved library versions, the xeonft
commit and the date, so a cell can be followed across releases, commits and time.

A sweep adds its result set when it ends; `xeonft history --add` adds any other. Adding again replaces the rows of
that result set (it may have been resumed), in one transaction: a writer killed or a disk full mid-way leaves the
catalog as it was. Rows are `CatalogRun` values, read and written here only: this module holds all of the catalog's
SQL, so another database can take its place behind the same functions.

The catalog is an index, never the only copy: every row comes from a result set. A catalog that is damaged, locked
or newer than this xeonft is a `CatalogError` naming the file and the remedy (`rebuild`), never a failed sweep.
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

from harness.base.errors import XeonftError
from harness.base.sniff import sqlite_problem
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
CATALOG_VERSION = 1  # PRAGMA user_version of a catalog this xeonft writes (0: one written before it was set)
BUSY_SECONDS = 30.0  # how long a writer waits for another to finish before calling the catalog locked


class CatalogError(XeonftError):
    """The catalog cannot be read or written (damaged, locked, newer): the result sets are intact, and the remedy
    is `xeonft history --rebuild`."""

    def __init__(self, catalog: Path, problem: str) -> None:
        super().__init__(f"catalog {catalog} {problem}; the result sets are intact: rebuild it from them with "
                         f"`xeonft history --rebuild --catalog {catalog}`")
        self.catalog = catalog


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
    """A record as a catalog row; None for one the history cannot use (measured, but without its result). The spec
    is valid: a record of an older layout is migrated as it is read."""
    if r.result is None and r.status in MEASURED:
        return None
    spec, res = r.spec, r.result
    packages = (res.packages if res else None) or {}
    versions = {lib: packages.get(lib) or (res.versions.get(lib) if res else None) for lib in LIBRARIES}
    return CatalogRun(
        result_set=name, key=r.key, identity=lineage_key(spec), config=flat_definition(spec),
        machine=machine_key(fp), cpu=(fp.get("cpu") or {}).get("brand"),
        stack=spec.launch.stack.name if spec.launch.stack else spec.launch.env,
        versions={k: v for k, v in versions.items() if v}, xeonft_commit=res.xeonft_commit if res else None,
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


def _problem(err: sqlite3.Error) -> str:
    text = str(err).lower()
    if "locked" in text or "busy" in text:
        return f"is locked by another writer (waited {BUSY_SECONDS:.0f} s)"
    if "full" in text:
        return "could not be written: the disk (or the database) is full; nothing was changed"
    return f"is damaged ({err})"


def _check_file(catalog: Path) -> None:
    if catalog.is_file():
        problem = sqlite_problem(catalog)
        if problem:
            raise CatalogError(catalog, problem)


def _check_version(catalog: Path, db: sqlite3.Connection) -> None:
    version = db.execute("pragma user_version").fetchone()[0]
    if version > CATALOG_VERSION:
        raise CatalogError(catalog, f"has version {version}, newer than this xeonft writes ({CATALOG_VERSION}): "
                           "update xeonft, or rebuild it")


@contextmanager
def _writing(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection in one transaction, committed when the block ends and rolled back if it raises."""
    _check_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, timeout=BUSY_SECONDS)
    except sqlite3.Error as err:
        raise CatalogError(path, _problem(err)) from None
    try:
        _check_version(path, db)
        db.execute(SCHEMA)
        db.execute(f"pragma user_version = {CATALOG_VERSION}")
        yield db
        db.commit()
    except sqlite3.Error as err:
        db.rollback()
        raise CatalogError(path, _problem(err)) from None
    finally:
        db.close()


def add_after_run(result_set: Path, catalog: Path) -> str | None:
    """A verb that has recorded its cells adds them to the catalog; a catalog that cannot take them is a warning
    for that verb (returned, to print), never its failure: the cells are safe in the result set."""
    try:
        add(result_set, catalog)
    except CatalogError as err:
        return f"the cells are recorded in {result_set}, but {err}"
    return None


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
    _check_file(catalog)
    try:
        db = sqlite3.connect(f"{catalog.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_SECONDS)
        try:
            _check_version(catalog, db)
            db.row_factory = sqlite3.Row
            rows = db.execute("select * from runs order by date, result_set, repeat").fetchall()
        finally:
            db.close()
    except sqlite3.Error as err:
        raise CatalogError(catalog, _problem(err)) from None
    out = []
    for row in rows:
        values = {c: row[c] for c in row.keys() if c in COLUMNS}  # noqa: SIM118 (a Row is not a mapping)
        try:
            for c in JSON_COLUMNS:
                values[c] = json.loads(values[c]) if values.get(c) else None
            out.append(CatalogRun(**{**values, "config": values["config"] or {}, "versions": values["versions"] or {}}))
        except (TypeError, ValueError) as err:
            raise CatalogError(catalog, f"has a row that is not a run ({type(err).__name__})") from None
    return out


def indexed_sets(catalog: Path) -> list[Path]:
    """The result sets a catalog indexes: its own list where it can be read, else the sets found beside it."""
    try:
        names = sorted({r.result_set for r in runs(catalog)})
    except CatalogError:
        names = []
    found = [Path(n) for n in names]
    beside = sorted(p.parent for p in catalog.parent.glob("*/manifest.json"))
    return list(dict.fromkeys([*found, *beside]))


@dataclass(frozen=True)
class Rebuilt:
    """What `rebuild` did: the sets added with their rows, the sets it could not read, where the old file went."""

    added: dict[str, int]
    skipped: dict[str, str]
    moved_to: Path | None


def rebuild(catalog: Path, result_sets: list[Path] | None = None) -> Rebuilt:
    """A new catalog from the result sets the old one indexed (or those given). The old file is kept beside it
    (`.before-rebuild-<time>`), never deleted; the new one is written under another name and moved into place, so a
    rebuild stopped half-way leaves no half-written catalog."""
    import time

    sets = result_sets if result_sets is not None else indexed_sets(catalog)
    fresh = catalog.with_name(catalog.name + ".rebuilding")
    fresh.unlink(missing_ok=True)
    added: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for folder in sets:
        try:
            added[str(folder)] = add(folder, fresh)
        except (XeonftError, OSError) as err:
            skipped[str(folder)] = str(err)
    if not fresh.exists():
        with _writing(fresh):
            pass
    moved = None
    if catalog.exists():
        moved = catalog.with_name(f"{catalog.name}.before-rebuild-{time.strftime('%Y%m%d-%H%M%S')}")
        catalog.rename(moved)
    fresh.rename(catalog)
    return Rebuilt(added=added, skipped=skipped, moved_to=moved)

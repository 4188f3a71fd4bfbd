"""The catalog's versions, and the step from each to the next.

    0  no catalog yet: an empty file or database
    1  `runs` keyed by (result_set, key), the set's resolved path; JSON as text; PRAGMA user_version 1 (0 before
       the version was kept)
    2  keyed by (set_id, key), the set's portable identity, since two machines' /work/x/results/default are not one
       set; each run's machine facts, MFU and the GEMM peak it is measured against; the version in `catalog_meta`

A step is a function from a row of version N to one of N+1 (`STEPS`). A writer's transaction upgrades the catalog in
place (`upgrade`: the rows read, stepped, written into the current tables), so a migration stopped half-way leaves
the catalog as it was; a reader, which may not write, steps the rows as it reads them (`upgrade_rows`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import cache
from typing import Any

from sqlalchemy import Connection, delete, insert, inspect, select, text

from harness.base.errors import XeonftError
from harness.history.catalog_schema import CATALOG_VERSION, catalog_meta, metadata, runs
from harness.results.store import ResultStore

Row = dict[str, Any]


@cache  # once a set per migration: a catalog holds many rows of each
def set_id_of_path(result_set: str) -> str:
    """A version-1 row's set id: the set's own where it can still be read (so adding it again replaces these rows),
    else a digest of the path it was added from."""
    try:
        return ResultStore(result_set).set_id()
    except (XeonftError, OSError):
        return hashlib.sha256(result_set.encode()).hexdigest()[:32]


def to_2(row: Row) -> Row:
    """Version 1 to 2: the set's id from its path; the JSON text decoded; no facts, MFU or peak (not recorded)."""
    decoded = {c: json.loads(row[c]) if isinstance(row.get(c), str) else row.get(c)
               for c in ("config", "versions", "work")}
    return {**row, **decoded, "set_id": set_id_of_path(row["result_set"]), "facts": None, "mfu": None,
            "gemm_tflops": None}


# The step that makes each version from the one before it.
STEPS: dict[int, Callable[[Row], Row]] = {2: to_2}


def stored_version(conn: Connection) -> int:
    """The catalog's version: `catalog_meta`'s, or SQLite's user_version where that is higher (a catalog written
    before catalog_meta); a `runs` table with neither is version 1, nothing at all 0."""
    found = inspect(conn)
    version = 0
    if conn.dialect.name == "sqlite":
        version = int(conn.exec_driver_sql("pragma user_version").scalar() or 0)
    if found.has_table("catalog_meta"):
        value = conn.execute(select(catalog_meta.c.value).where(catalog_meta.c.key == "version")).scalar()
        version = max(version, int(value or 0))
    if version == 0 and found.has_table("runs"):
        version = 1
    return version


def upgrade_rows(rows: list[Row], version: int) -> list[Row]:
    """Rows of `version` as the current version holds them."""
    set_id_of_path.cache_clear()  # the sets read now, not those of an earlier call
    for step in range(version + 1, CATALOG_VERSION + 1):
        rows = [STEPS[step](row) for row in rows]
    return rows


def current_rows(conn: Connection, version: int) -> list[Row]:
    """Every row of a catalog of `version`, as the current version holds them (the catalog is not changed)."""
    if version == 0:
        return []
    if version == CATALOG_VERSION:
        return [dict(r) for r in conn.execute(select(runs)).mappings()]
    return upgrade_rows([dict(r) for r in conn.execute(text("select * from runs")).mappings()], version)


def upgrade(conn: Connection, version: int) -> None:
    """Bring the catalog from `version` to the current one, inside the caller's write transaction."""
    if version == CATALOG_VERSION:
        return
    rows = current_rows(conn, version)
    if version:
        conn.execute(text("drop table runs"))
    metadata.create_all(conn)
    if rows:
        conn.execute(insert(runs), [{c.name: row.get(c.name) for c in runs.columns} for row in rows])
    set_version(conn, CATALOG_VERSION)


def set_version(conn: Connection, version: int) -> None:
    conn.execute(delete(catalog_meta).where(catalog_meta.c.key == "version"))
    conn.execute(insert(catalog_meta).values(key="version", value=str(version)))
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"pragma user_version = {int(version)}")

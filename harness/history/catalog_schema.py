"""The catalog's tables, one definition for SQLite and PostgreSQL (SQLAlchemy Core), at the current version.

    runs          one row per cell run, keyed by the result set's portable id and the cell's store key
    catalog_meta  key/value: `version` (SQLite's PRAGMA user_version is kept in step with it)

The versions and how each is reached from the one before are `harness.history.migrations`'.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, Double, Integer, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine

CATALOG_VERSION = 2  # the version this xeonft writes; a newer catalog is refused, an older one migrated


def _json() -> TypeEngine[Any]:
    """JSON text on SQLite, JSONB on PostgreSQL; Python None is SQL NULL."""
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


metadata = MetaData()

runs = Table(
    "runs", metadata,
    Column("set_id", Text, primary_key=True),  # the result set's identity (`Manifest.identity`), on any machine
    Column("key", Text, primary_key=True),  # the cell's store key
    Column("result_set", Text, nullable=False),  # the set's resolved path where it was added (display, rebuild)
    Column("identity", Text, nullable=False),  # the cell across library stacks (`lineage_key`)
    Column("config", _json(), nullable=False),
    Column("machine", Text),  # `machine_key` of the fingerprint (what history --check compares within)
    Column("facts", _json()),  # `MachineFacts` of the fingerprint
    Column("cpu", Text),
    Column("stack", Text),
    Column("versions", _json()),
    Column("xeonft_commit", Text),
    Column("date", Text),
    Column("repeat", Integer),
    Column("status", Text),
    Column("tokens_per_second", Double),
    Column("eval_loss", Double),
    Column("mfu", Double),  # model FLOPs utilization against `gemm_tflops`
    Column("gemm_tflops", Double),  # the GEMM peak of the cell's dtype it is measured against
    Column("fault", Text),
    Column("work", _json()),
)

catalog_meta = Table(
    "catalog_meta", metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

JSON_COLUMNS = ("config", "facts", "versions", "work")

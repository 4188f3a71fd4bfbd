"""A result set on disk: results/<sweep>/ with a manifest and one JSON file per cell, written atomically.

    manifest.json          the matrix document, the fingerprint, the environment key, the cells in order
    cells/<key>.json       one record per cell (status, spec, measurements, per-step series)
    logs/<key>.log         the cell's stderr

Every file passes through `redact` on its way to disk, so no secret from the environment is ever stored.
A killed sweep loses no finished cell: each record is complete on disk before the next cell starts.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.errors import XeonftError
from harness.measure.fingerprint import redact

STATUSES = ("ok", "failed", "oom", "timeout", "unavailable", "disturbed")
# Statuses a resumed sweep re-runs: a disturbed measurement is worth taking again; failures only when asked.
RERUN_ALWAYS = {"disturbed"}
RERUN_IF_RETRYING = {"failed", "oom", "timeout"}


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename it into place: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(redact(text))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=1, sort_keys=False, default=str) + "\n")


class ResultStore:
    """One sweep's folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / "cells"
        self.logs_dir = self.root / "logs"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def exists(self) -> bool:
        return self.manifest_path.is_file() or any(self.cells_dir.glob("*.json"))

    def open(self, document: dict[str, Any], fingerprint: dict[str, Any], environment: str, keys: list[str],
             resume: bool, peak: dict[str, float] | None = None) -> None:
        """Create the result set, or continue one (`resume`); refuse to write over one by accident."""
        if self.exists() and not resume:
            raise XeonftError(f"result set '{self.root}' already exists ({len(self.records())} cells); "
                              "pass --resume to continue it or --out for a new one")
        manifest = self.manifest() if self.manifest_path.is_file() else {}
        earlier = [k for k in manifest.get("cells", []) if k not in keys]
        write_json(self.manifest_path, {
            "name": document.get("name"),
            "created": manifest.get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "matrix": document,
            "environment": environment,
            "fingerprint": fingerprint,
            "peak_tflops": peak or manifest.get("peak_tflops"),
            "cells": earlier + keys,
        })

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            raise XeonftError(f"'{self.root}' is not a result set (no manifest.json)")
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def cell_path(self, key: str) -> Path:
        return self.cells_dir / f"{key}.json"

    def log_path(self, key: str) -> Path:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        return self.logs_dir / f"{key}.log"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.cell_path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None  # cannot happen with atomic writes; treat as never run

    def put(self, key: str, record: dict[str, Any]) -> None:
        if record.get("status") not in STATUSES:
            raise ValueError(f"bad status {record.get('status')!r}")
        write_json(self.cell_path(key), record)

    def should_run(self, key: str, resume: bool, retry_failed: bool) -> bool:
        record = self.get(key)
        if record is None or not resume:
            return True
        status = record.get("status")
        return status in RERUN_ALWAYS or (retry_failed and status in RERUN_IF_RETRYING)

    def records(self) -> list[dict[str, Any]]:
        """All cell records, in the manifest's order where it has one."""
        order = {k: i for i, k in enumerate(self.manifest().get("cells", []))} if self.manifest_path.is_file() else {}
        recs = [json.loads(p.read_text(encoding="utf-8")) for p in self.cells_dir.glob("*.json")]
        return sorted(recs, key=lambda r: (order.get(r.get("key"), len(order)), r.get("finished", "")))

    def redact_file(self, path: Path) -> None:
        if path.is_file():
            write_atomic(path, path.read_text(encoding="utf-8", errors="replace"))

"""A result set on disk: results/<sweep>/ with a manifest and one JSON file per cell, written atomically.

    manifest.json          the matrix document, the fingerprint, the environment key, the cells in order
    cells/<key>.json       one record per cell (status, spec, measurements, per-step series)
    logs/<key>.log         the cell's stderr

Every file passes through `redact` on its way to disk, so no secret from the environment is ever stored.
A killed sweep loses no finished cell: each record is complete on disk before the next cell starts. A cell file
that cannot be read (truncated, hand-edited, not a record) is skipped with a warning naming it, and a resumed sweep
runs that cell again.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.base.errors import XeonftError
from harness.base.secrets import redact
from harness.config.identity import retried, should_run
from harness.results.records import SCHEMA_VERSION, CellRecord, Manifest, check_version, upgrade


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
        self.damaged: dict[str, str] = {}  # cell file -> why it could not be read

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def exists(self) -> bool:
        return self.manifest_path.is_file() or any(self.cells_dir.glob("*.json"))

    def open(self, document: dict[str, Any], fingerprint: dict[str, Any], environment: str, keys: list[str],
             resume: bool, peak: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> None:
        """Create the result set, or continue one (`resume`); refuse to write over one by accident."""
        if self.exists() and not resume:
            raise XeonftError(f"result set '{self.root}' already exists ({len(self.records())} cells); "
                              "pass --resume to continue it or --out for a new one")
        manifest = self.manifest() if self.manifest_path.is_file() else Manifest()
        earlier = [k for k in manifest.cells if k not in keys]
        # what a resume keeps: fields this xeonft does not know, and the sweep-wide readings not read again
        kept = {k: v for k, v in manifest.model_dump(mode="json", exclude_unset=True).items()
                if (k not in Manifest.model_fields or k in Manifest.SWEEP_STATE) and k not in (extra or {})}
        self.write_manifest(Manifest.model_validate({
            **kept, **(extra or {}),
            "schema_version": SCHEMA_VERSION,
            "name": document.get("name"),
            # a set keeps its identity when resumed; one made before set_id takes the id it was known by
            "set_id": manifest.identity(self.root) if self.manifest_path.is_file() else uuid.uuid4().hex,
            "created": manifest.created or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "matrix": document,
            "environment": environment,
            "fingerprint": fingerprint,
            "peak_tflops": peak or manifest.peak_tflops,
            "cells": earlier + keys,
        }))

    def add_cells(self, keys: list[str]) -> None:
        """Append cells run beyond the matrix's own list (adaptive repeats) to the manifest's order."""
        manifest = self.manifest()
        manifest.cells = [*manifest.cells, *(k for k in keys if k not in manifest.cells)]
        self.write_manifest(manifest)

    def write_manifest(self, manifest: Manifest) -> None:
        write_json(self.manifest_path, manifest.model_dump(mode="json", exclude_unset=True))

    def manifest(self) -> Manifest:
        if not self.manifest_path.is_file():
            raise XeonftError(f"'{self.root}' is not a result set (no manifest.json)")
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise XeonftError(f"{self.manifest_path}: cannot be read ({err})") from None
        if not isinstance(data, dict):
            raise XeonftError(f"{self.manifest_path}: not a manifest (a JSON object)")
        check_version(data, str(self.manifest_path))
        try:
            return Manifest.model_validate(data)
        except ValidationError as err:
            raise XeonftError(f"{self.manifest_path}: not a manifest: {first_error(err)}") from None

    def set_id(self) -> str:
        """The result set's identity (`Manifest.identity`): the same on every machine it is copied to."""
        return self.manifest().identity(self.root)

    def cell_path(self, key: str) -> Path:
        return self.cells_dir / f"{key}.json"

    def log_path(self, key: str) -> Path:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        return self.logs_dir / f"{key}.log"

    def _read(self, path: Path) -> CellRecord | None:
        """One cell file, or None (remembered in `damaged`) when it cannot be read as a record."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return CellRecord.model_validate(upgrade(data, str(path)))
        except (OSError, UnicodeDecodeError, ValueError) as err:  # JSONDecodeError and ValidationError included
            why = first_error(err) if isinstance(err, ValidationError) else str(err).splitlines()[0]
            self.damaged[str(path)] = why
            return None

    def get(self, key: str) -> CellRecord | None:
        path = self.cell_path(key)
        return self._read(path) if path.is_file() else None

    def put(self, key: str, record: CellRecord) -> None:
        """Write a cell's record in the current layout (what it was read or built with: unset fields stay out)."""
        record.schema_version = SCHEMA_VERSION
        write_json(self.cell_path(key), record.model_dump(mode="json", exclude_unset=True))

    def should_run(self, key: str, resume: bool, retry_failed: bool) -> bool:
        """Whether a sweep runs the cell `key` (the resume rule, `harness.config.identity.should_run`)."""
        record = self.get(key) if resume else None
        return should_run(record.status if record else None, resume, retried(retry_failed))

    def records(self, warn: bool = True) -> list[CellRecord]:
        """All readable cell records, in the manifest's order where it has one; damaged files are skipped with a
        warning naming each."""
        order = {k: i for i, k in enumerate(self.manifest().cells)} if self.manifest_path.is_file() else {}
        self.damaged = {}
        recs = [r for p in sorted(self.cells_dir.glob("*.json")) if (r := self._read(p)) is not None]
        if warn:
            for path, why in self.damaged.items():
                print(f"xeonft: warning: skipped the damaged cell file {path} ({why})", file=sys.stderr)
        return sorted(recs, key=lambda r: (order.get(r.key, len(order)), r.finished or ""))

    def redact_file(self, path: Path) -> None:
        if path.is_file():
            write_atomic(path, path.read_text(encoding="utf-8", errors="replace"))


def first_error(err: ValidationError) -> str:
    """A validation error's first problem as a message shows it: `where: what`."""
    first = err.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc']) or '(top level)'}: {first['msg']}"

"""The files of a result set a bundle holds (`manifest.json`, `cells/<key>.json`, `logs/<key>.log`): which ones,
their bytes as a bundle holds them (redacted), and whether a record among them reads. Shared by the writer
(`harness.results.bundle`) and the checker (`harness.results.bundle_check`)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.base.errors import XeonftError
from harness.base.messages import describe
from harness.base.secrets import redact
from harness.results.bundle_model import MEMBER, BundleFile, BundleHeader, digest_of
from harness.results.records import SCHEMA_VERSION, CellRecord, upgrade
from harness.results.store import first_error

MIB = 2**20
MAX_FILE = 256 * MIB  # one file of the result set
MAX_FILES = 100_000


class NewerRecord(Exception):
    """A record of a layout newer than this xeonft reads; the message is `has schema_version N`."""

    def __init__(self, version: int) -> None:
        super().__init__(f"has schema_version {version}")


def redacted(data: bytes) -> bytes:
    """`redact` on bytes: text as UTF-8, any byte that is not UTF-8 kept as it is (a file without secrets is
    unchanged, byte for byte)."""
    return redact(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """One JSON object; a ValueError (JSONDecodeError, UnicodeDecodeError among them) otherwise."""
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError(f"not {what} (a JSON object)")
    return value


def version_of(value: dict[str, Any]) -> int:
    """A record's `schema_version` (1 when it has none); NewerRecord when newer than this xeonft reads, a
    ValueError when not a number."""
    version = value.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"schema_version {describe(version)} is not a number")
    if version > SCHEMA_VERSION:
        raise NewerRecord(version)
    return version


def cell_problem(rel: str, data: bytes) -> str | None:
    """Why the cell file `rel` is not a record this xeonft reads (damaged, not a record, another cell's), or None;
    NewerRecord for a record of a newer layout."""
    try:
        value = json_object(data, "a cell record")
        version_of(value)
        record = CellRecord.model_validate(upgrade(value, rel))
    except ValidationError as err:
        return f"is not a cell record: {first_error(err)}"
    except ValueError as err:
        return f"cannot be read ({describe(str(err).splitlines()[0], 120, bare=True)})"
    stem = rel.removeprefix("cells/").removesuffix(".json")
    return None if record.key == stem else f"holds the record of cell {describe(record.key)}, not of {stem}"


def candidates(root: Path, logs: bool) -> tuple[list[str], dict[str, str]]:
    """The result set's files a bundle takes (manifest, cells, and logs with `logs`), and those whose names it
    cannot take (path: why)."""
    found = ["manifest.json", *(f"cells/{p.name}" for p in sorted((root / "cells").glob("*.json")) if p.is_file())]
    if logs:
        found += [f"logs/{p.name}" for p in sorted((root / "logs").glob("*.log")) if p.is_file()]
    kept = [rel for rel in found if re.match(MEMBER, rel)]
    return kept, {rel: "its name is not a cell key's" for rel in found if rel not in kept}


def read_file(root: Path, rel: str) -> bytes:
    """A file of the set as a bundle holds it: redacted, and no larger than MAX_FILE."""
    path = root / rel
    try:
        size = path.stat().st_size
        if size > MAX_FILE:
            raise XeonftError(f"{path} is {size:,} bytes, more than a bundle holds in one file ({MAX_FILE:,})")
        return redacted(path.read_bytes())
    except OSError as err:
        raise XeonftError(f"{path} cannot be read ({err.strerror or err})") from None


def files_of(folder: Path) -> list[BundleFile]:
    """A result set's files (logs included) as a bundle would list them, read as they are, not redacted."""
    out = []
    for rel in candidates(folder, logs=True)[0]:
        if (folder / rel).is_file():
            data = (folder / rel).read_bytes()
            out.append(BundleFile(path=rel, size=len(data), sha256=sha256_of(data)))
    return out


def holds(folder: Path, header: BundleHeader) -> bool:
    """Whether a folder holds exactly the files of a bundle (so importing it again has nothing to do)."""
    return (folder / "manifest.json").is_file() and digest_of(files_of(folder)) == header.digest

"""A result set as one file that checks itself: a bundle (`<name>-<host>-<digest12>.xeonft.tar.gz`), written.

`write` puts a result set's manifest, cell records and (optionally) logs into a gzip'd tar headed by
`xeonft-bundle.json` (`harness.results.bundle_model`): each file's size and SHA-256, and a digest over them. The
tar is deterministic (members sorted, mtime 0, uid and gid 0, no user names, a gzip header without a name or a
time), so the same result set always gives the same bytes (with the same zlib). Every byte passes through `redact`
on the way in, the header's included. Reading one back is `harness.results.bundle_check`.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.base.errors import Failure, XeonftError
from harness.base.secrets import redact
from harness.measure.kind import machine_facts
from harness.results.bundle_files import (
    MAX_FILES,
    NewerRecord,
    candidates,
    cell_problem,
    json_object,
    read_file,
    sha256_of,
)
from harness.results.bundle_model import BUNDLE_VERSION, FORMAT, HEADER, BundleFile, BundleHeader, digest_of
from harness.results.records import SCHEMA_VERSION, Manifest
from harness.results.store import ResultStore

SUFFIX = ".xeonft.tar.gz"
MTIME = 0


@dataclass(frozen=True)
class Bundled:
    """What `write` made: the file, its size and header, and the cell files it left out (path: why)."""

    path: Path
    size: int
    header: BundleHeader
    skipped: dict[str, str]


def slug(text: str | None, fallback: str) -> str:
    """A name as a file name may hold it: letters, digits, '.', '_' and '-' (a run of others becomes one '-')."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", text or "").strip("-.")[:60]
    return out or fallback


def default_path(header: BundleHeader, folder: Path = Path("bundles")) -> Path:
    """`bundles/<name>-<hostname, or the machine's kind>-<digest12>.xeonft.tar.gz`."""
    where = slug(header.machine.hostname, header.kind)
    return folder / f"{slug(header.name, 'results')}-{where}-{header.short}{SUFFIX}"


def write(result_set: Path, out: Path | None = None, logs: bool = False) -> Bundled:
    """Bundle a result set into one file (`out`, default `default_path`): its manifest, every cell record that
    reads (a damaged one is left out and named in `skipped`) and, with `logs`, its logs."""
    store = ResultStore(result_set)
    store.manifest()  # a folder that is not a result set, or one of a newer xeonft, is refused here
    rels, skipped = candidates(store.root, logs)
    files: list[BundleFile] = []
    versions: list[int] = []
    manifest = Manifest()
    for rel in rels:
        data = read_file(store.root, rel)
        if rel == "manifest.json":
            manifest = Manifest.model_validate(json_object(data, "a manifest"))  # as bundled: redacted
            versions.append(manifest.schema_version)
        elif rel.startswith("cells/"):
            try:
                problem = cell_problem(rel, data)
            except NewerRecord as newer:
                raise XeonftError(f"{store.root / rel} {newer}, newer than this xeonft reads ({SCHEMA_VERSION}): "
                                  "update xeonft to bundle it") from None
            if problem:
                skipped[rel] = problem
                continue
            versions.append(json.loads(data).get("schema_version", 1))
        files.append(BundleFile(path=rel, size=len(data), sha256=sha256_of(data)))
    if len(files) > MAX_FILES:
        raise XeonftError(f"{store.root} has {len(files):,} files, more than a bundle holds ({MAX_FILES:,})")
    facts = machine_facts(manifest.fingerprint.model_dump(mode="json"))
    header = BundleHeader(format=FORMAT, bundle_version=BUNDLE_VERSION, schema_version=max(versions),
                          name=manifest.name, set_id=_set_id(manifest), created=manifest.created, machine=facts,
                          kind=facts.kind, label=facts.label, logs=logs, files=sorted(files, key=lambda f: f.path),
                          digest=digest_of(files))
    target = out or default_path(header)
    _write_tar(target, store.root, header)
    return Bundled(path=target, size=target.stat().st_size, header=header, skipped=skipped)


def _set_id(manifest: Manifest) -> str | None:
    value = getattr(manifest, "set_id", None)  # a field of the manifest once it has one; until then an extra key
    return str(value) if value is not None else None


def header_bytes(header: BundleHeader) -> bytes:
    return redact(json.dumps(header.model_dump(mode="json"), indent=1) + "\n").encode()


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.type = size, MTIME, 0o644, tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_tar(target: Path, root: Path, header: BundleHeader) -> None:
    """The tar written to a temporary file beside `target` and renamed into place; each file read again and
    checked against the header (a set that changed meanwhile is refused, not bundled half old, half new)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as err:
        raise Failure(f"could not write {target} ({err.strerror or err})") from None
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=MTIME, compresslevel=9) as gz, \
                    tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                head = header_bytes(header)
                tar.addfile(_info(HEADER, len(head)), io.BytesIO(head))
                for file in header.files:
                    data = read_file(root, file.path)
                    if sha256_of(data) != file.sha256:
                        raise XeonftError(f"{root / file.path} changed while it was bundled: bundle the set again "
                                          "when nothing writes it")
                    tar.addfile(_info(file.path, len(data)), io.BytesIO(data))
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise Failure(f"could not write {target} ({err.strerror or err}); nothing was written") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

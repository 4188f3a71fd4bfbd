"""A bundle read back and checked (`check`), and unpacked into a new folder (`unpack`); the format is
`harness.results.bundle_model`, the writer `harness.results.bundle`.

`check` refuses, with one line naming the file and the problem, anything that is not exactly what its header says:
another format under the name (sniffed), a gzip stream or tar that ends early or has data after its end, a member
that is not a file of a result set (a path outside it, a link, a device), one too large, one whose bytes do not
match, one missing or extra, a layout or records newer than this xeonft reads, a manifest or cell record that does
not validate, a secret of this machine. It writes nothing. `unpack` writes a checked bundle into a new folder: into
a temporary folder beside it first, each file checked again as it is written, renamed into place at the end, so a
failure leaves nothing. No member is ever extracted by its own name: each is written to the path its header lists,
once that path has been checked.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tarfile
import zlib
from collections.abc import Generator
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError

from harness.base.errors import Failure, XeonftError
from harness.base.messages import describe
from harness.base.sniff import gzip_problem
from harness.results.bundle_files import (
    MAX_FILE,
    MAX_FILES,
    MIB,
    NewerRecord,
    cell_problem,
    json_object,
    redacted,
    sha256_of,
    version_of,
)
from harness.results.bundle_model import BUNDLE_VERSION, FORMAT, HEADER, MEMBER, BundleFile, BundleHeader
from harness.results.records import SCHEMA_VERSION, Manifest
from harness.results.store import first_error

WHAT = "a gzip'd tar (an xeonft bundle)"
MAX_BUNDLE = 2048 * MIB  # the bundle file itself
MAX_UNPACKED = 2048 * MIB  # the tar inside, headers and padding included (and what tarfile may hold of it)
MAX_HEADER = 32 * MIB  # the header (about 150 bytes a file)
MAX_EXTENDED = MIB  # a tar member's own extended header (pax, GNU long name), which tarfile reads whole
EXTENDED = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
            tarfile.GNUTYPE_LONGLINK)
CHUNK = MIB
Members = Generator[tuple[BundleHeader, BundleFile | None, bytes], None, None]


class BundleError(XeonftError):
    """A bundle that is not what it claims: the file's name and the problem, in one line."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path} {problem}")


def _newer(what: str) -> str:
    return f"was written by a newer xeonft ({what}; this xeonft reads up to {SCHEMA_VERSION}): update xeonft"


class _Inflate:
    """A gzip file's decompressed bytes, read as tarfile's stream mode reads them (`read(n)`), refusing on the way a
    stream that does not decompress, ends before its end marker, or unpacks to more than MAX_UNPACKED."""

    def __init__(self, raw: BinaryIO, path: Path) -> None:
        self._raw, self._path = raw, path
        self._z = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # a gzip header and trailer (CRC-32, size) checked
        self._buf = bytearray()
        self._total = 0

    def _more(self) -> bool:
        if self._z.eof:
            return False
        data = self._z.unconsumed_tail or self._raw.read(CHUNK)
        if not data:
            raise BundleError(self._path, "is truncated: its gzip stream ends before its end marker")
        try:
            out = self._z.decompress(data, CHUNK)
        except zlib.error as err:
            raise BundleError(self._path, f"is damaged: its gzip stream does not decompress ({err})") from None
        self._total += len(out)
        if self._total > MAX_UNPACKED:
            raise BundleError(self._path, f"unpacks to more than {MAX_UNPACKED:,} bytes: not a result set")
        self._buf += out
        return True

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self._buf) < n) and self._more():
            pass
        cut = len(self._buf) if n < 0 else min(n, len(self._buf))
        out = bytes(self._buf[:cut])
        del self._buf[:cut]
        return out

    def finish(self) -> None:
        """Read to the end of the gzip stream (the tar's padding), then refuse anything after it."""
        while self._more():
            self._buf.clear()
        if self._z.unused_data or self._raw.read(1):
            raise BundleError(self._path, "has data after the end of its gzip stream")


class _LongHeader(Exception):
    """A member's extended header larger than MAX_EXTENDED."""


class _Bounded(tarfile.TarInfo):
    """A tar member whose extended header is refused when over MAX_EXTENDED before tarfile reads it into memory."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in EXTENDED and self.size > MAX_EXTENDED:
            raise _LongHeader(f"holds a tar extended header of {self.size:,} bytes, more than {MAX_EXTENDED:,}")
        return super()._proc_member(tar)  # type: ignore[misc]


def _member_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.isdir():
        return "a folder"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a FIFO"
    if member.issparse():
        return "a sparse file"
    return "not a regular file"


def _outside(name: str) -> bool:
    return name.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", name) or bool(re.match(r"^[A-Za-z]:", name))


def _header(path: Path, data: bytes) -> BundleHeader:
    """The header, refused with one line when it is not one, or says a layout newer than this xeonft reads."""
    try:
        value = json_object(data, "a bundle header")
    except ValueError:
        raise BundleError(path, f"is not a bundle: its {HEADER} is not a JSON object") from None
    if value.get("format") != FORMAT:
        raise BundleError(path, f"is not an xeonft bundle: its {HEADER} says format {describe(value.get('format'))}")
    layout, records = value.get("bundle_version"), value.get("schema_version")
    if isinstance(layout, int) and layout > BUNDLE_VERSION:
        raise BundleError(path, f"was written by a newer xeonft (bundle layout {layout}; this xeonft reads up to "
                                f"{BUNDLE_VERSION}): update xeonft")
    if isinstance(records, int) and records > SCHEMA_VERSION:
        raise BundleError(path, _newer(f"its records' schema_version is {records}"))
    try:
        return BundleHeader.model_validate(value)
    except ValidationError as err:
        raise BundleError(path, f"has a damaged {HEADER}: {first_error(err)}") from None


def _walk(path: Path) -> Members:
    """The bundle's members, each checked against its header: (header, None, the header's bytes) first, then
    (header, file, its bytes) for each file. The end of the iteration checks what is left: the rest of the gzip
    stream, and no listed file missing. A caller has every file checked only when the iteration ends."""
    if not path.is_file():
        raise BundleError(path, "is a folder, not a bundle" if path.is_dir() else "does not exist")
    try:
        size = path.stat().st_size
        if size > MAX_BUNDLE:
            raise BundleError(path, f"is {size:,} bytes, more than a bundle may be ({MAX_BUNDLE:,})")
        problem = gzip_problem(path, WHAT)
        if problem:
            raise BundleError(path, problem)
        with path.open("rb") as raw:
            stream = _Inflate(raw, path)
            try:
                with tarfile.open(fileobj=stream, mode="r|", tarinfo=_Bounded) as tar:  # type: ignore[call-overload]
                    yield from _members(path, tar)
            except (tarfile.TarError, EOFError) as err:
                raise BundleError(path, f"is not a complete tar ({describe(str(err), 120, bare=True)})") from None
            except _LongHeader as err:
                raise BundleError(path, str(err)) from None
            stream.finish()
    except OSError as err:  # reading the bundle (what its reader does with the bytes is not in here)
        raise BundleError(path, f"cannot be read ({err.strerror or err})") from None


def _members(path: Path, tar: tarfile.TarFile) -> Members:
    header: BundleHeader | None = None
    listed: dict[str, BundleFile] = {}
    seen: set[str] = set()
    for member in tar:
        name = member.name
        if header is None and name != HEADER:
            raise BundleError(path, f"is not an xeonft bundle: its first member is {describe(name)}, not {HEADER}")
        if _outside(name):
            raise BundleError(path, f"holds a member outside its folder ({describe(name)}): refused")
        if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise BundleError(path, f"holds {describe(name)}, {_member_kind(member)}: a bundle holds only files")
        if name in seen:
            raise BundleError(path, f"holds {describe(name)} twice")
        seen.add(name)
        if header is None:
            if member.size > MAX_HEADER:
                raise BundleError(path, f"has a {HEADER} of {member.size:,} bytes, more than a header may be")
            data = _content(path, tar, member)
            header = _header(path, data)
            listed = {f.path: f for f in header.files}
            if len(listed) > MAX_FILES:
                raise BundleError(path, f"lists {len(listed):,} files, more than a bundle holds ({MAX_FILES:,})")
            yield header, None, data
            continue
        file = listed.get(name)
        if file is None:
            why = "is not a file of a result set" if not re.match(MEMBER, name) else "is not in its header's list"
            raise BundleError(path, f"holds an unexpected member {describe(name)} (it {why})")
        if member.size > MAX_FILE:
            raise BundleError(path, f"holds {name} of {member.size:,} bytes, more than a bundle's file may be "
                                    f"({MAX_FILE:,})")
        if member.size != file.size:
            raise BundleError(path, f"is damaged: {name} is {member.size:,} bytes, its header says {file.size:,}")
        data = _content(path, tar, member)
        if sha256_of(data) != file.sha256:
            raise BundleError(path, f"is damaged: {name} does not match its SHA-256 in the header")
        yield header, file, data
    if header is None:
        raise BundleError(path, f"is an empty tar, not an xeonft bundle (no {HEADER})")
    missing = sorted(set(listed) - seen)
    if missing:
        raise BundleError(path, f"is incomplete: {len(missing)} file(s) of its header are missing, {missing[0]} first")


def _content(path: Path, tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    data = f.read() if f else b""
    if len(data) != member.size:
        raise BundleError(path, f"is truncated inside {member.name}")
    return data


def _check_content(path: Path, file: BundleFile, data: bytes) -> None:
    """What a member's digest cannot say: that it reads as what it is, and holds no secret of this machine."""
    if redacted(data) != data:
        raise BundleError(path, f"holds a secret in {file.path} (the value of a secret-named variable here, or a "
                                "Hugging Face token): not imported")
    if file.path == "manifest.json":
        try:
            value = json_object(data, "a manifest")
            version_of(value)
            Manifest.model_validate(value)
        except NewerRecord as newer:
            raise BundleError(path, _newer(f"its manifest {newer}")) from None
        except ValidationError as err:
            raise BundleError(path, f"holds a manifest that does not validate: {first_error(err)}") from None
        except ValueError as err:
            why = describe(str(err).splitlines()[0], 120, bare=True)
            raise BundleError(path, f"holds a manifest that cannot be read ({why})") from None
    elif file.path.startswith("cells/"):
        try:
            problem = cell_problem(file.path, data)
        except NewerRecord as newer:
            raise BundleError(path, _newer(f"{file.path} {newer}")) from None
        if problem:
            raise BundleError(path, f"holds {file.path}, which {problem}")


def check(path: Path) -> BundleHeader:
    """The bundle's header once every member has been checked; a BundleError naming the first problem otherwise.
    Writes nothing."""
    with contextlib.closing(_walk(path)) as members:
        header, _, _ = next(members)  # _walk yields the header first, or refuses
        for _, file, data in members:
            if file is not None:
                _check_content(path, file, data)
    return header


def unpack(path: Path, header: BundleHeader, dest: Path) -> None:
    """Write a checked bundle's files into `dest`, a new folder: into a temporary folder beside it, renamed into
    place once every file is written and checked again, so a failure (or a bundle changed since `check`) leaves
    nothing."""
    if dest.exists():
        raise XeonftError(f"{dest} exists: import into another folder")
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.unpacking")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        with contextlib.closing(_walk(path)) as members:
            for again, file, data in members:
                if again.digest != header.digest:
                    raise BundleError(path, "changed while it was imported: import it again")
                if file is not None:
                    target = tmp / file.path
                    target.parent.mkdir(exist_ok=True)
                    with target.open("xb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
        tmp.rename(dest)
        _sync(dest.parent)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise Failure(f"could not write {dest} ({err.strerror or err}); nothing was imported") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _sync(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

"""Is a file what its name claims? Byte-level checks made before a library parses it, so a file that lies about its
format gets one line naming the file, the place (byte, line, row) and the problem, not a library's internal error.

Pure checks on bytes and text: no xeonft imports, so every layer (models, datasets, result sets, catalogs) uses them.
Each returns None when the file is plausibly what it claims, else the problem as a phrase to follow the file's name.
"""

from __future__ import annotations

import codecs
import json
import struct
from pathlib import Path

GGUF_MAGIC = b"GGUF"
GGUF_HEADER = 24  # magic (4), version (uint32), tensor count (uint64), metadata count (uint64)
GGUF_VERSIONS = (1, 2, 3)
PARQUET_MAGIC = b"PAR1"
SQLITE_MAGIC = b"SQLite format 3\x00"
BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
        (b"\xfe\xff", "UTF-16"))
GZIP_MAGIC = b"\x1f\x8b"
TAR_MAGIC, TAR_MAGIC_AT = b"ustar", 257  # POSIX and GNU tar headers both carry it there
# formats a file named for another may turn out to be, by their first bytes
MAGICS = ((b"PK\x03\x04", "a zip archive"), (b"PK\x05\x06", "a zip archive (empty)"),
          (SQLITE_MAGIC, "an SQLite database"), (GGUF_MAGIC, "a GGUF file"), (PARQUET_MAGIC, "a Parquet file"),
          (b"BZh", "a bzip2 stream"), (b"\xfd7zXZ\x00", "an xz stream"), (b"\x28\xb5\x2f\xfd", "a zstd stream"),
          (GZIP_MAGIC, "a gzip stream"))


def _head(path: Path, n: int) -> bytes:
    with path.open("rb") as f:
        return f.read(n)


def show_bytes(data: bytes) -> str:
    """A few bytes as a reader can compare them with a magic number."""
    return repr(data[:8])


def kind_of(head: bytes) -> str | None:
    """What a file's first bytes (512 or more) say it is, in words ("a zip archive", "text (starting '{"a')"), for
    the formats xeonft meets; None when they say nothing known."""
    for magic, name in MAGICS:
        if head.startswith(magic):
            return name
    if head[TAR_MAGIC_AT:TAR_MAGIC_AT + len(TAR_MAGIC)] == TAR_MAGIC:
        return "a plain (uncompressed) tar"
    for bom, name in BOMS:
        if head.startswith(bom):
            return f"{name} text"
    try:  # a multi-byte character cut at the end of `head` is still text
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return None
    if text and all(c.isprintable() or c in "\t\n\r\f" for c in text):
        return f"text (starting {text[:16]!r})"
    return None


def gzip_problem(path: Path, what: str = "a gzip stream") -> str | None:
    """A gzip stream starts with b'\\x1f\\x8b' (RFC 1952); a file that does not is named for what it is (a zip, an
    SQLite database, a plain tar, text) where its bytes say so."""
    head = _head(path, 512)
    if head.startswith(GZIP_MAGIC):
        return None
    if not head:
        return f"is empty (0 bytes), not {what}"
    kind = kind_of(head)
    return f"is {kind}, not {what}" if kind else f"is not {what}: it starts with {show_bytes(head)}, not b'\\x1f\\x8b'"


def gguf_problem(path: Path) -> str | None:
    """A GGUF file starts with b'GGUF', a known version and two counts (llama.cpp's gguf.md)."""
    head = _head(path, GGUF_HEADER)
    if len(head) < len(GGUF_MAGIC) or head[:4] != GGUF_MAGIC:
        return f"is not a GGUF file: it starts with {show_bytes(head) if head else 'nothing (0 bytes)'}, not b'GGUF'"
    if len(head) < GGUF_HEADER:
        return f"is truncated: {len(head)} bytes, shorter than a GGUF header ({GGUF_HEADER} bytes)"
    (version,) = struct.unpack_from("<I", head, 4)
    if version not in GGUF_VERSIONS:
        return f"has GGUF version {version} at byte 4; this reader knows versions {', '.join(map(str, GGUF_VERSIONS))}"
    return None


def parquet_problem(path: Path) -> str | None:
    """A Parquet file starts and ends with b'PAR1'."""
    size = path.stat().st_size
    head = _head(path, 4)
    if head != PARQUET_MAGIC:
        return f"is not a Parquet file: it starts with {show_bytes(head)}, not b'PAR1'"
    with path.open("rb") as f:
        f.seek(max(0, size - 4))
        tail = f.read(4)
    if size < 12 or tail != PARQUET_MAGIC:
        return f"is a truncated Parquet file: {size} bytes, without the closing b'PAR1'"
    return None


def sqlite_problem(path: Path) -> str | None:
    """An SQLite database starts with its 16-byte header string; an empty file is a database not yet written."""
    head = _head(path, len(SQLITE_MAGIC))
    if head and head != SQLITE_MAGIC:
        return f"is not an SQLite database: it starts with {show_bytes(head)}"
    return None


def text_problem(path: Path) -> str | None:
    """UTF-8 text, as every JSON, JSONL and CSV reader here expects: a byte-order mark of UTF-16/32 or a byte that
    is not UTF-8 is named with its offset."""
    data = path.read_bytes()
    for bom, name in BOMS:
        if data.startswith(bom):
            return f"is {name} text (byte-order mark at byte 0); save it as UTF-8"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"is not UTF-8 text: byte {err.start} (0x{data[err.start]:02x}) {err.reason}"
    return None


def json_problem(path: Path, lines: bool) -> str | None:
    """JSON (one document) or JSON Lines (a document per line), after `text_problem`: the first line and column
    that do not parse."""
    problem = text_problem(path)
    if problem:
        return problem
    text = path.read_text(encoding="utf-8").removeprefix("\ufeff")
    if not lines:
        try:
            json.loads(text)
        except json.JSONDecodeError as err:
            return f"is not valid JSON: line {err.lineno}, column {err.colno}: {err.msg}"
        return None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            return f"is not valid JSON Lines: line {number}, column {err.colno}: {err.msg}"
        if not isinstance(value, dict):
            return f"is not JSON Lines of rows: line {number} is a {type(value).__name__}, not an object"
    return None

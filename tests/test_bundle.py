"""Bundles: a result set written into one deterministic file and imported elsewhere bit for bit; every damaged,
disguised, hostile or newer bundle refused in one line with nothing written; the catalog holds what was imported;
no secret reaches a bundle."""

from __future__ import annotations

import bz2
import copy
import gzip
import hashlib
import io
import json
import lzma
import re
import shutil
import sqlite3
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from harness import cli
from harness.base.sniff import kind_of
from harness.history import catalog
from harness.measure.kind import machine_facts
from harness.results import bundle_check
from harness.results.bundle_model import HEADER, MEMBER, BundleHeader, digest_of
from harness.results.records import SCHEMA_VERSION
from harness.results.store import ResultStore
from tests.test_compare import synthetic_set
from tests.test_exit_codes import one_bounded_line

OLD = Path(__file__).parent / "fixtures" / "old-default"  # five cells of a real sweep on a 2-core AMD EPYC


@pytest.fixture
def real(tmp_path: Path) -> Path:
    """A copy of the real result set, with a log for each of two cells (written by the store, so redacted)."""
    root = Path(shutil.copytree(OLD, tmp_path / "sets" / "old-default"))
    store = ResultStore(root)
    for key in store.manifest().cells[:2]:
        store.log_path(key).write_text(f"step 1 of cell {key}\nstep 2\n")
    return root


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def make(result_set: Path, out: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> Path:
    code, _, err = run(["bundle", result_set, "--out", out, *flags], capsys)
    assert code == 0, err
    return out


def set_files(folder: Path) -> dict[str, bytes]:
    """A result set's files as a bundle takes them (manifest, cells, logs), by path."""
    paths = [folder / "manifest.json", *sorted(folder.glob("cells/*.json")), *sorted(folder.glob("logs/*.log"))]
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in paths}


def entries(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path, "r:gz") as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else b"") for m in tar.getmembers()]


def pack(out: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """A gzip'd tar of these members, built as any tool would (not by xeonft's writer)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info = copy.copy(info)
            if info.isreg():
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    out.write_bytes(gzip.compress(buf.getvalue(), mtime=0))
    return out


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple[tarfile.TarInfo,
                                                                                                     bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data)
    return info, data


def relisted(members: list[tuple[tarfile.TarInfo, bytes]], **header_changes: object) -> list:
    """The members with a header that lists them truthfully (sizes, SHA-256, digest: every file a result set may
    hold), and `header_changes` over it: a bundle consistent in itself, whatever it holds."""
    head = json.loads(members[0][1])
    files = [{"path": i.name, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for i, d in members[1:]
             if i.isreg() and re.match(MEMBER, i.name)]
    head["files"] = sorted(files, key=lambda f: f["path"])
    lines = "".join(f"{f['path']} {f['sha256']}\n" for f in head["files"])
    head["digest"] = hashlib.sha256(lines.encode()).hexdigest()
    head.update(header_changes)
    return [member(HEADER, json.dumps(head).encode()), *members[1:]]


def refused(bundle_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Import `bundle_file`, which must be refused (exit 2) in one line, leaving nothing in the folder or the
    catalog; the line."""
    into, db = tmp_path / "imported", tmp_path / "catalog.sqlite"
    code, out, err = run(["import", bundle_file, "--into", into, "--catalog", db], capsys)
    assert code == 2, out + err
    line = one_bounded_line(err)
    assert line.startswith("xeonft: error: ") and str(bundle_file) in line, line
    assert not into.exists() or not any(into.iterdir()), list(into.iterdir())
    assert not db.exists()
    return line


# --- round trip --------------------------------------------------------------------------------------------------


def test_a_bundle_imports_bit_for_bit_and_the_imported_set_bundles_to_the_same_bytes(real, tmp_path, capsys):
    first = make(real, tmp_path / "a.xeonft.tar.gz", capsys, "--logs")
    again = make(real, tmp_path / "b.xeonft.tar.gz", capsys, "--logs")
    assert first.read_bytes() == again.read_bytes()  # deterministic
    into, db = tmp_path / "imported", tmp_path / "catalog.sqlite"
    code, out, err = run(["import", first, "--into", into, "--catalog", db], capsys)
    assert code == 0, err
    header = bundle_check.check(first)
    folder = into / f"default-{header.digest[:12]}"
    assert f"into {folder}" in out and "5 runs in the catalog" in out, out
    originals = set_files(real)
    assert len(originals) == 1 + 5 + 2
    assert set_files(folder) == originals  # every file, byte for byte
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == sorted(originals)
    rebundled = make(folder, tmp_path / "c.xeonft.tar.gz", capsys, "--logs")
    assert rebundled.read_bytes() == first.read_bytes()
    # without --logs: the logs stay out, and the digest names other content
    bare = make(real, tmp_path / "d.xeonft.tar.gz", capsys)
    assert [i.name for i, _ in entries(bare)] == [HEADER, *sorted(p for p in originals if not p.startswith("logs/"))]
    assert bundle_check.check(bare).digest != header.digest


def test_the_tar_is_deterministic_and_its_header_says_what_it_holds(real, tmp_path, capsys):
    path = make(real, tmp_path / "x.xeonft.tar.gz", capsys, "--logs")
    raw = path.read_bytes()
    assert raw[:4] == b"\x1f\x8b\x08\x00" and raw[4:8] == b"\x00\x00\x00\x00"  # no name, no time in the gzip header
    members = entries(path)
    names = [i.name for i, _ in members]
    assert names[0] == HEADER and names[1:] == sorted(names[1:])
    assert {(i.mtime, i.uid, i.gid, i.uname, i.gname, i.mode, i.type) for i, _ in members} == \
        {(0, 0, 0, "", "", 0o644, tarfile.REGTYPE)}
    header = BundleHeader.model_validate_json(members[0][1])
    manifest = json.loads((real / "manifest.json").read_text())
    facts = machine_facts(manifest["fingerprint"])
    assert (header.format, header.bundle_version, header.schema_version) == ("xeonft-bundle", 1, SCHEMA_VERSION)
    assert (header.name, header.created, header.logs) == ("default", manifest["created"], True)
    assert header.machine == facts and header.kind == facts.kind and "AMD EPYC" in header.label
    # each file's size and SHA-256, and the digest, computed here from the set itself
    files = set_files(real)
    assert [(f.path, f.size, f.sha256) for f in header.files] == \
        [(p, len(d), hashlib.sha256(d).hexdigest()) for p, d in sorted(files.items())]
    lines = "".join(f"{p} {hashlib.sha256(d).hexdigest()}\n" for p, d in sorted(files.items()))
    assert header.digest == hashlib.sha256(lines.encode()).hexdigest() == digest_of(header.files)


def test_the_default_file_is_named_for_the_set_the_machine_and_the_digest(real, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(["bundle", real], capsys)
    assert code == 0
    made = list((tmp_path / "bundles").iterdir())
    assert len(made) == 1
    header = bundle_check.check(made[0])
    assert made[0].name == f"default-vm-{header.digest[:12]}.xeonft.tar.gz"  # the fixture's hostname is 'vm'
    assert f"bundle: bundles/{made[0].name}" in out and f"{made[0].stat().st_size:,} bytes" in out
    assert f"sha256:{header.digest}" in out
    # a machine without a hostname is named by its kind
    rng = np.random.default_rng(0)
    synthetic = synthetic_set(tmp_path / "syn", rng, name="syn", repeats=1)
    assert run(["bundle", synthetic], capsys)[0] == 0
    kind = machine_facts({"cpu": {}}).kind
    assert [p.name for p in (tmp_path / "bundles").glob(f"syn-{kind}-*.xeonft.tar.gz")]


def test_an_older_record_a_set_id_and_a_header_field_of_later_are_carried_as_they_are(real, tmp_path, capsys):
    """A first-layout record (no schema_version, the spec's variables named `env`) is bundled and imported byte for
    byte and read migrated; the manifest's set_id reaches the header; a header field this xeonft does not know is
    no reason to refuse."""
    cell = sorted((real / "cells").glob("*.json"))[0]
    record = json.loads(cell.read_text())
    del record["schema_version"]
    record["spec"] = {("env" if k == "variables" else k): v for k, v in record["spec"].items()}
    record["spec"]["env"] = [["OMP_DISPLAY_ENV", "FALSE"]]
    cell.write_text(json.dumps(record, indent=1))
    manifest = json.loads((real / "manifest.json").read_text())
    (real / "manifest.json").write_text(json.dumps({**manifest, "set_id": "epyc-2026-12-01"}, indent=1))
    path = make(real, tmp_path / "b.xeonft.tar.gz", capsys)
    header = bundle_check.check(path)
    assert header.set_id == "epyc-2026-12-01" and header.schema_version == SCHEMA_VERSION
    members = entries(path)
    later = pack(tmp_path / "later.xeonft.tar.gz",
                 [member(HEADER, json.dumps({**json.loads(members[0][1]), "signed_by": "x"}).encode()), *members[1:]])
    into, db = tmp_path / "imported", tmp_path / "catalog.sqlite"
    code, _, err = run(["import", later, "--into", into, "--catalog", db], capsys)
    assert code == 0, err
    (folder,) = into.iterdir()
    assert (folder / "cells" / cell.name).read_bytes() == cell.read_bytes()
    migrated = ResultStore(folder).get(cell.stem)
    assert migrated is not None and migrated.spec.variables == (("OMP_DISPLAY_ENV", "FALSE"),)


def test_a_damaged_cell_file_is_left_out_of_a_bundle_with_a_warning(real, tmp_path, capsys):
    damaged = sorted((real / "cells").glob("*.json"))[0]
    damaged.write_text(damaged.read_text()[:100])
    code, _, err = run(["bundle", real, "--out", tmp_path / "x.xeonft.tar.gz"], capsys)
    assert code == 0 and "left out" in err and damaged.name in err
    header = bundle_check.check(tmp_path / "x.xeonft.tar.gz")
    assert f"cells/{damaged.name}" not in {f.path for f in header.files} and len(header.files) == 1 + 4


def test_what_is_not_a_result_set_is_not_bundled(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run(["bundle", tmp_path / "empty", "--out", tmp_path / "x.xeonft.tar.gz"], capsys)
    assert code == 2 and "is not a result set" in one_bounded_line(err)
    assert not (tmp_path / "x.xeonft.tar.gz").exists()


# --- damaged bundles -----------------------------------------------------------------------------------------------


def test_a_truncated_bundle_is_refused_at_every_cut(real, tmp_path, capsys):
    whole = make(real, tmp_path / "whole.xeonft.tar.gz", capsys, "--logs").read_bytes()
    head_end = len(gzip.compress(entries(tmp_path / "whole.xeonft.tar.gz")[0][1]))  # about where the header ends
    cuts = [1, 9, 40, head_end // 2, head_end, len(whole) // 2, len(whole) - 9, len(whole) - 4, len(whole) - 1]
    for cut in cuts:
        cut_file = tmp_path / f"cut-{cut}.xeonft.tar.gz"
        cut_file.write_bytes(whole[:cut])
        line = refused(cut_file, tmp_path, capsys)
        assert "truncated" in line or "not a gzip" in line, (cut, line)


def test_one_flipped_byte_is_refused(real, tmp_path, capsys):
    whole = make(real, tmp_path / "whole.xeonft.tar.gz", capsys).read_bytes()
    # the gzip header's flags, time and OS bytes (3-9) carry no content (gzip has no check over them): every other
    # region is covered, the magic, the deflate stream, its CRC-32 and its length
    for at in [0, 1, 2, 10, 11, 200, len(whole) // 3, len(whole) // 2, len(whole) - 12, len(whole) - 8, len(whole) - 2]:
        flipped = bytearray(whole)
        flipped[at] ^= 0x01
        path = tmp_path / f"flip-{at}.xeonft.tar.gz"
        path.write_bytes(bytes(flipped))
        refused(path, tmp_path, capsys)


def test_an_edited_member_in_a_rebuilt_tar_is_refused_by_its_digest(real, tmp_path, capsys):
    members = entries(make(real, tmp_path / "b.xeonft.tar.gz", capsys))
    at = next(i for i, (m, _) in enumerate(members) if m.name.startswith("cells/"))
    info, data = members[at]
    i = data.index(b'"tokens_per_second": ') + len(b'"tokens_per_second": ')  # a faster machine, by hand
    faster = data[:i] + (b"9" if data[i:i + 1] != b"9" else b"8") + data[i + 1:]
    edited = [*members[:at], (info, faster), *members[at + 1:]]
    line = refused(pack(tmp_path / "edited.xeonft.tar.gz", edited), tmp_path, capsys)
    assert f"{info.name} does not match its SHA-256" in line
    # the header's line for it made to agree, the digest left as it was
    head = json.loads(members[0][1])
    entry = next(f for f in head["files"] if f["path"] == info.name)
    entry["sha256"] = hashlib.sha256(edited[at][1]).hexdigest()
    entry["size"] = len(edited[at][1])
    line = refused(pack(tmp_path / "edited2.xeonft.tar.gz", [member(HEADER, json.dumps(head).encode()),
                                                              *edited[1:]]), tmp_path, capsys)
    assert "digest is not the one of its files' list" in line


def test_a_missing_an_extra_and_a_doubled_member_are_refused(real, tmp_path, capsys):
    members = entries(make(real, tmp_path / "b.xeonft.tar.gz", capsys))
    line = refused(pack(tmp_path / "short.xeonft.tar.gz", members[:-1]), tmp_path, capsys)
    assert "is incomplete" in line and members[-1][0].name in line
    extra = [*members, member("cells/0000000000000000.json", b"{}")]
    assert "is not in its header's list" in refused(pack(tmp_path / "extra.xeonft.tar.gz", extra), tmp_path, capsys)
    other = [*members, member("notes.txt", b"hi")]
    assert "is not a file of a result set" in refused(pack(tmp_path / "o.xeonft.tar.gz", other), tmp_path, capsys)
    doubled = [*members, members[-1]]
    assert "twice" in refused(pack(tmp_path / "twice.xeonft.tar.gz", doubled), tmp_path, capsys)
    headless = members[1:]
    assert "first member" in refused(pack(tmp_path / "nohead.xeonft.tar.gz", headless), tmp_path, capsys)
    assert "empty tar" in refused(pack(tmp_path / "none.xeonft.tar.gz", []), tmp_path, capsys)


def test_data_after_the_gzip_stream_is_refused(real, tmp_path, capsys):
    whole = make(real, tmp_path / "b.xeonft.tar.gz", capsys).read_bytes()
    for tail in (b"x", gzip.compress(b"more", mtime=0)):
        path = tmp_path / f"tail-{len(tail)}.xeonft.tar.gz"
        path.write_bytes(whole + tail)
        assert "data after the end of its gzip stream" in refused(path, tmp_path, capsys)


def test_a_member_outside_the_folder_a_link_or_a_device_is_refused_and_nothing_lands_outside(real, tmp_path, capsys):
    members = entries(make(real, tmp_path / "b.xeonft.tar.gz", capsys))
    hostile = {
        "dotdot": [member("../evil", b"owned")],
        "deep": [member("cells/../../evil", b"owned")],
        "absolute": [member(str(tmp_path / "evil"), b"owned")],
        "symlink": [member("cells/ffffffffffffffff.json", kind=tarfile.SYMTYPE, link=str(tmp_path / "evil"))],
        "hardlink": [member("cells/ffffffffffffffff.json", kind=tarfile.LNKTYPE, link="manifest.json")],
        "device": [member("logs/null.log", kind=tarfile.CHRTYPE)],
        "folder": [member("cells/sub", kind=tarfile.DIRTYPE)],
        "fifo": [member("logs/pipe.log", kind=tarfile.FIFOTYPE)],
    }
    for name, extra in hostile.items():
        # listed in a header that tells the truth about them, so only the member's own kind or place refuses it
        path = pack(tmp_path / f"{name}.xeonft.tar.gz", relisted([*members[:2], *extra, *members[2:]]))
        line = refused(path, tmp_path, capsys)
        assert ("outside its folder" in line if name in ("dotdot", "deep", "absolute") else
                "a bundle holds only files" in line), (name, line)
        assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_a_long_extended_header_is_refused_before_it_is_read(real, tmp_path, capsys, monkeypatch):
    members = entries(make(real, tmp_path / "b.xeonft.tar.gz", capsys))
    info = copy.copy(members[1][0])
    info.pax_headers = {"comment": "x" * 3_000_000}  # tarfile would read all of it into memory
    path = pack(tmp_path / "pax.xeonft.tar.gz", [members[0], (info, members[1][1]), *members[2:]])
    assert "holds a tar extended header of 3,000,0" in refused(path, tmp_path, capsys)
    # within the bound, the same header is only a comment
    monkeypatch.setattr(bundle_check, "MAX_EXTENDED", 4 * 2**20)
    assert bundle_check.check(path).digest == json.loads(members[0][1])["digest"]


def test_a_file_larger_than_a_bundle_holds_is_refused(real, tmp_path, capsys, monkeypatch):
    path = make(real, tmp_path / "b.xeonft.tar.gz", capsys)
    monkeypatch.setattr(bundle_check, "MAX_FILE", 4000)
    assert "more than a bundle's file may be" in refused(path, tmp_path, capsys)
    monkeypatch.setattr(bundle_check, "MAX_FILE", 256 * 2**20)
    monkeypatch.setattr(bundle_check, "MAX_UNPACKED", 20_000)
    assert "unpacks to more than 20,000 bytes" in refused(path, tmp_path, capsys)


# --- newer, disguised ----------------------------------------------------------------------------------------------


def test_a_newer_bundle_or_record_is_refused_saying_to_update(real, tmp_path, capsys):
    members = entries(make(real, tmp_path / "b.xeonft.tar.gz", capsys))
    head = json.loads(members[0][1])
    for change, said in (({"bundle_version": 2}, "bundle layout 2"),
                         ({"schema_version": SCHEMA_VERSION + 1}, f"schema_version is {SCHEMA_VERSION + 1}")):
        path = pack(tmp_path / f"newer-{said[:6]}.xeonft.tar.gz",
                    [member(HEADER, json.dumps({**head, **change}).encode()), *members[1:]])
        line = refused(path, tmp_path, capsys)
        assert "was written by a newer xeonft" in line and said in line and line.endswith("update xeonft"), line
    # one cell of a newer layout under a header that claims the current one
    at = next(i for i, (m, _) in enumerate(members) if m.name.startswith("cells/"))
    record = {**json.loads(members[at][1]), "schema_version": SCHEMA_VERSION + 1}
    edited = [*members[:at], (members[at][0], json.dumps(record).encode()), *members[at + 1:]]
    line = refused(pack(tmp_path / "newer-cell.xeonft.tar.gz", relisted(edited)), tmp_path, capsys)
    assert "was written by a newer xeonft" in line and members[at][0].name in line, line


def test_a_record_that_does_not_validate_is_refused(real, tmp_path, capsys):
    members = entries(make(real, tmp_path / "b.xeonft.tar.gz", capsys))
    at = next(i for i, (m, _) in enumerate(members) if m.name.startswith("cells/"))
    record = json.loads(members[at][1])
    record["status"] = "splendid"
    edited = [*members[:at], (members[at][0], json.dumps(record).encode()), *members[at + 1:]]
    line = refused(pack(tmp_path / "bad.xeonft.tar.gz", relisted(edited)), tmp_path, capsys)
    assert "is not a cell record: status" in line
    record["status"], record["schema_version"] = "ok", "2"
    edited = [*members[:at], (members[at][0], json.dumps(record).encode()), *members[at + 1:]]
    line = refused(pack(tmp_path / "str.xeonft.tar.gz", relisted(edited)), tmp_path, capsys)
    assert "schema_version '2' is not a number" in line
    manifest = next(i for i, (m, _) in enumerate(members) if m.name == "manifest.json")
    broken = [*members[:manifest], (members[manifest][0], b"[1, 2]"), *members[manifest + 1:]]
    line = refused(pack(tmp_path / "m.xeonft.tar.gz", relisted(broken)), tmp_path, capsys)
    assert "holds a manifest that cannot be read (not a manifest (a JSON object))" in line


def test_a_zip_a_database_a_text_or_a_plain_tar_named_as_a_bundle_is_named_for_what_it_is(real, tmp_path, capsys):
    with zipfile.ZipFile(tmp_path / "zip.xeonft.tar.gz", "w") as z:
        z.write(real / "manifest.json", "manifest.json")
    db = sqlite3.connect(tmp_path / "db.xeonft.tar.gz")
    db.execute("create table t (x)")
    db.commit()
    db.close()
    shutil.copyfile(real / "manifest.json", tmp_path / "text.xeonft.tar.gz")
    with tarfile.open(tmp_path / "plain.xeonft.tar.gz", "w") as tar:
        tar.add(real / "manifest.json", "manifest.json")
    (tmp_path / "empty.xeonft.tar.gz").write_bytes(b"")
    said = {"zip": "is a zip archive, not a gzip'd tar", "db": "is an SQLite database, not",
            "text": "is text (starting '{\\n \"system\"", "plain": "is a plain (uncompressed) tar, not",
            "empty": "is empty (0 bytes)"}
    for name, words in said.items():
        line = refused(tmp_path / f"{name}.xeonft.tar.gz", tmp_path, capsys)
        assert words in line, line


@pytest.mark.parametrize(("head", "said"), [
    (bz2.compress(b"x" * 600), "a bzip2 stream"), (lzma.compress(b"x" * 600), "an xz stream"),
    (b"GGUF\x03\x00\x00\x00" + bytes(600), "a GGUF file"), (b"PAR1" + bytes(600), "a Parquet file"),
    ("{}".encode("utf-16"), "UTF-16 text"), (bytes(range(256)) * 3, None)])
def test_the_sniffer_names_what_a_file_is_by_its_first_bytes(head, said):
    assert kind_of(head) == said


def test_a_bundle_or_an_import_that_cannot_be_written_fails_in_one_line(real, tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    code, _, err = run(["bundle", real, "--out", tmp_path / "a-file" / "x.xeonft.tar.gz"], capsys)
    assert code == 3 and one_bounded_line(err).startswith("xeonft: failed: could not write")
    path = make(real, tmp_path / "b.xeonft.tar.gz", capsys)
    code, _, err = run(["import", path, "--into", tmp_path / "a-file", "--catalog", tmp_path / "c.sqlite"], capsys)
    assert code == 3 and "could not write" in one_bounded_line(err) and "nothing was imported" in err
    assert not (tmp_path / "c.sqlite").exists()


# --- importing ------------------------------------------------------------------------------------------------------


def test_importing_twice_does_nothing_the_second_time_and_says_so(real, tmp_path, capsys):
    path = make(real, tmp_path / "b.xeonft.tar.gz", capsys)
    into, db = tmp_path / "imported", tmp_path / "catalog.sqlite"
    assert run(["import", path, "--into", into, "--catalog", db], capsys)[0] == 0
    (folder,) = into.iterdir()
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    rows = catalog.runs(db)
    code, out, err = run(["import", path, "--into", into, "--catalog", db], capsys)
    assert code == 0 and not err
    assert f"already imported as {folder}" in out and "nothing to do" in out
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before and catalog.runs(db) == rows
    # a folder of that name with other files in it is not taken for the import
    (folder / "cells" / "0000000000000000.json").write_text("{}")
    code, _, err = run(["import", path, "--into", into, "--catalog", db], capsys)
    assert code == 2 and "exists and holds other files" in one_bounded_line(err)


def test_the_catalog_holds_the_imported_runs(real, tmp_path, capsys):
    rng = np.random.default_rng(4)
    synthetic = synthetic_set(tmp_path / "sets" / "syn", rng, name="syn", repeats=2)
    paths = [make(real, tmp_path / "real.xeonft.tar.gz", capsys), make(synthetic, tmp_path / "s.xeonft.tar.gz", capsys)]
    into, db = tmp_path / "imported", tmp_path / "catalog.sqlite"
    code, out, err = run(["import", *paths, "--into", into, "--catalog", db], capsys)
    assert code == 0, err
    code, out, err = run(["history", "--catalog", db, "--by", "date", "--out", tmp_path / "page"], capsys)
    assert code == 0, err
    assert "on AMD EPYC: " in out  # the real set's cells, each a series by date
    sets = {r.result_set for r in catalog.runs(db)}
    assert sets == {str(p.resolve()) for p in into.iterdir()}
    assert len(catalog.runs(db)) == 5 + 4


def test_several_bundles_each_imported_on_its_own(real, tmp_path, capsys):
    good = make(real, tmp_path / "good.xeonft.tar.gz", capsys)
    bad = tmp_path / "bad.xeonft.tar.gz"
    bad.write_bytes(good.read_bytes()[:-1])
    synthetic = synthetic_set(tmp_path / "sets" / "syn", np.random.default_rng(5), name="syn", repeats=1)
    other = make(synthetic, tmp_path / "other.xeonft.tar.gz", capsys)
    into, db = tmp_path / "imported", tmp_path / "catalog.sqlite"
    code, out, err = run(["import", good, bad, other, "--into", into, "--catalog", db], capsys)
    assert code == 2
    assert str(bad) in one_bounded_line(err) and "truncated" in err
    assert [line.split(": imported ")[0] for line in out.splitlines()] == [str(good), str(other)]
    assert len(list(into.iterdir())) == 2


def test_a_catalog_that_cannot_take_the_set_refuses_the_bundle_and_leaves_no_folder(real, tmp_path, capsys):
    path = make(real, tmp_path / "b.xeonft.tar.gz", capsys)
    into, db = tmp_path / "imported", tmp_path / "catalog.sqlite"
    db.write_text("not a database\n")
    code, _, err = run(["import", path, "--into", into, "--catalog", db], capsys)
    assert code == 2
    line = one_bounded_line(err)
    assert f"{path}: not imported: catalog {db} is not an SQLite database" in line, line
    assert not any(into.iterdir())  # neither the set nor its temporary folder
    assert db.read_text() == "not a database\n"


# --- secrets ---------------------------------------------------------------------------------------------------------


SECRET = "s3cret-Value-9c1f2a"


def test_no_secret_reaches_a_bundle_even_when_the_set_holds_one(real, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XEONFT_DEMO_TOKEN", SECRET)
    store = ResultStore(real)
    key = store.manifest().cells[0]
    (real / "logs" / f"{key}.log").write_text(f"logging in with {SECRET}\n")  # on disk as a careless tool left it
    manifest = json.loads((real / "manifest.json").read_text())
    manifest["name"] = f"default-{SECRET}"
    manifest["fingerprint"]["hostname"] = SECRET
    (real / "manifest.json").write_text(json.dumps(manifest, indent=1))
    path = make(real, tmp_path / "b.xeonft.tar.gz", capsys, "--logs")
    unpacked = gzip.decompress(path.read_bytes())
    assert SECRET.encode() not in unpacked and b"logging in with ***" in unpacked
    header = bundle_check.check(path)
    assert SECRET not in header.model_dump_json() and header.name == "default-***"
    code, out, _ = run(["bundle", real, "--out", tmp_path / "c.xeonft.tar.gz"], capsys)
    assert code == 0 and SECRET not in out


def test_a_bundle_holding_a_secret_of_this_machine_is_refused_without_showing_it(real, tmp_path, capsys, monkeypatch):
    members = entries(make(real, tmp_path / "b.xeonft.tar.gz", capsys, "--logs"))
    at = next(i for i, (m, _) in enumerate(members) if m.name.startswith("logs/"))
    edited = [*members[:at], (members[at][0], f"token {SECRET}\n".encode()), *members[at + 1:]]
    path = pack(tmp_path / "leaky.xeonft.tar.gz", relisted(edited))
    monkeypatch.setenv("XEONFT_DEMO_TOKEN", SECRET)
    line = refused(path, tmp_path, capsys)
    assert "holds a secret" in line and members[at][0].name in line and SECRET not in line

"""The catalog is an index, never the only copy: damaged, locked, newer or full, it never fails a sweep that
recorded its cells, never half-writes, and `history --rebuild` makes it anew from the result sets."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from harness import cli
from harness.history import catalog
from harness.launch import sweep as sweep_module
from harness.results.store import ResultStore
from tests.conftest import tiny_matrix
from tests.test_faults import _fake_supervise


@pytest.fixture
def matrix_file(rows_file, tokenizer_dir, tmp_path, monkeypatch):
    """A tiny matrix on disk whose cells are recorded by a stand-in supervisor (no training: the catalog is the
    subject); the calls list says how many cells ran."""
    calls: list[str] = []
    monkeypatch.setattr(sweep_module, "supervise", _fake_supervise(calls))
    path = tmp_path / "m.yaml"
    path.write_text(json.dumps(tiny_matrix(rows_file, tokenizer_dir).document))
    return path, calls


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_a_damaged_catalog_leaves_the_sweep_a_success_with_a_warning_and_a_remedy(matrix_file, tmp_path, capsys):
    path, calls = matrix_file
    results = tmp_path / "results"
    results.mkdir()
    db = results / "catalog.sqlite"
    db.write_bytes(b"this is not a database, just text someone saved here\n" * 4)
    assert cli.main(["run", str(path), "--out", str(results / "tiny")]) == 0
    err = capsys.readouterr().err
    assert len(ResultStore(results / "tiny").records()) == len(calls) == 3  # every cell recorded
    assert "warning:" in err and f"catalog {db}" in err and "is not an SQLite database" in err
    assert "history --rebuild" in err and "failed" not in err
    # history --add on it: the user's own request to write it, so exit 2, one line with the remedy
    assert cli.main(["history", "--add", str(results / "tiny"), "--catalog", str(db)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"xeonft: error: catalog {db} is not an SQLite database") and "--rebuild" in line
    # the remedy works: the sets beside it are indexed again, the damaged file kept
    assert cli.main(["history", "--rebuild", "--catalog", str(db)]) == 0
    out = capsys.readouterr().out
    assert "rebuilt from 1 result set(s)" in out
    assert {r.key for r in catalog.runs(db)} == {r.key for r in ResultStore(results / "tiny").records()}
    (kept,) = results.glob("catalog.sqlite.before-rebuild-*")
    assert kept.read_bytes().startswith(b"this is not a database")


def test_a_catalog_damaged_mid_sweep_does_not_fail_the_sweep(matrix_file, tmp_path, capsys, monkeypatch):
    path, calls = matrix_file
    results = tmp_path / "results"
    cli.main(["run", str(path), "--out", str(results / "first")])
    db = results / "catalog.sqlite"
    assert len(catalog.runs(db)) == 3
    real = sweep_module.supervise

    def damaging(*args, **kwargs):
        if len(calls) == 1:  # while the second sweep runs, someone truncates the catalog mid-page
            db.write_bytes(db.read_bytes()[:1000])
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "supervise", damaging)
    calls.clear()
    capsys.readouterr()
    assert cli.main(["run", str(path), "--out", str(results / "second")]) == 0
    assert len(ResultStore(results / "second").records()) == 3
    assert "history --rebuild" in capsys.readouterr().err
    assert cli.main(["history", "--rebuild", "--catalog", str(db)]) == 0
    assert {r.result_set for r in catalog.runs(db)} == {catalog.set_name(results / s) for s in ("first", "second")}


def test_a_newer_or_locked_catalog_is_named_and_nothing_is_written(matrix_file, tmp_path, monkeypatch):
    path, _ = matrix_file
    cli.main(["run", str(path), "--out", str(tmp_path / "set")])
    db = tmp_path / "catalog.sqlite"
    before = catalog.runs(db)
    with sqlite3.connect(db) as con:
        con.execute("pragma user_version = 99")
    with pytest.raises(catalog.CatalogError, match="has version 99, newer than this xeonft"):
        catalog.runs(db)
    with pytest.raises(catalog.CatalogError, match="has version 99"):
        catalog.add(tmp_path / "set", db)
    with sqlite3.connect(db) as con:
        con.execute(f"pragma user_version = {catalog.CATALOG_VERSION}")
    holder = sqlite3.connect(db)
    holder.execute("begin exclusive")  # another writer, mid-transaction
    monkeypatch.setattr(catalog, "BUSY_SECONDS", 0.2)
    try:
        assert "is locked by another writer" in (catalog.add_after_run(tmp_path / "set", db) or "")
    finally:
        holder.rollback()
        holder.close()
    assert catalog.runs(db) == before


def test_a_full_disk_while_the_catalog_is_written_changes_nothing(matrix_file, tmp_path, monkeypatch):
    path, _ = matrix_file
    cli.main(["run", str(path), "--out", str(tmp_path / "set")])
    cli.main(["run", str(path), "--out", str(tmp_path / "more")])
    db = tmp_path / "catalog.sqlite"
    con = sqlite3.connect(db, isolation_level=None)  # autocommit: VACUUM runs outside a transaction
    con.execute("delete from runs where result_set = ?", (catalog.set_name(tmp_path / "more"),))
    con.execute("vacuum")
    con.close()
    before = catalog.runs(db)
    real_connect = sqlite3.connect

    def small(*args, **kwargs):  # SQLite's own "database or disk is full" (SQLITE_FULL), as a full disk gives
        con = real_connect(*args, **kwargs)
        pages = con.execute("pragma page_count").fetchone()[0]
        con.execute(f"pragma max_page_count = {pages}")
        return con

    monkeypatch.setattr(catalog.sqlite3, "connect", small)
    with pytest.raises(catalog.CatalogError, match=r"disk \(or the database\) is full; nothing was changed"):
        catalog.add(tmp_path / "more", db)  # the new set's rows need pages the database may not grow
    monkeypatch.setattr(catalog.sqlite3, "connect", real_connect)
    assert catalog.runs(db) == before


def test_a_writer_killed_mid_transaction_leaves_the_catalog_as_it_was(matrix_file, tmp_path):
    path, _ = matrix_file
    cli.main(["run", str(path), "--out", str(tmp_path / "set")])
    db = tmp_path / "catalog.sqlite"
    before = catalog.runs(db)
    killed = subprocess.run([sys.executable, "-c", (
        "import os, signal\nfrom pathlib import Path\nfrom harness.history import catalog\n"
        f"with catalog._writing(Path({str(db)!r})) as db:\n"
        "    db.execute('delete from runs')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n")])
    assert killed.returncode == -9
    assert catalog.runs(db) == before

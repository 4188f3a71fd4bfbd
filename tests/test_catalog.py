"""The catalog is an index, never the only copy: damaged, locked, newer or full, it never fails a sweep that
recorded its cells, never half-writes, and `history --rebuild` makes it anew from the result sets. The behaviour
tests run on both backends (an SQLite file, a real PostgreSQL database: `catalog_at`); result sets are built without
running cells, so each test takes seconds."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from harness import cli
from harness.analysis.efficiency import cell_efficiency
from harness.base.secrets import redact
from harness.history import catalog, catalog_db
from harness.history.catalog_db import CatalogLocation
from harness.launch import sweep as sweep_module
from harness.measure.fingerprint import safe_env
from harness.measure.kind import machine_facts
from harness.results.merge import merge
from harness.results.store import ResultStore
from tests.conftest import tiny_matrix
from tests.test_compare import synthetic_set
from tests.test_faults import _fake_supervise
from tests.test_history import _dated

OLD = Path(__file__).parent / "fixtures" / "old-default"
V1_SCHEMA = """create table if not exists runs (
  result_set text not null, key text not null, identity text not null, config text not null,
  machine text, cpu text, stack text, versions text, xeonft_commit text, date text, repeat integer,
  status text, tokens_per_second real, eval_loss real, fault text, work text,
  primary key (result_set, key))"""  # the catalog's table at version 1, as harness/history/catalog.py made it


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
    monkeypatch.setattr(catalog_db, "BUSY_SECONDS", 0.2)
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

    monkeypatch.setattr(catalog_db.sqlite3, "connect", small)
    with pytest.raises(catalog.CatalogError, match=r"disk \(or the database\) is full; nothing was changed"):
        catalog.add(tmp_path / "more", db)  # the new set's rows need pages the database may not grow
    monkeypatch.setattr(catalog_db.sqlite3, "connect", real_connect)
    assert catalog.runs(db) == before


# --- both backends: an SQLite file and a PostgreSQL database (catalog_at, tests/conftest.py) -------------------------

def _sets(tmp_path: Path, *names: str, status: str = "ok") -> list[Path]:
    """Synthetic result sets (no cell runs), two configurations of two runs each."""
    rng = np.random.default_rng(11)
    return [synthetic_set(tmp_path / n, rng, repeats=2, status=status, name=n) for n in names]


def _rows(where: str) -> list[tuple[str, str]]:
    return sorted((r.set_id, r.key) for r in catalog.runs(where))


def _expected(*sets: Path) -> list[tuple[str, str]]:
    return sorted((ResultStore(s).set_id(), r.key) for s in sets for r in ResultStore(s).records())


def test_a_set_is_added_read_back_typed_and_replaced_by_its_id(catalog_at, tmp_path):
    where = CatalogLocation.parse(catalog_at)
    old = Path(shutil.copytree(OLD, tmp_path / "old-default"))  # real cells, with the sweep's GEMM peaks
    (a,) = _sets(tmp_path, "a")
    assert catalog.runs(where) == []
    assert catalog.add(old, where) == 5 and catalog.add(a, catalog_at) == 4
    rows = catalog.runs(where)
    assert len(rows) == 9
    # every field reads back as it was written (JSON, floats, the machine's facts)
    assert sorted(rows, key=lambda r: r.key) == sorted([*catalog.runs_of_set(old), *catalog.runs_of_set(a)],
                                                       key=lambda r: r.key)
    manifest = ResultStore(old).manifest()
    facts = machine_facts(manifest.fingerprint.model_dump(mode="json"))
    for r in (r for r in rows if r.result_set == str(old.resolve())):
        record = ResultStore(old).get(r.key)
        assert r.set_id == manifest.identity(old) and r.facts == facts and r.facts.kind == facts.kind
        assert r.mfu == pytest.approx(cell_efficiency(record, manifest.peak_tflops)["mfu"]) and 0 < r.mfu < 1
        dtype = "fp32" if record.config["precision"] == "fp32" else "bf16"
        assert r.gemm_tflops == pytest.approx(manifest.peak_tflops[dtype])
    assert all(r.mfu is None and r.gemm_tflops is None for r in rows if r.result_set == str(a.resolve()))
    # adding a set again replaces its rows; a copy of it elsewhere (a bundle unpacked here) is the same set
    assert catalog.add(a, where) == 4 and _rows(catalog_at) == _expected(old, a)
    copy = Path(shutil.copytree(a, tmp_path / "elsewhere" / "a"))
    assert catalog.add(copy, where) == 4
    assert _rows(catalog_at) == _expected(old, a)
    assert {r.result_set for r in catalog.runs(where) if r.set_id == ResultStore(a).set_id()} == {str(copy.resolve())}


def test_history_check_and_trend_read_a_postgresql_catalog_through_the_cli(postgres_url, tmp_path, capsys):
    rng = np.random.default_rng(7)
    old = _dated(synthetic_set(tmp_path / "old", rng), "2026-01-01T00:00:00+0000")
    new = _dated(synthetic_set(tmp_path / "new", rng, status="failed"), "2026-02-01T00:00:00+0000")
    assert cli.main(["history", "--add", str(old), "--catalog", postgres_url, "--out", str(tmp_path / "t0")]) == 0
    out = capsys.readouterr().out
    password = make_url(postgres_url).password
    assert password and password not in out and "***" in out
    assert cli.main(["history", "--catalog", postgres_url, "--check", str(new)]) == 1
    assert capsys.readouterr().out.count(f": failed (measured in {old.resolve()}") == 2
    ok = _dated(synthetic_set(tmp_path / "ok", rng), "2026-03-01T00:00:00+0000")
    assert cli.main(["history", "--add", str(ok), "--catalog", postgres_url, "--by", "date",
                     "--out", str(tmp_path / "trend")]) == 0
    out = capsys.readouterr().out
    assert out.count("2 points by date") == 2  # each configuration: the old set's date and the ok set's
    assert "2026-01-01" in (tmp_path / "trend" / "report.md").read_text()


def test_a_version_1_catalog_is_read_as_it_is_and_migrated_in_place_with_its_rows(tmp_path):
    """A catalog as this xeonft wrote it before version 2 (its own SQL): read without a change, then upgraded by
    the first write, every row kept; a set it held that is still on disk keeps its rows' id, so adding it again
    replaces them."""
    (kept,) = _sets(tmp_path, "kept")
    manifest = json.loads((kept / "manifest.json").read_text())
    del manifest["set_id"]  # a set made before set_id
    (kept / "manifest.json").write_text(json.dumps(manifest))
    db = tmp_path / "catalog.sqlite"
    v1 = sqlite3.connect(db)
    v1.execute(V1_SCHEMA)
    v1.execute("pragma user_version = 1")
    gone = ("/gone/results/default", "k1", "ident", json.dumps({"model": "m", "batch_size": 2}), "mach", "cpu",
            "default", json.dumps({"peft": "0.21.2"}), "abc", "2026-01-01T00:00:00+0000", 0, "ok", 120.5, 1.5, "none",
            json.dumps({"tokens_per_step": 10.0}))
    v1.executemany("insert into runs values (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   [gone, (str(kept.resolve()), "k2", *gone[2:])])
    v1.commit()
    v1.close()
    before = db.read_bytes()
    read = catalog.runs(db)
    assert db.read_bytes() == before  # a read changes nothing
    by_key = {r.key: r for r in read}
    assert by_key["k1"].set_id == hashlib.sha256(b"/gone/results/default").hexdigest()[:32]
    assert by_key["k2"].set_id == ResultStore(kept).set_id()
    assert (by_key["k1"].facts, by_key["k1"].mfu, by_key["k1"].work, by_key["k1"].versions) == \
        (None, None, {"tokens_per_step": 10.0}, {"peft": "0.21.2"})
    (other,) = _sets(tmp_path, "other")
    assert catalog.add(other, db) == 4  # the first write migrates
    con = sqlite3.connect(db)
    assert con.execute("pragma user_version").fetchone()[0] == catalog.CATALOG_VERSION
    assert con.execute("select value from catalog_meta where key = 'version'").fetchone()[0] == "2"
    con.close()
    assert [r for r in catalog.runs(db) if r.key in ("k1", "k2")] == read
    assert catalog.add(kept, db) == 4  # its one old row replaced by its four
    assert {r.key for r in catalog.runs(db) if r.set_id == ResultStore(kept).set_id()} == \
        {r.key for r in ResultStore(kept).records()}
    assert len(catalog.runs(db)) == 1 + 4 + 4


def test_a_newer_postgresql_catalog_is_refused_in_one_line(postgres_url, tmp_path, capsys):
    (a,) = _sets(tmp_path, "a")
    catalog.add(a, postgres_url)
    engine = create_engine(make_url(postgres_url).set(drivername="postgresql+psycopg"))
    with engine.begin() as conn:
        conn.execute(text("update catalog_meta set value = '99' where key = 'version'"))
    engine.dispose()
    assert cli.main(["history", "--catalog", postgres_url, "--out", str(tmp_path / "t")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "has version 99, newer than this xeonft writes (2)" in line
    assert make_url(postgres_url).password not in line
    with pytest.raises(catalog.CatalogError, match="has version 99"):
        catalog.add(a, postgres_url)


WRITER = """
import sys, time
from pathlib import Path
from harness.history import catalog
real = catalog.replace
def slow(conn, set_id, rows):  # hold the write transaction open, so that the other writer meets it
    real(conn, set_id, rows)
    time.sleep(0.5)
catalog.replace = slow
sys.stdin.readline()  # the start signal, given to both writers at once
print(catalog.add(Path(sys.argv[1]), sys.argv[2]), flush=True)
"""


def _at_once(*jobs: tuple[Path, str]) -> list[subprocess.CompletedProcess[str]]:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(s), where], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s, where in jobs]
    for p in procs:  # both are importing; the signal reaches each when it reads
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    done = [(p, *p.communicate(timeout=120)) for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, out, err) for p, out, err in done]


def test_two_writers_at_once_both_succeed_and_leave_exactly_the_right_rows(catalog_at, tmp_path):
    a, b = _sets(tmp_path, "a", "b")
    # two first writers of an empty catalog, different sets: both create nothing twice, both land
    for done in _at_once((a, catalog_at), (b, catalog_at)):
        assert done.returncode == 0 and done.stdout.strip() == "4", done.stderr
    assert _rows(catalog_at) == _expected(a, b)
    # the same set by two writers at once: its rows once
    for done in _at_once((a, catalog_at), (a, catalog_at)):
        assert done.returncode == 0 and done.stdout.strip() == "4", done.stderr
    assert _rows(catalog_at) == _expected(a, b)


KILLED = """
import sys, time
from pathlib import Path
from sqlalchemy import text
from harness.history import catalog, catalog_db
rows = catalog.runs_of_set(Path(sys.argv[1]))
with catalog_db.writing(catalog_db.CatalogLocation.parse(sys.argv[2])) as conn:
    conn.execute(text("delete from runs"))
    catalog.replace(conn, rows[0].set_id, rows)
    print("inserted", flush=True)
    time.sleep(120)
"""


def test_a_writer_killed_mid_transaction_leaves_the_catalog_as_it_was(catalog_at, tmp_path):
    a, b = _sets(tmp_path, "a", "b")
    catalog.add(a, catalog_at)
    before = catalog.runs(catalog_at)
    writer = subprocess.Popen([sys.executable, "-c", KILLED, str(b), catalog_at], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "inserted", writer.stderr.read() if writer.stderr else ""
        assert catalog.runs(catalog_at) == before  # a reader meanwhile sees only what was committed
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(30)
    assert writer.returncode == -signal.SIGKILL
    assert catalog.runs(catalog_at) == before
    assert catalog.add(b, catalog_at) == 4  # and the next writer is not kept waiting
    assert _rows(catalog_at) == _expected(a, b)


def test_an_unreachable_server_is_one_line_without_the_password(tmp_path, capsys, monkeypatch):
    (a,) = _sets(tmp_path, "a")
    url = "postgresql://xeonft:hunter2-secret@127.0.0.1:1/xeonft"  # nothing listens on port 1
    assert cli.main(["history", "--catalog", url, "--add", str(a)]) == 3
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("xeonft: failed: catalog postgresql://xeonft:***@127.0.0.1:1/xeonft cannot be reached")
    assert "hunter2" not in line and "Traceback" not in line
    # a sweep's cells are kept and the verb succeeds: the warning names the catalog, not its password
    warning = catalog.add_after_run(a, url)
    assert warning and "cannot be reached" in warning and "hunter2" not in warning
    # a host that is not found is the URL's fault: exit 2
    assert cli.main(["history", "--catalog", "postgresql://xeonft:hunter2-secret@no-such-host.invalid/x"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "names a host that cannot be found (no-such-host.invalid)" in line and "hunter2" not in line
    # a URL that is no catalog's is refused before anything runs
    assert cli.main(["history", "--catalog", "mysql://root:hunter2-secret@db/x"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "not mysql://" in line and "hunter2" not in line


def test_a_wrong_password_or_a_missing_database_is_one_line_naming_it(postgres_url, tmp_path, capsys):
    (a,) = _sets(tmp_path, "a")
    url = make_url(postgres_url)
    wrong = url.set(password="not-the-password-42").render_as_string(hide_password=False)
    assert cli.main(["history", "--catalog", wrong, "--add", str(a)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"refused the password of user '{url.username}'" in line and "not-the-password-42" not in line
    assert url.password not in line
    missing = url.set(database="xeonft_no_such_db").render_as_string(hide_password=False)
    assert cli.main(["history", "--catalog", missing, "--check", str(a)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "has no database 'xeonft_no_such_db'" in line and url.password not in line


def test_a_catalog_url_never_reaches_a_result_set_or_a_message_with_its_password(tmp_path, monkeypatch):
    assert redact("XEONFT_CATALOG=postgresql://xeonft:s3cr%40t@db.lan:5432/x", environ={}) == \
        "XEONFT_CATALOG=postgresql://xeonft:***@db.lan:5432/x"
    assert redact("see https://example.com/a:b@c and postgresql://u@h/d", environ={}) == \
        "see https://example.com/a:b@c and postgresql://u@h/d"  # a path's colon, a URL without a password
    monkeypatch.setenv("XEONFT_CATALOG", "postgresql+psycopg://fleet:pa55-word-x@db.lan/catalog")
    store = ResultStore(tmp_path / "set")
    store.open({"name": "s"}, {"cpu": {}, "env": safe_env()}, "env", [], resume=False)
    text_on_disk = store.manifest_path.read_text()
    assert "postgresql+psycopg://fleet:***@db.lan/catalog" in text_on_disk and "pa55-word-x" not in text_on_disk
    where = CatalogLocation.parse("postgresql://fleet:pa55-word-x@db.lan/catalog")
    assert str(where) == "postgresql://fleet:***@db.lan/catalog"
    assert "pa55-word-x" not in str(catalog.CatalogError(where, "is damaged"))


def test_a_result_set_keeps_its_identity_on_resume_and_a_merge_makes_a_new_one(tmp_path):
    a, b = _sets(tmp_path, "a", "b")
    first = ResultStore(a).manifest().set_id
    assert first and len(first) == 32 and int(first, 16) >= 0 and first != ResultStore(b).set_id()
    store = ResultStore(a)
    store.open({"name": "a"}, {"cpu": {}}, "env", [], resume=True)
    assert store.manifest().set_id == first
    merged = merge([a, b], tmp_path / "merged")
    assert merged.set_id() not in (first, ResultStore(b).set_id())
    # a set made before set_id: known by a digest of its host, folder and creation time, kept when resumed
    manifest = json.loads((b / "manifest.json").read_text())
    del manifest["set_id"]
    (b / "manifest.json").write_text(json.dumps({**manifest, "fingerprint": {"hostname": "node7"}}))
    made = json.dumps(["node7", str(b.resolve()), manifest["created"]])
    derived = hashlib.sha256(made.encode()).hexdigest()[:32]
    assert ResultStore(b).set_id() == derived
    ResultStore(b).open({"name": "b"}, {"cpu": {}, "hostname": "elsewhere"}, "env", [], resume=True)
    assert ResultStore(b).manifest().set_id == derived


def test_a_shared_catalog_rebuilt_here_keeps_the_rows_of_sets_it_cannot_read(postgres_url, tmp_path, capsys):
    a, b = _sets(tmp_path, "a", "b")
    for s in (a, b):
        catalog.add(s, postgres_url)
    expected = _expected(a, b)
    shutil.rmtree(b)  # another machine's set, as far as this one can tell
    assert cli.main(["history", "--rebuild", "--catalog", postgres_url]) == 0
    out = capsys.readouterr().out
    assert f"{a.resolve()}: 4 runs" in out and f"{b.resolve()}: skipped" in out and "its rows are kept" in out
    assert _rows(postgres_url) == expected


def test_a_fleet_job_hands_a_catalog_url_on_as_given(postgres_url, tmp_path):
    """A fleet job gets the shared catalog as a string (`Task.catalog`); a URL reaches the database, not a file."""
    from harness.fleet.job import add_to_catalog

    (a,) = _sets(tmp_path, "a")
    assert add_to_catalog(a, postgres_url) is None
    assert _rows(postgres_url) == _expected(a)  # in the database the URL names

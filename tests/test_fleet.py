"""A matrix over a fleet through submitit: real jobs (submitit's local executor, the code path a Slurm cluster
runs), each running a tiny-Llama matrix cell by cell in real worker processes; a job that fails is one line with
its log and exit 3, nothing recorded before it lost; bad fleet flags are one line, exit 2; the sbatch script a
Slurm fleet submits takes the whole node; and, where `sinfo` answers, the same matrix through Slurm itself."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import submitit

from harness import cli
from harness.config.identity import MEASURED
from harness.fleet import fleet as fleet_module
from harness.fleet import submit
from harness.fleet.task import FleetTask, Target, file_digest
from harness.history import catalog
from harness.results.bundle_check import check
from harness.results.store import ResultStore
from tests.conftest import tiny_matrix

HOST = socket.gethostname()


def _main(argv: list[str]) -> tuple[int, str]:
    """The CLI as a user runs it, with what it printed to stderr (the rich console writes there)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, err.getvalue()


@pytest.fixture(scope="module")
def first(rows_file, tokenizer_dir, tmp_path_factory):
    """One local fleet round of a two-cell tiny matrix, without a shared catalog."""
    folder = tmp_path_factory.mktemp("fleet")
    matrix = folder / "tiny.yaml"
    m = tiny_matrix(rows_file, tokenizer_dir, axes={"precision": ["fp32"], "batch_size": [1, 2]}, exclude=[])
    matrix.write_text(json.dumps(m.document))
    root = folder / "results"
    argv = ["run", str(matrix), "--executor", "local", "--out", str(root), "--timeout", "10"]
    code, err = _main(argv)
    for _ in range(2):  # a cell another process disturbed is taken again by a resume, as a user would
        if code != 0 or all(r.status != "disturbed" for r in ResultStore(root / f"tiny@{HOST}").records()):
            break
        code, err = _main([*argv, "--resume"])
    return matrix, root, code, err


def test_a_local_fleet_runs_the_whole_matrix_on_this_machine_and_records_it(first):
    _, root, code, err = first
    assert code == 0, err[-3000:]
    store = ResultStore(root / f"tiny@{HOST}")
    records = store.records()
    assert len(records) == 2 and {r.status for r in records} == {"ok"}, [(r.status, r.reason) for r in records]
    assert all(r.result and r.result.summary.tokens_per_second for r in records)
    # the submitter added the returned set to the catalog beside the sets (no shared catalog was given)
    assert {r.key for r in catalog.runs(root / "catalog.sqlite")} == {r.key for r in records}
    (line,) = [ln for ln in err.splitlines() if ln.startswith(f"{HOST}:")]
    assert "2 cell(s) ok, 0 not ok" in line and str(store.root) in line and "this machine, job " in line
    # the job bundled its set: a bundle that checks whole and holds its two cells
    bundled = root / "bundles" / f"tiny@{HOST}.xeonft.tar.gz"
    assert f"bundle {bundled}" in line
    assert sum(f.path.startswith("cells/") for f in check(bundled).files) == 2
    # the job's own log (submitit's) is under the out root and holds the sweep's output
    job_id = re.search(r"this machine, job (\d+)", line).group(1)
    log = root / "fleet-logs" / "tiny" / job_id / f"{job_id}_0_log.err"
    assert log.is_file() and "xeonft run" in (log.parent / f"{job_id}_0_log.out").read_text() + log.read_text()


def test_a_shared_catalog_is_written_by_each_job(first, tmp_path):
    matrix, root, code, _ = first
    assert code == 0
    before = {r.key: r.finished for r in ResultStore(root / f"tiny@{HOST}").records()}
    shared = tmp_path / "shared.sqlite"
    code, err = _main(["run", str(matrix), "--executor", "local", "--out", str(root), "--resume",
                       "--catalog", str(shared), "--timeout", "10"])
    assert code == 0, err[-3000:]
    after = {r.key: r.finished for r in ResultStore(root / f"tiny@{HOST}").records()}
    assert after == before  # resumed: nothing ran again
    assert {r.key for r in catalog.runs(shared)} == set(before)
    assert f"{HOST}: 2 cell(s) ok" in err


def test_a_shared_database_catalog_is_written_by_the_job_and_its_password_is_in_no_file(first, postgres_url):
    from sqlalchemy.engine import make_url

    matrix, root, code, _ = first
    assert code == 0
    password = make_url(postgres_url).password
    assert password, "the test server's URL carries a password"
    code, err = _main(["run", str(matrix), "--executor", "local", "--out", str(root), "--resume",
                       "--catalog", postgres_url, "--timeout", "10"])
    assert code == 0, err[-3000:]
    keys = {r.key for r in ResultStore(root / f"tiny@{HOST}").records()}
    assert {r.key for r in catalog.runs(postgres_url)} == keys  # the job reached the database
    assert password not in err and "PGPASSWORD" not in os.environ
    # the pickled task submitit keeps beside the results (and every other file there) holds no password
    leaked = [p for p in root.rglob("*") if p.is_file() and password.encode() in p.read_bytes()]
    assert not leaked


def test_a_job_refusing_a_changed_matrix_is_one_line_with_its_log_and_exit_3_keeping_earlier_results(
        first, monkeypatch):
    matrix, root, code, _ = first
    assert code == 0
    store = ResultStore(root / f"tiny@{HOST}")
    before = {r.key: r.finished for r in store.records()}
    # the submitter hands the job a digest the file no longer has: the job, in its own process, refuses
    monkeypatch.setattr(fleet_module, "file_digest", lambda path: "0" * 64)
    code, err = _main(["run", str(matrix), "--executor", "local", "--out", str(root), "--resume",
                       "--timeout", "10"])
    assert code == 3
    (line,) = [ln for ln in err.splitlines() if ln.startswith("failed this machine")]
    assert f"matrix {matrix} changed after it was submitted" in line and "XeonftError" in line
    log = Path(line.rsplit("log: ", 1)[1])
    assert log.is_file() and "changed after it was submitted" in log.read_text()
    last = err.strip().splitlines()[-1]
    assert last.startswith("xeonft: failed: 1 of 1 job(s) failed (this machine)")
    # nothing recorded earlier is lost: the set and the catalog's rows are as they were
    assert {r.key: r.finished for r in store.records()} == before
    assert {r.key for r in catalog.runs(root / "catalog.sqlite")} == set(before)


def test_a_cancelled_job_is_reported_by_its_target_and_log(rows_file, tokenizer_dir, tmp_path, monkeypatch):
    matrix = tmp_path / "m.yaml"
    one = tiny_matrix(rows_file, tokenizer_dir, name="m", axes={"precision": ["fp32"]}, exclude=[])
    matrix.write_text(json.dumps(one.document))
    monkeypatch.setattr(submit, "RESULT_GRACE_S", 1)  # how long an ended job's result file may take to appear
    task = FleetTask(matrix=matrix, matrix_sha256=file_digest(matrix), out_root=tmp_path / "results")
    (job,) = submit.submit(task, [Target("local")], tmp_path / "logs", timeout_min=5, name="xeonft-test")
    # submitit's local cancel is a SIGINT to the job's controller, sent here while it starts: it cannot finish
    # first, unless it ignores SIGINT (inherited from a suite started in the background, which ran the whole job
    # and reported it ok once; tests/conftest.py restores SIGINT)
    status = Path(f"/proc/{job.job._process.pid}/status").read_text()
    ignored = int(next(ln for ln in status.splitlines() if ln.startswith("SigIgn:")).split()[1], 16)
    assert not ignored & (1 << (signal.SIGINT - 1)), "the job ignores SIGINT: cancel() cannot stop it"
    job.job.cancel()
    seen: list[str] = []
    (report,) = submit.wait([job], on_done=lambda r: seen.append(fleet_module.line(r)))
    assert not report.ok and report.failure and report.failure.startswith("ended without a result")
    assert report.log == tmp_path / "logs" / job.job.job_id / f"{job.job.job_id}_0_log.err"
    assert seen and seen[0].startswith("[red]failed[/] this machine") and str(report.log) in seen[0]


def test_a_sweep_on_this_machine_adds_its_set_to_the_catalog_named_by_catalog(rows_file, tokenizer_dir, tmp_path,
                                                                             monkeypatch):
    from harness.launch import sweep as sweep_module
    from tests.test_faults import _fake_supervise

    calls: list[str] = []
    monkeypatch.setattr(sweep_module, "supervise", _fake_supervise(calls))  # the catalog is the subject here
    matrix = tmp_path / "m.yaml"
    matrix.write_text(json.dumps(tiny_matrix(rows_file, tokenizer_dir).document))
    shared = tmp_path / "elsewhere" / "shared.sqlite"
    code, err = _main(["run", str(matrix), "--out", str(tmp_path / "results" / "tiny"), "--catalog", str(shared)])
    assert code == 0, err[-2000:]
    assert {r.key for r in catalog.runs(shared)} == set(calls) and len(calls) == 3
    assert not (tmp_path / "results" / "catalog.sqlite").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--executor", "local", "--partition", "cpu"], "--partition and --nodelist choose Slurm machines"),
    (["--executor", "local", "--timeout", "0"], "--timeout is in minutes and must be above 0"),
    (["--partition", "cpu"], "need --executor"),
    (["--executor", "local", "--dry-run"], "--dry-run is for a sweep on this machine"),
    (["--executor", "slurm"], "--executor slurm needs Slurm's sbatch and srun on PATH"),
])
def test_bad_fleet_flags_are_one_line_and_exit_2(flags, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here, whatever this machine has installed
    (tmp_path / "m.yaml").write_text("name: m\nfixed: {model: 'synthetic:tiny'}\n")
    assert cli.main(["run", str(tmp_path / "m.yaml"), *flags, "--out", str(tmp_path / "results")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("xeonft: error:") and message in line, line
    assert not (tmp_path / "results").exists()  # nothing was submitted


def test_slurm_targets_are_one_per_node_or_per_partition(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert submit.targets("slurm", "cpu,big", None) == [Target("slurm", partition="cpu"),
                                                         Target("slurm", partition="big")]
    assert submit.targets("slurm", "cpu", "n[1-2],gpu7") == [Target("slurm", "cpu", "n1"),
                                                             Target("slurm", "cpu", "n2"),
                                                             Target("slurm", "cpu", "gpu7")]
    assert submit.targets("slurm", None, None) == [Target("slurm")]


def test_the_sbatch_script_of_a_slurm_target_takes_its_whole_node(tmp_path, monkeypatch):
    """What submitit would hand sbatch, made by submitit itself (its Slurm executor, told that srun exists)."""
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))
    executor = submit.executor_for("slurm", tmp_path)
    executor.update_parameters(**submit.parameters(Target("slurm", partition="cpu", node="n2"), 45, "xeonft-tiny"))
    script = executor._executor._make_submission_file_text("python -m submitit.core._submit DIR", "uid")
    flags = set(re.findall(r"^#SBATCH (\S+)$", script, re.M))
    assert {"--exclusive", "--mem=0", "--nodes=1", "--ntasks-per-node=1", "--nodelist=n2", "--partition=cpu",
            "--time=45", "--job-name=xeonft-tiny"} <= flags, script
    assert not any(f.startswith("--cpus-per-task") for f in flags)  # exclusive: every CPU of the node
    assert "srun" not in script  # the batch step itself runs Python, with the whole allocation


def _slurm_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_slurm = pytest.mark.skipif(not _slurm_answers() and os.environ.get("XEONFT_REQUIRE_SLURM") != "1",
                                 reason="no Slurm cluster answers here (scripts/slurm.sh brings up a one-node one)")


def _node() -> str:
    assert _slurm_answers(), "XEONFT_REQUIRE_SLURM=1 but sinfo does not answer (scripts/slurm.sh starts it)"
    return subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout.split()[0]


@needs_slurm
def test_a_slurm_fleet_runs_the_matrix_on_the_cluster_node(first, tmp_path):
    matrix, _, _, _ = first
    node = _node()
    root = tmp_path / "results"
    code, err = _main(["run", str(matrix), "--executor", "slurm", "--nodelist", node, "--out", str(root),
                       "--timeout", "10"])
    assert code == 0, err[-3000:]
    (line,) = [ln for ln in err.splitlines() if f"node {node}, job " in ln]
    host = line.split(":", 1)[0]
    records = ResultStore(root / f"tiny@{host}").records()
    # measured, and flagged where slurmd and the submitter's polling took CPU beside the cell (CI saw 0.26-0.30
    # cores): the fleet's job is to run the matrix there and gather it, which a disturbed cell did too
    assert len(records) == 2 and {r.status for r in records} <= set(MEASURED), [(r.status, r.reason) for r in records]
    assert all(r.result and r.result.summary.tokens_per_second for r in records)
    assert {r.key for r in catalog.runs(root / "catalog.sqlite")} == {r.key for r in records}


def _cancel_when_running(name: str, after_s: float) -> None:
    """What a user does: scancel the job once it runs (and has run for a while)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = subprocess.run(["squeue", "-h", "-n", name, "-o", "%T"], capture_output=True, text=True).stdout
        if "RUNNING" in states:
            time.sleep(after_s)
            subprocess.run(["scancel", "-n", name], check=True)
            return
        time.sleep(0.5)


@needs_slurm
def test_a_cancelled_slurm_job_is_one_line_naming_its_node_and_log_and_exit_3(rows_file, tokenizer_dir, tmp_path,
                                                                               monkeypatch):
    node = _node()
    monkeypatch.setattr(submit, "SCHEDULER_SECONDS", 1)  # this cluster has no accounting: squeue tells the end
    monkeypatch.setattr(submit, "RESULT_GRACE_S", 1)
    m = tiny_matrix(rows_file, tokenizer_dir, name="long", axes={"precision": ["fp32"], "batch_size": [1]},
                    exclude=[], measure={"warmup_steps": 1, "steps": 5000})
    matrix = tmp_path / "long.yaml"
    matrix.write_text(json.dumps(m.document))
    canceller = threading.Thread(target=_cancel_when_running, args=("xeonft-long", 6.0))
    canceller.start()
    started = time.monotonic()
    code, err = _main(["run", str(matrix), "--executor", "slurm", "--nodelist", node, "--out",
                       str(tmp_path / "results"), "--timeout", "10"])
    canceller.join()
    assert code == 3, err[-3000:]
    assert time.monotonic() - started < 90
    (line,) = [ln for ln in err.splitlines() if ln.startswith(f"failed node {node}, job ")]
    assert "ended without a result (state CANCELLED" in line
    log = Path(line.rsplit("log: ", 1)[1])
    assert log.is_file() and log.parent.parent == tmp_path / "results" / "fleet-logs" / "long"
    assert err.strip().splitlines()[-1].startswith(f"xeonft: failed: 1 of 1 job(s) failed (node {node})")

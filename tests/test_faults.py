"""Faults a sweep meets on a shared server: true causes, secrets and remote code, full disks, crashes in xeonft
itself, two sweeps on one result set, a killed launcher; and generated matrices that each end valid or in one
clear message."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import cli
from harness.base.errors import Failure, XeonftError
from harness.config.finetune import load_config
from harness.config.identity import match_key
from harness.config.matrix import parse_matrix
from harness.launch import sweep as sweep_module
from harness.launch.locks import ResultSetLock
from harness.launch.oom import oom_kills
from harness.launch.outcome import classify
from harness.launch.sweep import check_free_space, run_sweep
from harness.results.records import CellRecord
from harness.results.store import ResultStore
from tests.conftest import tiny_matrix


def test_sigkill_is_an_oom_only_with_the_kernels_word_for_it():
    assert classify(-9, False, "", oom_kills=1) == ("oom", "killed by the kernel's OOM killer "
                                                           "(cgroup memory.events oom_kill +1)")
    status, reason = classify(-9, False, "", oom_kills=0)
    assert status == "failed" and "SIGKILL" in reason and "no OOM kill was recorded" in reason
    assert classify(-9, False, "", oom_kills=None)[0] == "failed"
    torchrun = "Root Cause (first observed failure):\n[0]:\n  rank      : 1 (local_rank: 1)\n  exitcode  : -9"
    assert classify(1, False, torchrun, oom_kills=2)[0] == "oom"
    assert classify(1, False, torchrun, oom_kills=0) == (
        "failed", "rank 1 died (killed by SIGKILL); torchrun stopped the other ranks")


def test_oom_kill_count_is_read_from_the_cgroup(tmp_path):
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n")
    assert oom_kills(tmp_path) == 2
    assert oom_kills(tmp_path / "nowhere") is None


def test_the_slow_fault_doubles_each_step_inside_the_timed_step_without_compounding(monkeypatch):
    """On a clock that moves only when told, each step's time is its own work twice over: the wait goes by the step
    itself (a slow warm-up step does not lengthen the next one), inside the step the tracker times."""
    from types import SimpleNamespace

    from harness.cell import tracker as tracker_module

    clock = [0.0]

    def advance(seconds: float) -> None:
        clock[0] += seconds

    monkeypatch.setattr(tracker_module, "time", SimpleNamespace(perf_counter=lambda: clock[0], sleep=advance,
                                                                time=lambda: clock[0]))
    tracker = tracker_module.StepTracker(timing_warmup=100)
    slow = tracker_module.SlowSteps(1.0)
    work = [0.3, 0.1, 0.1, 0.1, 0.2]
    tracker.on_train_begin(None, None, None)
    for i, w in enumerate(work, start=1):
        state = SimpleNamespace(global_step=i, max_steps=len(work))
        slow.on_step_begin(None, state, None)  # listed before the tracker, as train_cell lists it
        tracker.on_step_begin(None, state, None)
        advance(w)
        slow.on_step_end(None, state, None)
        tracker.on_step_end(None, state, None)
    assert [s.compute_seconds for s in tracker.steps] == pytest.approx([0.6, 0.2, 0.2, 0.2, 0.4])
    assert slow.waits == pytest.approx(work)
    assert tracker.own_seconds == 0.0  # the wait is the step's, not the harness's overhead


def test_a_matrix_may_carry_neither_a_secret_nor_remote_code(tmp_path):
    with pytest.raises(XeonftError, match="'HF_TOKEN' looks like a secret"):
        parse_matrix({"name": "x", "variables": {"HF_TOKEN": "hf_abc"}})
    with pytest.raises(XeonftError, match="only be turned on from the command line"):
        parse_matrix({"name": "x", "fixed": {"model": "synthetic:tiny", "trust_remote_code": True}})
    preset = tmp_path / "sneaky.yaml"
    preset.write_text(yaml.safe_dump({"trust_remote_code": True}))
    with pytest.raises(XeonftError, match="never by a preset"):
        parse_matrix({"name": "x", "fixed": {"model": "synthetic:tiny"}, "axes": {"preset": [str(preset)]}})
    with pytest.raises(XeonftError, match="never by a config file"):
        load_config(str(preset))
    assert load_config(trust_remote_code=True).trust_remote_code  # the command line's word
    allowed = parse_matrix({"name": "x", "fixed": {"model": "synthetic:tiny"}}, trust_remote_code=True)
    assert all(c.config.trust_remote_code for c in allowed.cells)
    assert not any(c.config.trust_remote_code for c in parse_matrix({"name": "x"}).cells)


def test_a_crash_inside_xeonft_is_one_line_and_exit_code_3(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("something inside broke")

    monkeypatch.setitem(cli.VERBS, "fetch", broken)
    assert cli.main(["fetch"]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("xeonft: failed: RuntimeError: something inside broke (traceback in ")
    assert "\n" not in err and os.path.isfile(err.rsplit("traceback in ", 1)[1].rstrip(")"))


def _fake_supervise(calls):
    def supervise(spec, key, store, on_step=None, disturbance_cores=0.25, calibrator=None):
        calls.append(key)
        return CellRecord.model_validate({
            "key": key, "match_key": match_key(spec), "repeat": spec.repeat, "status": "ok", "wall_seconds": 1.0,
            "spec": spec.model_dump(mode="json"),
            "result": {"summary": {"tokens_per_second": 100.0, "measured_tokens": 100, "measured_seconds": 1.0}}})

    return supervise


def test_a_full_disk_stops_the_sweep_with_earlier_cells_intact(rows_file, tokenizer_dir, tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(sweep_module, "supervise", _fake_supervise(calls))
    real_put = ResultStore.put

    def put(self, key, record):
        if len(calls) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_put(self, key, record)

    monkeypatch.setattr(ResultStore, "put", put)
    m = tiny_matrix(rows_file, tokenizer_dir)
    with pytest.raises(Failure, match=r"No space left on device.*cells recorded before it are intact"):
        run_sweep(m, out=tmp_path / "full")
    (kept,) = ResultStore(tmp_path / "full").records()
    assert kept.key == calls[0]
    assert not list((tmp_path / "full" / "cells").glob(".*.tmp"))  # nothing half-written
    with pytest.raises(Failure, match="MiB free on the disk"):
        check_free_space(tmp_path, need=1 << 60)


def test_a_second_sweep_on_one_result_set_is_refused_naming_the_first(rows_file, tokenizer_dir, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setattr(sweep_module, "supervise", _fake_supervise([]))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from harness.launch.locks import ResultSetLock\n"
        f"lock = ResultSetLock({str(tmp_path / 'shared')!r}); lock.acquire(); print('held', flush=True); "
        "time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(XeonftError, match=f"pid {holder.pid}"):
            run_sweep(tiny_matrix(rows_file, tokenizer_dir), out=tmp_path / "shared")
    finally:
        holder.kill()
        holder.wait()
    with ResultSetLock(tmp_path / "shared"):  # released by the kernel when its holder died
        pass


def _cells_of(pattern: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "harness.cell.worker" in cmd and pattern in cmd:
            out.append(p)
    return out


def test_the_suites_children_take_sigint_as_from_a_terminal():
    """The interrupt tests send SIGINT to launchers and jobs this suite starts. A suite started in the background
    (`pytest &` in a CI script) inherits SIGINT ignored, and an ignored signal stays ignored across exec: the
    launcher then ignored the test's Ctrl-C and finished with exit 0 (tests/conftest.py restores SIGINT). Here:
    a program this process starts, and a program that one starts, do not ignore it."""
    sigint = 1 << (signal.SIGINT - 1)
    shown = subprocess.run(["sh", "-c", "grep SigIgn /proc/self/status"], capture_output=True, text=True,
                           check=True).stdout
    assert not int(shown.split()[1], 16) & sigint, shown
    python = subprocess.run([sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT).__name__)"],
                            capture_output=True, text=True, check=True).stdout
    assert python.strip() == "default_int_handler"


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_killed_launcher_leaves_no_cell_behind_and_a_resume_records_each_cell_once(rows_file, tokenizer_dir,
                                                                                     tmp_path, how):
    # two cells: one done before the signal (a resume must not run it again), one running when it comes
    doc = tiny_matrix(rows_file, tokenizer_dir, axes={"precision": ["fp32"], "batch_size": [1, 2]}, exclude=[],
                      measure={"warmup_steps": 1, "steps": 30}).document
    matrix = tmp_path / "m.yaml"
    matrix.write_text(json.dumps(doc))
    out = tmp_path / "set"
    log = (tmp_path / "launcher.log").open("w")
    launcher = subprocess.Popen([sys.executable, "-m", "harness", "run", str(matrix), "--out", str(out)],
                                stderr=log, stdout=log, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list((out / "cells").glob("*.json")) and time.monotonic() < deadline:  # one cell done,
            time.sleep(0.2)
        while not _cells_of("xeonft-launch") and time.monotonic() < deadline:  # the next one running
            time.sleep(0.2)
        assert _cells_of("xeonft-launch"), "no cell started"
        running = _cells_of("xeonft-launch")
        launcher.send_signal(how)
        launcher.wait(timeout=60)
        _, alive = psutil.wait_procs(running, timeout=15)
        assert not alive, f"cells outlived their launcher: {[p.pid for p in alive]}"
        if how != signal.SIGKILL:  # Ctrl-C, a scheduler's SIGTERM: the interrupt path, exit 130
            assert launcher.returncode == 130 and "interrupted" in (tmp_path / "launcher.log").read_text()
    finally:
        launcher.kill()
        log.close()
    before = ResultStore(out).records()
    finished = {r.key: r.finished for r in before if r.status == "ok"}  # the cell done before the signal
    assert 1 <= len(before) <= 2 and finished
    assert cli.main(["run", str(matrix), "--out", str(out), "--resume"]) == 0
    records = ResultStore(out).records()
    assert len(records) == 2 and len({r.key for r in records}) == 2
    assert {r.key: r.finished for r in records if r.key in finished} == finished  # kept, not run again
    assert not list(out.glob("cells/.*.tmp"))


MATRIX_KEYS = st.sampled_from(["name", "fixed", "axes", "exclude", "repeats", "measure", "timeout_s", "variables",
                               "colour", "recipe", "peak"])
VALUES = st.recursive(st.none() | st.booleans() | st.integers(-3, 9) | st.floats(allow_nan=True) |
                      st.sampled_from(["fp32", "bf16", "auto", "x", "", "quick", "synthetic:tiny", "30m"]),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                          st.sampled_from(["batch_size", "precision", "min", "max", "steps", "warmup_steps",
                                           "model", "lora_r", "budget", "pinning", "HF_TOKEN"]), inner, max_size=3),
                      max_leaves=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(MATRIX_KEYS, VALUES, max_size=6))
def test_any_matrix_document_is_valid_or_one_clear_error(doc):
    """200 generated documents: each expands into cells or fails with an XeonftError that names what is wrong;
    nothing else escapes (a traceback would be a bug)."""
    try:
        m = parse_matrix(doc, source="gen.yaml")
    except XeonftError as err:
        text = str(err)
        assert text.startswith("gen.yaml") and "Traceback" not in text
        return
    assert m.cells and all(c.config.max_steps >= 1 for c in m.cells)


def test_dry_run_says_what_a_resume_would_skip_and_how_long_the_rest_takes(rows_file, tokenizer_dir, tmp_path,
                                                                          monkeypatch, capsys):
    monkeypatch.setattr(sweep_module, "supervise", _fake_supervise([]))
    m = tiny_matrix(rows_file, tokenizer_dir)
    run_sweep(m, out=tmp_path / "set")
    bigger = {**m.document, "axes": {**m.document["axes"], "batch_size": [1, 2, 3]}}
    (tmp_path / "m.yaml").write_text(json.dumps(bigger))
    capsys.readouterr()
    assert cli.main(["run", str(tmp_path / "m.yaml"), "--out", str(tmp_path / "set"), "--resume", "--dry-run"]) == 0
    out = capsys.readouterr().err
    assert out.count("skip") == 3 and out.count(" run ") >= 1 and "estimated" in out
    assert len(ResultStore(tmp_path / "set").records()) == 3  # nothing ran


def test_dry_run_plans_with_the_memory_limit_a_run_would_apply(rows_file, tokenizer_dir, tmp_path, monkeypatch,
                                                               capsys):
    """A set --memory-limit is part of each cell's key: the plan must use it, or it lists other keys and would run
    again every cell that a --resume with the same limit skips; and a bad limit is refused before the plan."""
    monkeypatch.setattr(sweep_module, "supervise", _fake_supervise([]))
    m = tiny_matrix(rows_file, tokenizer_dir)
    run_sweep(m.with_memory_limit("6GiB"), out=tmp_path / "set")
    (tmp_path / "m.yaml").write_text(json.dumps(m.document))
    capsys.readouterr()
    argv = ["run", str(tmp_path / "m.yaml"), "--out", str(tmp_path / "set"), "--resume", "--dry-run"]
    assert cli.main([*argv, "--memory-limit", "6GiB"]) == 0
    out = capsys.readouterr().err
    assert out.count("skip") == 3 and " run " not in out
    assert cli.main([*argv, "--memory-limit", "plenty"]) == 2
    assert "--memory-limit" in capsys.readouterr().err


BAD_DATASETS = {
    "missing columns": ("chat.jsonl", '{"prompt": "hi", "completion": "hello"}\n', r"lacks column\(s\) instruction"),
    "empty": ("empty.jsonl", "", "has no rows|could not read"),
    "not utf-8": ("latin.jsonl", b'{"instruction": "caf\xe9", "output": "x"}\n', "not UTF-8 text: byte 20"),
    "utf-16": ("wide.json", '[{"instruction": "a", "output": "b"}]'.encode("utf-16"), "is UTF-16 text"),
    "broken json": ("broken.json", '[{"instruction": "a", "output": ', "not valid JSON: line 1, column 33: Expecting"),
    "not parquet": ("rows.parquet", b"instruction,output\na,b\n", r"is not a Parquet file: it starts with b'inst'"),
    "broken jsonl line": ("lines.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": \n', "line 2"),
    "null fields": ("nulls.jsonl", '{"instruction": null, "output": "x"}\n', "row 1: instruction is null"),
    "wrong field types": ("types.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": 5, "output": null}\n',
                          r"row 2: instruction is an integer \(5\), not text and output is null \(1 row"),
    "a list of lists": ("lists.json", '[["a", "b"]]', "item 1 is a list, not an object"),
    "a bare null": ("null.json", "null", "holds a JSON null, not a list of rows"),  # crashed pyarrow (SIGSEGV)
    "a list of nulls": ("nulls.json", "[null]", "item 1 is a null, not an object"),
    "header-only csv": ("header.csv", "instruction,input,output\n", "has no rows"),
    "glob characters": ("rows [v2]*.jsonl", None, None),  # not an error: it loads
}


@pytest.mark.parametrize("case", list(BAD_DATASETS))
def test_malformed_datasets_get_one_message_naming_the_file(case, tmp_path, rows_file):
    from harness.cell.data import load_rows

    name, content, message = BAD_DATASETS[case]
    path = tmp_path / name
    if content is None:
        path.write_bytes(rows_file.read_bytes())
        assert len(load_rows(str(path))) > 0
        return
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(XeonftError, match=message) as err:
        load_rows(str(path))
    assert name in str(err.value)


def test_corrupt_models_and_local_paths_that_do_not_exist_are_named(tmp_path, tokenizer_dir):
    import torch

    from harness.cell.data import load_rows
    from harness.cell.models import resolve_model

    folder = tmp_path / "model dir [copy]"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    with pytest.raises(XeonftError, match=r"model dir \[copy\]': config.json is not valid JSON: line 1, column 2"):
        resolve_model(str(folder), torch.float32, tokenizer=str(tokenizer_dir))
    (folder / "config.json").write_text('{"hidden_size": 8}')
    with pytest.raises(XeonftError, match="names no model_type or architectures"):
        resolve_model(str(folder), torch.float32, tokenizer=str(tokenizer_dir))
    for content, problem in ((b"GGUF" + b"\0" * 64, "has GGUF version 0 at byte 4"),
                             (b"PK\x03\x04 a zip file", r"is not a GGUF file: it starts with b.PK"),
                             (b"GGUF\x03\0", "is truncated: 6 bytes")):
        fake = tmp_path / "fake.gguf"
        fake.write_bytes(content)
        with pytest.raises(XeonftError, match=rf"model file '.*fake\.gguf' {problem}"):
            resolve_model(str(fake), torch.float32, tokenizer=str(tokenizer_dir))
    with pytest.raises(XeonftError, match="dataset file not found"):
        load_rows("./data/rows")  # looks local: never a Hub lookup


def test_a_worker_killed_mid_step_is_recorded_with_its_true_cause(rows_file, tokenizer_dir, tmp_path):
    """Someone SIGKILLs the cell's process: the record says SIGKILL, and not 'oom' without the kernel's word."""
    import threading

    m = tiny_matrix(rows_file, tokenizer_dir, axes={"precision": ["fp32"]}, exclude=[],
                    measure={"warmup_steps": 1, "steps": 400}, timeout_s=120)
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set():
            for p in _cells_of(str(tmp_path / "k")) or _cells_of("xeonft-launch"):
                with contextlib.suppress(psutil.Error):
                    if p.cpu_times().user > 3:  # well into its steps
                        p.kill()
                        return
            time.sleep(0.2)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        store = run_sweep(m, out=tmp_path / "k")
    finally:
        stop.set()
    (record,) = store.records()
    assert record.status in ("failed", "oom") and "SIGKILL" in (record.reason or "")
    if record.status == "oom":
        assert "memory.events" in record.reason
    assert not _cells_of("xeonft-launch")


def test_a_timed_out_two_rank_cell_leaves_no_rank_behind(rows_file, tokenizer_dir, tmp_path):
    m = tiny_matrix(rows_file, tokenizer_dir, axes={"ranks": [2], "inject_fault": ["hang"]}, exclude=[],
                    measure={"warmup_steps": 1, "steps": 2}, timeout_s=25)
    m = m.model_copy(update={"cells": [c.model_copy(update={"config": c.config.model_copy(update={"threads": None})})
                                       for c in m.cells]})
    store = run_sweep(m, out=tmp_path / "t")
    (record,) = store.records()
    assert record.status == "timeout"
    time.sleep(1)
    assert not _cells_of("xeonft-launch"), "a rank outlived its timed-out cell"


def test_cache_prune_removes_only_what_can_be_rebuilt(capsys):
    from harness.cell.assets import cache_dir

    root = cache_dir()
    for folder in ("inductor/default/aa", "envs/seed.building/bin", "envs/seed/bin", "models/m"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "blob").write_bytes(b"x" * 2**20)
    assert cli.main(["cache", "prune"]) == 0
    assert "freed 2 MiB" in capsys.readouterr().out
    assert not (root / "inductor").exists() and not (root / "envs/seed.building").exists()
    assert (root / "envs/seed/bin/blob").is_file() and (root / "models/m/blob").is_file()

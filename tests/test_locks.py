"""The result-set and machine locks, exercised across real processes (plain python, no torch)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.base.errors import XeonftError
from harness.launch.lifeline import kill_tree
from harness.launch.locks import MACHINE_LOCK_DEFAULT, MACHINE_LOCK_VAR, LockHeld, MachineLock, ResultSetLock

# argv: kind (result | machine), path, seconds to hold (0: take and let go at once, reporting the outcome), and
# optionally "spawn": start a sleeping child (close_fds=False, like a cell) while holding, and print its pid first
LOCKER = """
import subprocess, sys, time
from harness.base.errors import XeonftError
from harness.launch.locks import MachineLock, ResultSetLock
kind, path, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
lock = ResultSetLock(path) if kind == "result" else MachineLock(wait=False, path=path)
try:
    with lock:
        if sys.argv[4:] == ["spawn"]:
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], close_fds=False)
            print(child.pid, end=" ")
        print("held", flush=True)
        time.sleep(hold)
except XeonftError as err:
    print(err, flush=True)
    sys.exit(err.exit_code)
"""


@pytest.fixture
def procs():
    """Processes a test starts; whatever is still running at the end is killed, tree and all."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            kill_tree(proc.pid)
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def read_line(proc: subprocess.Popen, timeout: float = 10) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no output from the child"
    return proc.stdout.readline().strip()


def hold(procs: list[subprocess.Popen], kind: str, path: Path, seconds: float = 60,
         *extra: str) -> tuple[subprocess.Popen, str]:
    """A process holding the lock, and the line it printed once it held it."""
    proc = subprocess.Popen([sys.executable, "-c", LOCKER, kind, str(path), str(seconds), *extra],
                            stdout=subprocess.PIPE, text=True)
    procs.append(proc)
    line = read_line(proc)
    assert line.endswith("held"), "the holder did not take the lock"
    return proc, line


def try_lock(kind: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LOCKER, kind, str(path), "0"], capture_output=True, text=True,
                          timeout=20)


def test_result_set_lock_refuses_another_process_then_allows(tmp_path):
    folder = tmp_path / "results" / "x"
    with ResultSetLock(folder):
        info = json.loads((folder / ".lock").read_text())
        assert info["pid"] == os.getpid() and info["host"] and info["started"]
        second = try_lock("result", folder)
        assert second.returncode == 2
        assert f"result set '{folder}'" in second.stdout and f"pid {os.getpid()}" in second.stdout
        assert "--out" in second.stdout
    third = try_lock("result", folder)
    assert third.returncode == 0 and "held" in third.stdout


def test_result_set_lock_refuses_in_process_with_holder(tmp_path):
    with ResultSetLock(tmp_path), pytest.raises(LockHeld) as err, ResultSetLock(tmp_path):
        pass
    assert isinstance(err.value, XeonftError) and err.value.exit_code == 2
    assert err.value.holder["pid"] == os.getpid()


def test_lock_of_a_killed_process_does_not_block(tmp_path, procs):
    holder, _ = hold(procs, "result", tmp_path)
    assert try_lock("result", tmp_path).returncode == 2
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == holder.pid  # the stale file is still there
    with ResultSetLock(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()


def test_machine_lock_without_waiting_names_the_holder(tmp_path, procs):
    path = tmp_path / "bench.lock"
    holder, _ = hold(procs, "machine", path)
    with pytest.raises(LockHeld) as err, MachineLock(wait=False, path=path):
        pass
    message = str(err.value)
    assert f"pid {holder.pid}" in message and "MachineLock(wait=False" in message  # its command line
    assert err.value.holder["pid"] == holder.pid


def test_machine_lock_path_comes_from_argument_env_or_default(tmp_path, monkeypatch):
    monkeypatch.delenv(MACHINE_LOCK_VAR, raising=False)
    assert str(MachineLock().path) == MACHINE_LOCK_DEFAULT == "/tmp/xeonft-bench.lock"
    monkeypatch.setenv(MACHINE_LOCK_VAR, str(tmp_path / "env.lock"))
    assert MachineLock().path == tmp_path / "env.lock"
    assert MachineLock(path=tmp_path / "arg.lock").path == tmp_path / "arg.lock"
    with MachineLock(wait=False):  # the environment's file, not /tmp's
        assert (tmp_path / "env.lock").is_file()


def test_machine_lock_waits_for_the_holder_calling_on_wait_once(tmp_path, procs):
    path = tmp_path / "bench.lock"
    holder, _ = hold(procs, "machine", path, seconds=1.0)
    calls: list[dict] = []
    t0 = time.monotonic()
    with MachineLock(wait=True, on_wait=calls.append, poll_s=0.05, timeout_s=15, path=path):
        waited = time.monotonic() - t0
        assert holder.wait(timeout=5) == 0  # it had to let go first
    assert len(calls) == 1 and calls[0]["pid"] == holder.pid and calls[0]["command"]
    assert 0.3 < waited < 10


def test_machine_lock_wait_gives_up_after_timeout(tmp_path, procs):
    path = tmp_path / "bench.lock"
    holder, _ = hold(procs, "machine", path)
    calls: list[dict] = []
    t0 = time.monotonic()
    with pytest.raises(LockHeld, match=f"still held after .* s by .*pid {holder.pid}"), \
            MachineLock(wait=True, on_wait=calls.append, poll_s=0.05, timeout_s=0.3, path=path):
        pass
    assert 0.3 <= time.monotonic() - t0 < 5
    assert len(calls) == 1


@pytest.mark.parametrize("kind", ["result", "machine"])
def test_an_orphaned_child_does_not_keep_the_lock(tmp_path, procs, kind):
    """O_CLOEXEC: a cell started while the lock is held (even with close_fds=False) does not share it, so when its
    launcher is SIGKILLed the lock goes with the launcher while the orphaned cell sleeps on."""
    path = tmp_path / "bench.lock" if kind == "machine" else tmp_path
    holder, line = hold(procs, kind, path, 60, "spawn")
    child = psutil.Process(int(line.split()[0]))
    try:
        assert try_lock(kind, path).returncode == 2
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        third = try_lock(kind, path)
        assert third.returncode == 0 and "held" in third.stdout
        assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE  # still there, without the lock
    finally:
        with contextlib.suppress(psutil.Error):
            child.kill()


def test_lock_descriptor_is_close_on_exec(tmp_path):
    with ResultSetLock(tmp_path) as lock:
        assert lock._fd is not None and fcntl.fcntl(lock._fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC

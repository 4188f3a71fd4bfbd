"""Parent-death signals through exec chains, SIGTERM/SIGHUP as Ctrl-C, and kill_tree across sessions (plain
python processes only, no torch)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.launch.lifeline import chain_preexec, die_with_parent, kill_tree, termination_as_interrupt

# The cell stand-in: writes its pid (atomically) to argv[1], then sleeps.
SLEEPER = """
import os, sys, time
tmp = sys.argv[1] + ".tmp"
with open(tmp, "w") as f:
    f.write(str(os.getpid()))
os.replace(tmp, sys.argv[1])
time.sleep(60)
"""

# The launcher stand-in: argv = guard (1: die_with_parent in the preexec_fn), the cell's command as JSON.
LAUNCHER = """
import functools, json, os, subprocess, sys, time
from harness.launch.lifeline import chain_preexec, die_with_parent
guard, cmd = sys.argv[1] == "1", json.loads(sys.argv[2])
bind = lambda: os.sched_setaffinity(0, os.sched_getaffinity(0))  # an existing preexec_fn, as the supervisor's
parent = os.getpid()
guarded = functools.partial(die_with_parent, parent) if guard else None
subprocess.Popen(cmd, start_new_session=True, preexec_fn=chain_preexec(guarded, bind))
time.sleep(60)
"""

# A worker that protects itself (as each torchrun rank would), then execs on through sh, as bind_rank execs numactl.
WORKER = """
import os, sys
from harness.cell.lifeline import install_in_worker
install_in_worker()
os.execv("/bin/sh", ["sh", "-c", 'exec "$0" -c "$1" "$2"', sys.executable, sys.argv[1], sys.argv[2]])
"""


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def read_pid(path: Path, timeout: float = 10.0) -> int:
    assert wait_until(path.is_file, timeout), "the cell never wrote its pid"
    return int(path.read_text())


def kill_marked(path: Path) -> None:
    """Kill the process whose pid is in `path` if its command line still names `path` (so never a reused pid)."""
    with contextlib.suppress(ValueError, OSError, psutil.Error):
        proc = psutil.Process(int(path.read_text()))
        if str(path) in proc.cmdline():
            proc.kill()


def chain(name: str, pidfile: Path) -> list[str]:
    """The cell's command line: python reached through exec (sh, numactl), or a worker that guards itself."""
    if name == "numactl":
        return ["numactl", "--physcpubind=0", sys.executable, "-c", SLEEPER, str(pidfile)]
    if name == "install_in_worker":
        return [sys.executable, "-c", WORKER, SLEEPER, str(pidfile)]
    return ["/bin/sh", "-c", 'exec "$0" -c "$1" "$2"', sys.executable, SLEEPER, str(pidfile)]


@pytest.mark.parametrize("name", [
    "sh",
    pytest.param("numactl", marks=pytest.mark.skipif(shutil.which("numactl") is None, reason="numactl not on PATH")),
    "install_in_worker",
])
def test_cell_dies_with_its_launcher_through_an_exec_chain(tmp_path, name):
    pidfile = tmp_path / "cell.pid"
    guard = "0" if name == "install_in_worker" else "1"  # that one guards itself, nothing from the launcher
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, guard, json.dumps(chain(name, pidfile))])
    try:
        pid = read_pid(pidfile)
        cell = psutil.Process(pid)
        assert cell.ppid() == launcher.pid and "-c" in cell.cmdline()  # the chain exec'd down to python, same pid
        assert os.getsid(pid) == pid  # its own session: the launcher's terminal signals would not reach it
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=10)
        assert wait_until(lambda: gone(pid)), "the cell outlived its launcher"
    finally:
        kill_marked(pidfile)
        if launcher.poll() is None:
            kill_tree(launcher.pid)
        launcher.wait(timeout=10)


def test_without_the_guard_the_cell_outlives_its_launcher(tmp_path):
    """The control: the same chain without die_with_parent is orphaned, so the test above measures the guard."""
    pidfile = tmp_path / "cell.pid"
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, "0", json.dumps(chain("sh", pidfile))])
    try:
        pid = read_pid(pidfile)
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=10)
        time.sleep(0.5)
        assert not gone(pid)
    finally:
        kill_marked(pidfile)
        if launcher.poll() is None:
            kill_tree(launcher.pid)
        launcher.wait(timeout=10)


def test_die_with_parent_given_the_wrong_parent_refuses_to_start():
    with pytest.raises(subprocess.SubprocessError):
        subprocess.Popen(["/bin/true"], preexec_fn=functools.partial(die_with_parent, 1))


def test_chain_preexec_runs_in_order_and_skips_none():
    calls: list[str] = []
    chain_preexec(lambda: calls.append("a"), None, lambda: calls.append("b"))()
    assert calls == ["a", "b"]


# A rank whose parent dies before it gets to install_in_worker: it waits to be reparented, notes to whom, then calls it.
LATE_RANK = """
import os, sys, time
first = os.getppid()
while os.getppid() == first:
    time.sleep(0.01)
with open(sys.argv[1], "a") as f:
    f.write(f"reparented to {os.getppid()}\\n")
from harness.cell.lifeline import install_in_worker
install_in_worker()
with open(sys.argv[1], "a") as f:
    f.write("survived\\n")
"""
SHORT_PARENT = """
import subprocess, sys, time
print(subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], start_new_session=True).pid, flush=True)
time.sleep(0.5)
"""


def test_install_in_worker_kills_a_worker_already_orphaned(tmp_path):
    log = tmp_path / "rank.log"
    out = subprocess.run([sys.executable, "-c", SHORT_PARENT, LATE_RANK, str(log)], capture_output=True, text=True,
                         timeout=20).stdout
    rank = psutil.Process(int(out))
    try:
        finished = wait_until(lambda: gone(rank.pid))
        text = log.read_text() if log.is_file() else ""
        if text.startswith("reparented to") and "reparented to 1\n" not in text:
            pytest.skip(f"orphans here go to a subreaper ({text.split()[2]}), not pid 1")
        assert finished and text == "reparented to 1\n"  # it killed itself instead of training as an orphan
    finally:
        with contextlib.suppress(psutil.Error):
            rank.kill()


# argv: the signal's name. Sleeps inside the context; on the signal, cleans up (ignoring a second signal), and
# reports how it left. The signal starts at its default: an inherited SIG_IGN (nohup) would rightly stay ignored.
INTERRUPTIBLE = """
import os, signal, sys, time
from harness.launch.lifeline import termination_as_interrupt
sig = getattr(signal, sys.argv[1])
signal.signal(sig, signal.SIG_DFL)  # as a terminal gives it: the suite itself may run under nohup (SIGHUP ignored)
try:
    with termination_as_interrupt():
        try:
            print("ready", flush=True)
            time.sleep(30)
        except KeyboardInterrupt:
            os.kill(os.getpid(), sig)  # a second one, during the cleanup: ignored
            time.sleep(0.1)
            print("cleaned up", flush=True)
            raise
except KeyboardInterrupt as err:
    print(f"interrupted: {err}; handler restored: {signal.getsignal(sig) == signal.SIG_DFL}", flush=True)
    sys.exit(130)
print("not interrupted")
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_termination_signals_take_the_ctrl_c_path(name):
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTIBLE, name], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready and proc.stdout.readline().strip() == "ready"
        proc.send_signal(getattr(signal, name))
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 130
        assert out.splitlines() == ["cleaned up", f"interrupted: {name} received; handler restored: True"]
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def test_termination_as_interrupt_restores_handlers_and_keeps_nohup():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup: a closed session must not stop the run
        with termination_as_interrupt():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert callable(signal.getsignal(signal.SIGTERM))
            with pytest.raises(KeyboardInterrupt, match="SIGTERM received"):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
        assert signal.getsignal(signal.SIGTERM) == before[signal.SIGTERM]
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


# Starts a grandchild in its own session (as torchrun starts a rank) and a daemonised great-grandchild that stays
# in this process group but is no descendant any more; prints both pids, then sleeps.
TREE = """
import subprocess, sys, time
sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
rank = subprocess.Popen(sleep, start_new_session=True)
quiet = "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL"  # so the run below is not kept waiting on its pipes
spawn = f"import subprocess, sys; print(subprocess.Popen(sys.argv[1:], {quiet}).pid)"
stray = int(subprocess.run([sys.executable, "-c", spawn, *sleep], capture_output=True, text=True).stdout)
print(rank.pid, stray, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_kill_tree_reaches_other_sessions_and_the_group(sig):
    top = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True, start_new_session=True)
    others: list[psutil.Process] = []
    try:
        assert top.stdout is not None
        ready, _, _ = select.select([top.stdout], [], [], 10)
        assert ready
        rank, stray = (int(p) for p in top.stdout.readline().split())
        others = [psutil.Process(rank), psutil.Process(stray)]
        assert os.getsid(rank) == rank != os.getsid(top.pid)  # killpg(top) alone would miss the rank
        assert os.getpgid(stray) == top.pid and stray not in {c.pid for c in psutil.Process(top.pid).children(True)}
        killed = kill_tree(top.pid, sig, timeout=5)
        assert {top.pid, rank, stray} <= set(killed)
        assert gone(rank) and gone(stray)
        assert top.wait(timeout=5) == -sig  # not reaped by kill_tree: Popen still sees how it ended
    finally:
        if top.poll() is None:
            kill_tree(top.pid)
        top.wait(timeout=10)
        if top.stdout:
            top.stdout.close()
        for proc in others:
            with contextlib.suppress(psutil.Error):
                proc.kill()


def test_kill_tree_of_a_finished_process_signals_nothing():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=10)
    assert kill_tree(proc.pid) == []

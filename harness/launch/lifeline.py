"""Tie a cell's processes to the launcher's life, so nothing keeps burning (and disturbing) cores after it is gone.

A cell runs in its own session (start_new_session=True), out of reach of the terminal's signals, so when the
launcher is SIGKILLed, OOM-killed or loses its SSH session, nothing would stop the cell. Linux's parent-death
signal (prctl PR_SET_PDEATHSIG) fixes that: the kernel sends the chosen signal to a process when its parent dies.
It survives execve() of ordinary (not setuid/setgid, no file capabilities) programs, so it set in a preexec_fn still
holds after `numactl ... python -m harness.cell.worker` has exec'd twice; it is not inherited across fork(), so each
torchrun rank sets its own (`install_in_worker`). Caveat: "parent" is the *thread* that forked; Popen must be called
from a thread that outlives the child (the launcher's main thread does).

`termination_as_interrupt` routes a scheduler's SIGTERM or a hang-up through the launcher's Ctrl-C path, and
`kill_tree` reaches processes that left the cell's process group (torchrun puts each rank in its own session).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

import psutil

from harness.cell.lifeline import set_parent_death_signal


def die_with_parent(parent_pid: int) -> None:
    """For a child's preexec_fn: SIGKILL this process when `parent_pid` (the launcher, `os.getpid()` taken *before*
    Popen) dies. The setting survives the exec chain (numactl, python); see the module's note on setuid programs.

    If the parent died before prctl took effect, the child has already been reparented and would never get the
    signal: the getppid() check catches that and fails the preexec_fn, so the child exits before exec. A wrong
    `parent_pid` (e.g. os.getpid() evaluated inside the child) fails the same way, loudly: Popen raises
    SubprocessError in the launcher.
    """
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent_pid:
        raise RuntimeError(f"parent {parent_pid} is gone (now {os.getppid()}): not starting an orphan")


def chain_preexec(*fns: Callable[[], object] | None) -> Callable[[], None]:
    """One preexec_fn that runs each of `fns` in order (None entries skipped), for Popen's single slot."""
    steps = [f for f in fns if f is not None]

    def run() -> None:
        for f in steps:
            f()

    return run


@contextlib.contextmanager
def termination_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise KeyboardInterrupt("SIGTERM received") in the main thread, so a
    scheduler's stop or a closed SSH session takes the Ctrl-C path (kill the cell's tree, write nothing half-done,
    remove temporary folders) instead of dying on the spot with the cell left running.

    Only the first such signal raises; repeats are ignored until the block is left, so the cleanup is not itself
    interrupted. A signal already ignored (SIG_IGN, e.g. SIGHUP under nohup) stays ignored. The previous handlers
    come back on exit. Outside the main thread (where Python cannot set handlers) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if fired:
            return
        fired = True
        raise KeyboardInterrupt(f"{signal.Signals(signum).name} received")

    previous: dict[signal.Signals, Callable[[int, FrameType | None], object] | int | None] = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            old = signal.getsignal(sig)
            if old == signal.SIG_IGN:
                continue
            signal.signal(sig, interrupt)
            previous[sig] = old
        yield
    finally:
        for restored, handler in previous.items():
            signal.signal(restored, handler if handler is not None else signal.SIG_DFL)


def _tree(pid: int, group: bool) -> dict[int, psutil.Process]:
    """`pid`, its descendants, and (when `group`) the members of process group `pid`; never this process."""
    found: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        top = psutil.Process(pid)
        found[pid] = top
        for child in top.children(recursive=True):
            found[child.pid] = child
    if group:
        for proc in psutil.process_iter():
            with contextlib.suppress(OSError):
                if proc.pid not in found and os.getpgid(proc.pid) == pid:
                    found[proc.pid] = proc
    found.pop(os.getpid(), None)
    return found


def _signal(proc: psutil.Process, sig: int) -> None:
    with contextlib.suppress(psutil.Error):
        proc.send_signal(sig)  # checks the pid was not reused since `proc` was looked up


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def kill_tree(pid: int, sig: int = signal.SIGKILL, timeout: float = 10) -> list[int]:
    """Send `sig` to `pid`, every descendant and, if `pid` leads a process group, that whole group; wait up to
    `timeout` s for them to end; return the pids signalled (sorted).

    Killing the cell's process group is not enough for DDP cells: torchrun starts each rank in its own session. The
    tree is found with psutil *before* anything dies (a dead parent's children are reparented and can no longer be
    found), and frozen with SIGSTOP while it is gathered, so nothing forks a process that escapes. It never reaps:
    call it before Popen.wait() (which then still returns the real exit status, and keeps the pid from being reused).
    """
    if pid <= 0 or pid == os.getpid():
        raise ValueError(f"refusing to kill_tree({pid})")
    try:
        group = os.getpgid(pid) == pid
    except ProcessLookupError:
        group = True  # reaped, but a group named after it can only be its own (the kernel keeps the id reserved)
    group = group and os.getpgid(0) != pid  # never our own group
    seen: dict[int, psutil.Process] = {}
    try:
        for _ in range(5):  # freeze, look again for anything forked meanwhile, until nothing new turns up
            new = {p: proc for p, proc in _tree(pid, group).items() if p not in seen}
            if not new:
                break
            for proc in new.values():
                _signal(proc, signal.SIGSTOP)
            seen.update(new)
        for proc in seen.values():
            _signal(proc, sig)
        if group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
    finally:
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # let them act on the signal (SIGKILL needs no help)
            for proc in seen.values():
                _signal(proc, signal.SIGCONT)
    deadline = time.monotonic() + timeout
    waiting = list(seen.values())
    while waiting and time.monotonic() < deadline:
        waiting = [proc for proc in waiting if not _gone(proc)]
        if waiting:
            time.sleep(0.02)
    return sorted(seen)

"""Locks that keep two xeonft runs apart: one per result set (two writers would interleave records) and one per
machine (two sweeps timing on the same cores would both measure noise).

Both are `flock(2)` locks on a small file that also names the holder (pid, host, start time, command line). The
kernel drops an flock when the last descriptor of its open file goes away, so a run killed with SIGKILL never
leaves a stale lock behind; the file itself stays (it is never unlinked: unlinking would let two runs lock two
different files of the same name). The descriptor is opened with O_CLOEXEC, so the cell processes a run starts
(numactl, python, torchrun) never inherit it and an orphaned cell cannot keep the lock. A child made by a bare
`os.fork()` without exec (multiprocessing's fork start method) would share it: the launcher does not do that.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import psutil

from harness.base.errors import XeonftError

LOCK_NAME = ".lock"
MACHINE_LOCK_VAR = "XEONFT_MACHINE_LOCK"
MACHINE_LOCK_DEFAULT = "/tmp/xeonft-bench.lock"

# A new holder truncates the file and then writes its details: a reader that lands in between sees an empty file
# (or, for an instant after a SIGKILLed holder, the dead holder's details). It looks again for this long.
_SETTLE_S = 0.5

_L = TypeVar("_L", bound="_FileLock")


class LockHeld(XeonftError):
    """Another process holds the lock; `holder` is what it wrote (pid, host, started, command; values may be None)."""

    def __init__(self, message: str, holder: dict[str, Any]) -> None:
        super().__init__(message)
        self.holder = holder


def _open_lock_file(path: Path) -> int:
    """Open (creating if needed) the lock file without following another user's O_CREAT rules.

    O_CREAT on an existing file someone else owns in a sticky directory such as /tmp is refused when
    fs.protected_regular is set, so the file is opened first and created (world-writable, for a machine-wide lock)
    only when missing. A file we may not write is opened read-only: flock still works, the holder's details do not.
    """
    flags = os.O_CLOEXEC | os.O_NOCTTY
    for _ in range(10):
        try:
            return os.open(path, os.O_RDWR | flags)
        except FileNotFoundError:
            pass
        except PermissionError:
            return os.open(path, os.O_RDONLY | flags)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | flags, 0o666)
        except FileExistsError:
            continue  # someone created it between the two opens: open theirs
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)  # the umask narrowed it; other users of the machine must be able to lock it too
        return fd
    raise OSError(errno.EAGAIN, f"cannot open the lock file {path}")


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _my_info() -> dict[str, Any]:
    try:
        command = " ".join(psutil.Process().cmdline())
    except psutil.Error:
        command = None
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": command}


def _write_info(fd: int, info: dict[str, Any]) -> None:
    """Replace the file's contents with our details (only ever called while holding the lock)."""
    with contextlib.suppress(OSError):  # a read-only descriptor: the lock still holds, the details are missing
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)


def _read_info(fd: int) -> dict[str, Any] | None:
    """The holder's details, or None while they are missing, half written, or those of a dead process here."""
    try:
        data = json.loads(os.pread(fd, 65536, 0) or b"null")
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return None
    if data.get("host") == socket.gethostname() and not psutil.pid_exists(data["pid"]):
        return None
    return {"pid": data["pid"], "host": data.get("host"), "started": data.get("started"),
            "command": data.get("command")}


def _acquire_or_holder(fd: int) -> dict[str, Any] | None:
    """Take the lock (None) or return the holder's details, looking again while they are still being written."""
    deadline = time.monotonic() + _SETTLE_S
    while True:
        if _try_flock(fd):
            return None
        info = _read_info(fd)
        if info is not None:
            return info
        if time.monotonic() >= deadline:
            return {"pid": None, "host": None, "started": None, "command": None}
        time.sleep(0.02)


def _describe(info: dict[str, Any], command: bool) -> str:
    parts = [f"pid {info['pid'] if info['pid'] is not None else '?'}"]
    if info.get("host") and info["host"] != socket.gethostname():
        parts[0] += f" on {info['host']}"
    if command and info.get("command"):
        parts.append(f"`{info['command']}`")
    if info.get("started"):
        parts.append(f"since {info['started']}")
    return ", ".join(parts)


class _FileLock:
    """An exclusive flock on one file, held between __enter__ and __exit__ (or acquire and release)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        raise NotImplementedError

    def _open(self) -> int:
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this object")
        return _open_lock_file(self.path)

    def _take(self, fd: int) -> None:
        _write_info(fd, _my_info())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the kernel would too, at exit); the file stays, emptied so nobody reads stale details."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self: _L) -> _L:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class ResultSetLock(_FileLock):
    """One writer per result set: `<folder>/.lock`, taken at once or refused with the holder's pid.

    Use: `with ResultSetLock(out): ...` around everything that writes the folder (created if missing).
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = folder
        super().__init__(Path(folder) / LOCK_NAME)

    def acquire(self) -> None:
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        fd = self._open()
        try:
            holder = _acquire_or_holder(fd)
        except BaseException:
            os.close(fd)
            raise
        if holder is not None:
            os.close(fd)
            raise LockHeld(f"result set '{self.folder}' is being written by another xeonft run "
                           f"({_describe(holder, command=False)}); wait for it or use --out", holder)
        self._take(fd)


class MachineLock(_FileLock):
    """One benchmark at a time on this machine, so two sweeps never time on the same cores at once.

    The file is `path`, else $XEONFT_MACHINE_LOCK, else /tmp/xeonft-bench.lock. With wait=False a held lock is
    refused at once (LockHeld, an XeonftError naming the holder's pid and command); with wait=True `on_wait` is
    called once with the holder's details and the lock is tried again every `poll_s` seconds, until it is taken
    or `timeout_s` (None: no limit) has passed (LockHeld again). Ctrl-C while waiting just interrupts.
    """

    def __init__(self, wait: bool = True, on_wait: Callable[[dict[str, Any]], None] | None = None,
                 poll_s: float = 1.0, timeout_s: float | None = None,
                 path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(Path(path or os.environ.get(MACHINE_LOCK_VAR) or MACHINE_LOCK_DEFAULT))
        self.wait, self.on_wait, self.poll_s, self.timeout_s = wait, on_wait, poll_s, timeout_s

    def _refuse(self, holder: dict[str, Any], waited: float | None) -> LockHeld:
        what = f"still held after {waited:.1f} s" if waited is not None else "held"
        return LockHeld(f"the machine's benchmark lock {self.path} is {what} by another benchmark "
                        f"({_describe(holder, command=True)}): two runs would time on the same cores; "
                        "wait for it or stop it", holder)

    def acquire(self) -> None:
        fd = self._open()
        try:
            holder = _acquire_or_holder(fd)
            if holder is not None:
                if not self.wait:
                    raise self._refuse(holder, None)
                if self.on_wait is not None:
                    self.on_wait(holder)
                t0 = time.monotonic()
                while not _try_flock(fd):
                    waited = time.monotonic() - t0
                    if self.timeout_s is not None and waited >= self.timeout_s:
                        raise self._refuse(_read_info(fd) or holder, waited)
                    pause = self.poll_s if self.timeout_s is None else min(self.poll_s, self.timeout_s - waited)
                    time.sleep(max(pause, 0.0))
        except BaseException:
            os.close(fd)
            raise
        self._take(fd)

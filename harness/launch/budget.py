"""A memory budget for one cell's whole process tree, so that probing for the largest batch never swaps or takes
down the host (a CPU OOM is the host's, not a device's).

The kernel enforces it where xeonft may create a cgroup: v2 (`memory.max`, `memory.swap.max` 0) or v1
(`memory.limit_in_bytes`, and `memory.memsw.limit_in_bytes` so swap cannot stretch it); its OOM killer then takes
the cell and the cgroup counts the kill. Elsewhere the launcher's sampler enforces it: the tree's RSS, read at
10 Hz, crossing the budget stops the tree (a fast allocation can overshoot by what it grows in 0.1 s).
`XEONFT_MEMORY_CAP=sampler` forces the sampler (tests use it to check both ways on one machine).

This module reads cgroups for the launcher: which cgroup this process is in (v2 or v1) and a cgroup's OOM-kill
count; `harness.launch.oom` asks it.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def _memberships(proc_cgroup: Path) -> list[tuple[str, list[str], str]]:
    """/proc/self/cgroup's lines ('id:controllers:/path') as (id, controllers, path); none where it is unreadable."""
    try:
        text = proc_cgroup.read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        out.append((hierarchy, [c for c in controllers.split(",") if c], path.lstrip("/")))
    return out


def v2_folder(proc_cgroup: Path = PROC_CGROUP) -> Path | None:
    """This process's cgroup on the v2 (unified) hierarchy ('0::/path'), where /sys/fs/cgroup is one."""
    for hierarchy, controllers, path in _memberships(proc_cgroup):
        if hierarchy == "0" and not controllers and (CGROUP_ROOT / "cgroup.controllers").is_file():
            return CGROUP_ROOT / path
    return None


def v1_memory_folder(proc_cgroup: Path = PROC_CGROUP) -> Path | None:
    """This process's memory cgroup on a v1 hierarchy ('N:memory:/path')."""
    for _, controllers, path in _memberships(proc_cgroup):
        if "memory" in controllers:
            folder = CGROUP_ROOT / "memory" / path
            # inside a container the hierarchy may be mounted at the container's own cgroup
            return folder if folder.is_dir() else CGROUP_ROOT / "memory"
    return None


def oom_kill_count(events: Path) -> int | None:
    """The `oom_kill` count of a cgroup's events file (v2 memory.events, v1 memory.oom_control); None where the
    file cannot be read or has no such line."""
    try:
        for line in events.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


@dataclass
class MemoryCap:
    """One cell's budget. `method` is how it is enforced: cgroup-v2, cgroup-v1 or sampler."""

    limit: int
    method: str = "sampler"
    folder: Path | None = None
    why_sampler: str | None = None  # why no cgroup could be made, in words

    @classmethod
    def open(cls, limit: int, proc_cgroup: Path = PROC_CGROUP) -> MemoryCap:
        """A cgroup for the cell where one can be made, else the sampler's budget."""
        if os.environ.get("XEONFT_MEMORY_CAP") == "sampler":
            return cls(limit, why_sampler="XEONFT_MEMORY_CAP=sampler")
        name = f"xeonft-cell-{os.getpid()}-{time.monotonic_ns()}"
        errors = []
        for method, find, files in (("cgroup-v2", v2_folder, (("memory.max", limit), ("memory.swap.max", 0))),
                                    ("cgroup-v1", v1_memory_folder, (("memory.limit_in_bytes", limit),
                                                                     ("memory.memsw.limit_in_bytes", limit)))):
            try:
                parent = find(proc_cgroup)
                if parent is None:
                    continue
                folder = parent / name
                folder.mkdir()
            except OSError as err:
                errors.append(f"{method}: {err.strerror or err}")
                continue
            try:
                for file, value in files:
                    if (folder / file).exists() or file in ("memory.max", "memory.limit_in_bytes"):
                        (folder / file).write_text(str(value))
                return cls(limit, method=method, folder=folder)
            except OSError as err:
                errors.append(f"{method}: {err.strerror or err}")
                with contextlib.suppress(OSError):
                    folder.rmdir()
        return cls(limit, why_sampler="; ".join(errors) or "no writable memory cgroup here")

    def join(self) -> None:
        """Move the calling process into the cell's cgroup (run in the child before exec: its whole tree follows)."""
        if self.folder is not None:
            (self.folder / "cgroup.procs").write_text(str(os.getpid()))

    def oom_kills(self) -> int | None:
        """How many processes the kernel's OOM killer took in the cell's cgroup (None for the sampler)."""
        if self.folder is None:
            return None
        events = self.folder / ("memory.events" if self.method == "cgroup-v2" else "memory.oom_control")
        kills = oom_kill_count(events)
        if kills is None and self.method == "cgroup-v1" and events.is_file() and self.failures():
            return 0  # a v1 kernel too old to count kills in memory.oom_control
        return kills

    def failures(self) -> int:
        """v1: how often the limit was hit (reclaim included)."""
        with contextlib.suppress(OSError, ValueError):
            return int((self.folder / "memory.failcnt").read_text()) if self.folder else 0
        return 0

    def peak(self) -> int | None:
        """The cgroup's peak charge (anonymous memory and page cache), where the kernel keeps it."""
        if self.folder is None:
            return None
        name = "memory.peak" if self.method == "cgroup-v2" else "memory.max_usage_in_bytes"
        with contextlib.suppress(OSError, ValueError):
            return int((self.folder / name).read_text())
        return None

    def close(self) -> None:
        """Remove the cgroup once its processes are gone (tries for a few seconds; the kernel frees it lazily)."""
        if self.folder is None:
            return
        for _ in range(50):
            try:
                self.folder.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)

    def describe(self) -> str:
        how = {"cgroup-v2": "cgroup v2 memory.max", "cgroup-v1": "cgroup v1 memory limit",
               "sampler": "the launcher's sampler (tree RSS at 10 Hz)"}[self.method]
        return f"{self.limit / 2**30:.2f} GiB, enforced by {how}"

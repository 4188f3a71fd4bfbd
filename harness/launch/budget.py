"""A memory budget for one cell's whole process tree, so that probing for the largest batch never swaps or takes
down the host (a CPU OOM is the host's, not a device's).

The kernel enforces it where xeonft may create a cgroup: v2 (`memory.max`, `memory.swap.max` 0) or v1
(`memory.limit_in_bytes`, and `memory.memsw.limit_in_bytes` so swap cannot stretch it); its OOM killer then takes
the cell and the cgroup counts the kill. Elsewhere the launcher's sampler enforces it: the tree's RSS, read at
10 Hz, crossing the budget stops the tree (a fast allocation can overshoot by what it grows in 0.1 s).
`XEONFT_MEMORY_CAP=sampler` forces the sampler (tests use it to check both ways on one machine).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
def _v1_folder(proc_cgroup: Path) -> Path | None:
    """This process's memory cgroup on a v1 hierarchy ('N:memory:/path' in /proc/self/cgroup)."""
    for line in proc_cgroup.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            folder = CGROUP_ROOT / "memory" / path.lstrip("/")
            # inside a container the hierarchy may be mounted at the container's own cgroup
            return folder if folder.is_dir() else CGROUP_ROOT / "memory"
    return None


def _v2_folder(proc_cgroup: Path) -> Path | None:
    for line in proc_cgroup.read_text().splitlines():
        if line.startswith("0::") and (CGROUP_ROOT / "cgroup.controllers").is_file():
            return CGROUP_ROOT / line[3:].lstrip("/")
    return None


@dataclass
class MemoryCap:
    """One cell's budget. `method` is how it is enforced: cgroup-v2, cgroup-v1 or sampler."""

    limit: int
    method: str = "sampler"
    folder: Path | None = None
    why_sampler: str | None = None  # why no cgroup could be made, in words

    @classmethod
    def open(cls, limit: int, proc_cgroup: Path = Path("/proc/self/cgroup")) -> MemoryCap:
        """A cgroup for the cell where one can be made, else the sampler's budget."""
        if os.environ.get("XEONFT_MEMORY_CAP") == "sampler":
            return cls(limit, why_sampler="XEONFT_MEMORY_CAP=sampler")
        name = f"xeonft-cell-{os.getpid()}-{time.monotonic_ns()}"
        errors = []
        for method, find, files in (("cgroup-v2", _v2_folder, (("memory.max", limit), ("memory.swap.max", 0))),
                                    ("cgroup-v1", _v1_folder, (("memory.limit_in_bytes", limit),
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
        name = "memory.events" if self.method == "cgroup-v2" else "memory.oom_control"
        try:
            for line in (self.folder / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            return None
        return 0 if self.method == "cgroup-v1" and self.failures() else None

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

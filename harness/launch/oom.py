"""Evidence of the kernel's OOM killer: the OOM-kill count of this process's cgroup (v2 `memory.events`).

A SIGKILL is called "oom" only when that count went up while the cell ran; otherwise someone (a person, a
scheduler, another tool) sent it, and the record says so.
"""

from __future__ import annotations

from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def own_cgroup(proc_cgroup: Path = Path("/proc/self/cgroup")) -> Path | None:
    """This process's cgroup v2 folder ('0::/path' in /proc/self/cgroup), where there is one."""
    try:
        for line in proc_cgroup.read_text().splitlines():
            if line.startswith("0::"):
                return CGROUP_ROOT / line[3:].lstrip("/")
    except OSError:
        return None
    return None


def oom_kills(cgroup: Path | None = None) -> int | None:
    """The cgroup's OOM-kill count so far (None where it cannot be read)."""
    folder = cgroup or own_cgroup()
    if folder is None:
        return None
    try:
        for line in (folder / "memory.events").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None

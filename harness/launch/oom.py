"""Evidence of the kernel's OOM killer: the OOM-kill count of this process's cgroup (v2 `memory.events`).

A SIGKILL is called "oom" only when that count went up while the cell ran; otherwise someone (a person, a
scheduler, another tool) sent it, and the record says so. Reading cgroups is `harness.launch.budget`'s.
"""

from __future__ import annotations

from pathlib import Path

from harness.launch.budget import oom_kill_count, v2_folder


def oom_kills(cgroup: Path | None = None) -> int | None:
    """The OOM-kill count so far of `cgroup`, else of this process's own v2 cgroup (None where it cannot be read)."""
    folder = cgroup or v2_folder()
    return None if folder is None else oom_kill_count(folder / "memory.events")

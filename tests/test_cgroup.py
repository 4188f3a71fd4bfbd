"""Reading cgroups (launch/budget: membership and OOM-kill counts) on fake trees: v2, v1, a container, neither."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.launch import budget
from harness.launch.budget import MemoryCap, oom_kill_count, v1_memory_folder, v2_folder
from harness.launch.oom import oom_kills


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(budget, "CGROUP_ROOT", tmp_path / "cgroup")
    monkeypatch.delenv("XEONFT_MEMORY_CAP", raising=False)
    return tmp_path / "cgroup"


def _proc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proc-self-cgroup"
    path.write_text(text)
    return path


def test_v2_membership_needs_a_unified_hierarchy(root, tmp_path):
    proc = _proc(tmp_path, "0::/user.slice/session-1.scope\n")
    assert v2_folder(proc) is None  # no cgroup.controllers: /sys/fs/cgroup is not a v2 hierarchy
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory\n")
    assert v2_folder(proc) == root / "user.slice/session-1.scope"
    assert v1_memory_folder(proc) is None
    assert v2_folder(tmp_path / "unreadable") is None


def test_v1_membership_finds_the_memory_controller_or_the_containers_mount(root, tmp_path):
    proc = _proc(tmp_path, "12:cpu,cpuacct:/a\n7:memory:/docker/abc\n0::/\n")
    assert v1_memory_folder(proc) == root / "memory"  # the container's own cgroup is mounted at the top
    (root / "memory" / "docker" / "abc").mkdir(parents=True)
    assert v1_memory_folder(proc) == root / "memory" / "docker" / "abc"
    assert v2_folder(proc) is None


def test_the_oom_kill_count_is_read_one_way_for_the_launcher_and_the_budget(root, tmp_path):
    cell = root / "xeonft-cell"
    cell.mkdir(parents=True)
    (cell / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n")
    assert oom_kill_count(cell / "memory.events") == oom_kills(cell) == 2
    assert MemoryCap(1, method="cgroup-v2", folder=cell).oom_kills() == 2
    (cell / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 5\n")
    assert MemoryCap(1, method="cgroup-v1", folder=cell).oom_kills() == 5
    (cell / "memory.events").write_text("oom_kill many\n")
    assert oom_kill_count(cell / "memory.events") is None and oom_kills(cell / "nowhere") is None
    assert MemoryCap(1).oom_kills() is None  # the sampler's budget has no cgroup


def test_a_cap_opens_in_the_v2_cgroup_it_finds(root, tmp_path):
    (root / "job").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("memory\n")
    cap = MemoryCap.open(2**30, proc_cgroup=_proc(tmp_path, "0::/job\n"))
    assert cap.method == "cgroup-v2" and cap.folder is not None and cap.folder.parent == root / "job"
    assert (cap.folder / "memory.max").read_text() == str(2**30)
    none = MemoryCap.open(2**30, proc_cgroup=_proc(tmp_path, ""))
    assert none.method == "sampler" and none.why_sampler == "no writable memory cgroup here"

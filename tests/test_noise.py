"""Machine state and per-window noise readings: parsed from real-format text and a fake sysfs tree (no torch)."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest

from harness.measure.host import parse_cpulist
from harness.measure.noise import (
    KEYS,
    CpuTimes,
    NoiseWindow,
    busy_cores,
    combine_windows,
    parse_proc_stat,
    steal_share,
)
from harness.measure.system import repeatability_warnings, system_state

PROC_STAT = """\
cpu  5082 0 1765 13850 96 0 21 8 0 0
cpu0 601 0 430 9365 14 0 5 2 0 0
cpu1 4480 0 1335 4485 82 0 16 6 0 0
intr 1205862 0 9 0 0 0 0 0 0 0 0 0
ctxt 2339841
btime 1732900000
processes 3215
procs_running 2
procs_blocked 0
softirq 401234 0 98765 12 3456 0 0 2345 123456 0 172000
"""


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _tree(root: Path, governor: str, no_turbo: int, boost: int, smt: int, thp: str, numa: int,
          load: float, hypervisor: bool, cpus: int = 4) -> Path:
    for cpu in range(cpus):
        _write(root, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor", governor)
    _write(root, "sys/devices/system/cpu/online", f"0-{cpus - 1}")
    _write(root, "sys/devices/system/cpu/intel_pstate/no_turbo", str(no_turbo))
    _write(root, "sys/devices/system/cpu/cpufreq/boost", str(boost))
    _write(root, "sys/devices/system/cpu/smt/active", str(smt))
    _write(root, "sys/devices/system/cpu/smt/control", "on" if smt else "off")
    _write(root, "sys/kernel/mm/transparent_hugepage/enabled", thp)
    _write(root, "proc/sys/kernel/numa_balancing", str(numa))
    _write(root, "proc/loadavg", f"{load} 0.10 0.05 1/300 4242")
    flags = "fpu vme de pse tsc msr avx2 amx_bf16" + (" hypervisor" if hypervisor else "")
    _write(root, "proc/cpuinfo", f"processor\t: 0\nflags\t\t: {flags}\n")
    return root


@pytest.mark.parametrize(("online", "count"), [("0-63,128-191", 128), ("0,2-3", 3), ("5", 1), ("0-x", None)])
def test_the_online_cpu_count_reads_the_kernels_cpu_list(tmp_path: Path, online: str, count: int | None) -> None:
    _write(tmp_path, "sys/devices/system/cpu/online", online)
    assert system_state(tmp_path)["cpu_count"] == count
    if count is not None:  # the same list the topology reads
        assert len(parse_cpulist(online)) == count


def test_parse_proc_stat_reads_the_aggregate_cpu_line() -> None:
    t = parse_proc_stat(PROC_STAT)
    assert t == CpuTimes(user=5082, nice=0, system=1765, idle=13850, iowait=96, irq=0, softirq=21, steal=8)
    assert t.total == 5082 + 1765 + 13850 + 96 + 21 + 8
    with pytest.raises(ValueError):
        parse_proc_stat("cpu0 1 2 3 4\n")


def test_steal_share_and_busy_cores_of_a_synthetic_window() -> None:
    before = CpuTimes(user=1000, system=100, idle=5000, steal=10)
    after = CpuTimes(user=1300, system=200, idle=5500, iowait=0, steal=110)  # +400 busy, +500 idle, +100 steal
    assert steal_share(before, after) == pytest.approx(100 / 1000)
    assert busy_cores(before, after, seconds=2.0, hz=100) == pytest.approx(2.0)
    assert steal_share(before, before) == 0.0


def test_a_noisy_machine_names_every_setting(tmp_path: Path) -> None:
    state = system_state(_tree(tmp_path, "powersave", no_turbo=0, boost=1, smt=1, thp="[always] madvise never",
                               numa=1, load=0.0, hypervisor=False))
    assert state["governors"] == {"powersave": 4}
    assert state["turbo"] is True and state["smt_active"] == 1 and state["thp_enabled"] == "always"
    text = " ".join(repeatability_warnings(state))
    for word in ("powersave", "Turbo/boost", "SMT", "always", "numa_balancing"):
        assert word in text
    assert len(repeatability_warnings(state)) == 5


def test_a_quiet_machine_gives_no_warnings(tmp_path: Path) -> None:
    state = system_state(_tree(tmp_path, "performance", no_turbo=1, boost=0, smt=0, thp="always [madvise] never",
                               numa=0, load=0.9, hypervisor=False))  # load 0.9 stays under the 1.0 floor
    assert state["thp_enabled"] == "madvise" and state["hypervisor"] is False and state["cpu_count"] == 4
    assert repeatability_warnings(state) == []


def test_load_and_hypervisor_rules(tmp_path: Path) -> None:
    state = system_state(_tree(tmp_path, "performance", no_turbo=1, boost=0, smt=0, thp="never", numa=0,
                               load=1.5, hypervisor=True))
    warnings = repeatability_warnings(state)
    assert len(warnings) == 2 and "load" in warnings[0] and "hypervisor" in warnings[1]
    assert repeatability_warnings({**state, "hypervisor": False, "load_avg_1m": 12.0, "cpu_count": 128}) == []


def test_a_missing_tree_reads_as_none_without_warnings(tmp_path: Path) -> None:
    state = system_state(tmp_path / "absent")
    assert all(value is None for value in state.values())
    assert repeatability_warnings(state) == []


def test_noise_window_on_this_machine_is_finite_and_bounded() -> None:
    with NoiseWindow() as window:
        end = time.monotonic() + 0.25
        while time.monotonic() < end:
            pass
    result = window.result
    assert result is not None and set(result) == set(KEYS)
    for key, value in result.items():
        if value is not None:
            assert math.isfinite(value) and value >= 0, key
    assert result["seconds"] is not None and result["seconds"] >= 0.25
    assert result["busy_cores"] is not None
    assert result["busy_cores"] <= (os.cpu_count() or 1) * 1.1 + 0.2


def test_noise_window_with_unreadable_stat_gives_none(tmp_path: Path) -> None:
    result = NoiseWindow(stat_path=tmp_path / "missing", read_freq=False).start().stop()
    assert result["steal_share"] is None and result["busy_cores"] is None and result["seconds"] is not None


def test_combine_windows_weights_by_seconds() -> None:
    a = {"seconds": 1.0, "steal_share": 0.0, "busy_cores": 2.0, "iowait_share": 0.0, "load_avg_1m": 1.0,
         "freq_mhz_start": 3000.0, "freq_mhz_stop": 2900.0}
    b = {"seconds": 3.0, "steal_share": 0.2, "busy_cores": 4.0, "iowait_share": None, "load_avg_1m": 2.0,
         "freq_mhz_start": 2800.0, "freq_mhz_stop": 2700.0}
    out = combine_windows([a, b])
    assert out["seconds"] == 4.0 and out["windows"] == 2
    assert out["steal_share"] == pytest.approx(0.15) and out["busy_cores"] == pytest.approx(3.5)
    assert out["iowait_share"] == 0.0 and out["steal_share_max"] == 0.2
    assert (out["freq_mhz_start"], out["freq_mhz_stop"], out["load_avg_1m"]) == (3000.0, 2700.0, 2.0)
    assert combine_windows([])["steal_share"] is None

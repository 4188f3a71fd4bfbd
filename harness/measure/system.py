"""The machine's state before a sweep, and which parts of it make step times unrepeatable.

The idea is pyperf's ``system show``: settings that move timings between runs (frequency scaling, turbo, SMT
siblings, huge-page compaction, NUMA page migration, other load, a hypervisor) are recorded with the results and
named as warnings, so a noisy comparison can be explained instead of guessed at. Nothing here changes a setting.

Every reading is a plain file read under ``root`` (tests pass a fake tree); an unreadable one is recorded as None
and gives no warning, because containers and VMs hide much of /sys and that is not itself a problem.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path
from typing import Any

from harness.measure.host import parse_cpulist

CPU = "sys/devices/system/cpu"
THP = "sys/kernel/mm/transparent_hugepage/enabled"
NUMA_BALANCING = "proc/sys/kernel/numa_balancing"
LOADAVG = "proc/loadavg"
CPUINFO = "proc/cpuinfo"

# Load rule: a sweep wants the whole machine, so any steady competitor matters, but an idle box still shows a
# little load (the shell, sshd, the launcher itself). Warn when the 1-minute load exceeds one CPU's worth or 10 %
# of the logical CPUs, whichever is larger.
LOAD_FLOOR = 1.0
LOAD_PER_CPU = 0.1


def _read(path: Path) -> str | None:
    """The stripped text of a file, or None when it is missing, unreadable or not text."""
    try:
        return path.read_text().strip()
    except (OSError, ValueError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _governors(root: Path) -> dict[str, int] | None:
    """How many CPUs run each frequency governor; None where cpufreq is not exposed (common in VMs)."""
    counts: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        for path in (root / CPU).glob("cpu[0-9]*/cpufreq/scaling_governor"):
            name = _read(path)
            if name:
                counts[name] += 1
    return dict(sorted(counts.items())) if counts else None


def _online_cpus(root: Path) -> int | None:
    """Count of online CPUs from a range list such as ``0-63,128-191`` (host.parse_cpulist reads it)."""
    text = _read(root / CPU / "online")
    if not text:
        return None
    try:
        return len(parse_cpulist(text)) or None
    except ValueError:
        return None


def _thp(root: Path) -> str | None:
    """The bracketed (active) choice of ``always [madvise] never``."""
    text = _read(root / THP)
    if text is None or "[" not in text:
        return None
    return text.partition("[")[2].partition("]")[0] or None


def _loadavg(root: Path) -> tuple[float, float, float] | None:
    """The 1/5/15-minute load, read from the same file os.getloadavg uses, so a fake tree controls it."""
    text = _read(root / LOADAVG)
    try:
        one, five, fifteen = (float(x) for x in (text or "").split()[:3])
    except ValueError:
        return None
    return one, five, fifteen


def _hypervisor(root: Path) -> bool | None:
    """Whether the CPU flags carry ``hypervisor`` (a VM); None without a flags line (unreadable, or not x86)."""
    text = _read(root / CPUINFO)
    for line in (text or "").splitlines():
        if line.startswith("flags"):
            return "hypervisor" in line.partition(":")[2].split()
    return None


def system_state(root: Path = Path("/")) -> dict[str, Any]:
    """Read the repeatability-relevant settings of the machine; each value is its reading or None, never raises."""
    no_turbo = _read_int(root / CPU / "intel_pstate/no_turbo")
    boost = _read_int(root / CPU / "cpufreq/boost")
    turbo = None if no_turbo is None and boost is None else no_turbo == 0 or boost == 1
    load = _loadavg(root)
    return {
        "cpu_count": _online_cpus(root),
        "governors": _governors(root),
        "no_turbo": no_turbo,
        "boost": boost,
        "turbo": turbo,
        "smt_active": _read_int(root / CPU / "smt/active"),
        "smt_control": _read(root / CPU / "smt/control"),
        "thp_enabled": _thp(root),
        "numa_balancing": _read_int(root / NUMA_BALANCING),
        "load_avg_1m": load[0] if load else None,
        "load_avg_5m": load[1] if load else None,
        "load_avg_15m": load[2] if load else None,
        "hypervisor": _hypervisor(root),
    }


def load_threshold(cpu_count: int | None) -> float:
    """The 1-minute load above which other work is taken to compete with the sweep (see LOAD_FLOOR)."""
    return max(LOAD_FLOOR, LOAD_PER_CPU * (cpu_count or 0))


def repeatability_warnings(state: dict[str, Any]) -> list[str]:
    """One sentence per setting in ``state`` that makes timings vary between runs; None readings are skipped."""
    out: list[str] = []
    governors = state.get("governors") or {}
    others = {name: n for name, n in governors.items() if name != "performance"}
    if others:
        named = ", ".join(f"{name} on {n} of {sum(governors.values())} CPUs" for name, n in others.items())
        out.append(f"CPU frequency governor is {named}, not performance: clocks ramp with load, so step times drift.")
    if state.get("turbo") is True:
        out.append("Turbo/boost is on: the frequency varies with load and temperature, so runs are not comparable.")
    if state.get("smt_active") == 1:
        out.append("SMT is active: sibling hyperthreads share a core's execution units and caches.")
    if state.get("thp_enabled") == "always":
        out.append("Transparent huge pages are 'always': khugepaged compaction can stall the run at random.")
    numa = state.get("numa_balancing")
    if numa is not None and numa != 0:
        out.append(f"numa_balancing is {numa}: the kernel migrates pages between NUMA nodes under the run.")
    load = state.get("load_avg_1m")
    limit = load_threshold(state.get("cpu_count"))
    if load is not None and load > limit:
        out.append(f"1-minute load average is {load:.2f} (over {limit:.2f}): other work competes for the CPUs.")
    if state.get("hypervisor") is True:
        out.append("Running under a hypervisor: neighbouring guests can steal CPU time (see steal_share).")
    return out

"""The machine's CPU topology from sysfs and the binding this process has: readings only (placement is
`harness.launch.topology`'s).

Physical cores matter, not logical CPUs: a cell pinned to N cores gets one logical CPU on each of N distinct
physical cores of one NUMA node where it can.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SYS_CPU = Path("/sys/devices/system/cpu")
SYS_NODE = Path("/sys/devices/system/node")


def parse_cpulist(text: str) -> list[int]:
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11]."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def format_cpulist(cpus: list[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


@dataclass(frozen=True)
class Core:
    """One physical core: its socket, its NUMA node, and its logical CPUs (hyperthreads), first one first."""

    socket: int
    core: int
    node: int
    cpus: tuple[int, ...]


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


def numa_nodes() -> dict[int, list[int]]:
    """NUMA node -> its logical CPUs; one node holding every online CPU where sysfs has none."""
    nodes = {}
    for d in sorted(SYS_NODE.glob("node[0-9]*")):
        cpus = parse_cpulist(_read(d / "cpulist"))
        if cpus:
            nodes[int(d.name[4:])] = cpus
    return nodes or {0: sorted(os.sched_getaffinity(0))}


def cores() -> list[Core]:
    """Physical cores usable by this process, ordered by node, socket and core id."""
    allowed = os.sched_getaffinity(0)
    node_of = {cpu: node for node, cpus in numa_nodes().items() for cpu in cpus}
    groups: dict[tuple[int, int], list[int]] = {}
    for cpu in sorted(allowed):
        topo = SYS_CPU / f"cpu{cpu}" / "topology"
        socket = int(_read(topo / "physical_package_id", "0") or 0)
        core = int(_read(topo / "core_id", str(cpu)) or cpu)
        groups.setdefault((socket, core), []).append(cpu)
    out = [Core(socket=s, core=c, node=node_of.get(cpus[0], 0), cpus=tuple(cpus)) for (s, c), cpus in groups.items()]
    return sorted(out, key=lambda c: (c.node, c.socket, c.core))


def current_binding() -> dict[str, object]:
    """The affinity and memory policy this process actually has (what a cell records about itself)."""
    status = {}
    for line in _read(Path("/proc/self/status")).splitlines():
        key, _, value = line.partition(":")
        if key in ("Cpus_allowed_list", "Mems_allowed_list"):
            status[key] = value.strip()
    policy = "default"
    numa_maps = _read(Path("/proc/self/numa_maps"))
    if numa_maps:
        first = numa_maps.splitlines()[0].split()
        policy = first[1] if len(first) > 1 else "default"
    return {
        "affinity": sorted(os.sched_getaffinity(0)),
        "mems_allowed": status.get("Mems_allowed_list"),
        "memory_policy": policy,
    }

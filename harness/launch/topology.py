"""The placement (cores, NUMA node) a cell or rank is given, from the machine's topology (`harness.measure.host`).

Physical cores matter, not logical CPUs: a cell pinned to N cores gets one logical CPU on each of N distinct
physical cores of one NUMA node where it can.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from harness.measure.host import Core, cores, format_cpulist


def numactl() -> str | None:
    return shutil.which("numactl")


@dataclass(frozen=True)
class Placement:
    """Where one process runs: its logical CPUs and, when bound, its memory node."""

    cpus: tuple[int, ...]
    mem_node: int | None = None

    def numactl_args(self) -> list[str]:
        args = [f"--physcpubind={format_cpulist(list(self.cpus))}"]
        if self.mem_node is not None:
            args.append(f"--membind={self.mem_node}")
        return args


def place(pinning: str, n_cores: int | None, rank: int = 0, ranks: int = 1) -> Placement | None:
    """The placement for `pinning` (none | cores | numa), or None for no binding.

    cores: one logical CPU on each of `n_cores` physical cores (all cores split evenly between ranks if None).
    numa: the same, drawn from one node (rank r takes node r mod nodes), with memory bound to that node.
    Raises ValueError when the machine has too few cores.
    """
    if pinning == "none":
        return None
    all_cores = cores()
    if pinning == "numa":
        by_node: dict[int, list[Core]] = {}
        for c in all_cores:
            by_node.setdefault(c.node, []).append(c)
        node_ids = sorted(by_node)
        node = node_ids[rank % len(node_ids)]
        pool = by_node[node]
        sharing = [r for r in range(ranks) if node_ids[r % len(node_ids)] == node]
        slot, per_node = sharing.index(rank), len(sharing)
        want = n_cores or len(pool) // per_node
        chosen = pool[slot * want:(slot + 1) * want]
        if want < 1 or len(chosen) < want:
            raise ValueError(f"NUMA node {node} has {len(pool)} cores; {per_node} rank(s) x {want} do not fit")
        return Placement(cpus=tuple(c.cpus[0] for c in chosen), mem_node=node)
    if pinning == "cores":
        want = n_cores or len(all_cores) // ranks
        chosen = all_cores[rank * want:(rank + 1) * want]
        if want < 1 or len(chosen) < want:
            raise ValueError(f"{ranks} rank(s) x {want} cores do not fit the {len(all_cores)} usable physical cores")
        return Placement(cpus=tuple(c.cpus[0] for c in chosen))
    raise ValueError(f"unknown pinning '{pinning}'")

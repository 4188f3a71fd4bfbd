"""The cells sizing runs: probes, placements and the validation job, each a CellSpec capped at the memory budget
(they run through `harness.launch.runner`, as a sweep runs its cells)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.config.finetune import FinetuneConfig
from harness.config.spec import CellSpec, LaunchSettings


@dataclass(frozen=True)
class Layout:
    """How a cell uses the machine: threads per process x processes (data-parallel ranks), optionally one rank per
    NUMA node (the report's "placement"; `harness.launch.topology.Placement` is where each rank's cores are)."""

    threads: int
    ranks: int = 1
    numa: bool = False

    @property
    def cores(self) -> int:
        return self.threads * self.ranks

    def label(self) -> str:
        where = " (one per NUMA node)" if self.numa else ""
        return f"{self.ranks} x {self.threads} thread{'s' if self.threads > 1 else ''}{where}"


def layouts(cores: int, numa_nodes: int = 1) -> list[Layout]:
    """Every way to use this machine's cores worth measuring: all cores in one process, the cores split evenly
    among 2-8 ranks, one rank per NUMA node, and single-thread and half-machine processes for the scaling curve."""
    out = [Layout(cores)]
    out += [Layout(cores // r, r) for r in range(2, min(cores, 8) + 1) if cores % r == 0 and cores // r >= 1]
    if numa_nodes > 1 and cores % numa_nodes == 0:
        out.append(Layout(cores // numa_nodes, numa_nodes, numa=True))
    out += [Layout(t) for t in sorted({1, cores // 2}) if 0 < t < cores]
    return list(dict.fromkeys(out))


def cell(cfg: FinetuneConfig, batch: int, place: Layout, memory: int, warmup: int, measured: int,
         eval_rows: int | None, repeat: int = 0, timeout_s: float = 1800, save: bool = True,
         max_steps: int | None = None) -> CellSpec:
    """A cell of the job's config at `batch` per rank and `place`, capped at `memory`. A probe or placement run
    evaluates once (every run of it: `evaluate: every`) and saves one checkpoint after its steps, so its record holds
    both costs; the validation job keeps the job's own schedule (`max_steps`, `eval_steps`)."""
    total = max_steps or warmup + measured
    update: dict[str, Any] = {"batch_size": batch, "max_steps": total, "logging_steps": 1, "prompts": (),
                              "threads": place.threads, "save_checkpoints": save}
    if max_steps is None:  # one evaluation and one save, after the steps
        update.update(eval_steps=total, save_steps=total)
    if eval_rows is not None:
        update["eval_size"] = eval_rows
    launch = LaunchSettings(ranks=place.ranks, pinning="numa" if place.numa else "none", memory_limit=memory)
    return CellSpec(config=cfg.model_copy(update=update), launch=launch, timing_warmup_steps=warmup,
                    measured_steps=total - warmup, repeat=repeat, timeout_s=timeout_s, evaluate="every")

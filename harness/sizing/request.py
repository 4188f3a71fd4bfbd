"""What one `xeonft size` is asked to do: the job, the budgets, what to measure and what to project to."""

from __future__ import annotations

from dataclasses import dataclass

from harness.base.units import GIB
from harness.config.finetune import FinetuneConfig


@dataclass(frozen=True)
class SizeRequest:
    cfg: FinetuneConfig  # the job: model, data, precision, sequence length, checkpointing, epochs, eval, saves
    memory: int  # bytes, the budget for a cell's whole process tree
    budget_s: float = 1200.0  # wall time for probes and placements (validation comes on top)
    margin: float = 0.10  # of the memory budget left free by the recommended batch
    batch: int | None = None  # given: no boundary search
    probe_steps: tuple[int, int] = (1, 2)  # timing warm-up, measured
    run_steps: tuple[int, int] = (1, 3)
    max_repeats: int = 3
    soak_max: int = 200  # most steps of the soak run (0: none)
    probe_eval_rows: int = 16
    predict_budgets: tuple[int, ...] = (64 * GIB, 128 * GIB, 256 * GIB)
    cores: tuple[int, ...] = ()  # core counts to extrapolate the job's time to
    price_per_hour: float | None = None
    max_batch: int = 256
    placements: tuple[tuple[int, int], ...] = ()  # (threads, ranks) to measure; () = every one worth measuring
    name: str = "size"
    rows_drawn: int | None = None  # --rows: the job's dataset is this many rows drawn from `rows_from`
    rows_from: str | None = None

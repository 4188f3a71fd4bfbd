"""What defines one cell: its training config, how the launcher runs it, and how it is measured.

A `CellSpec` is a frozen value. Its keys (the store's, the match key across result sets, the catalog's) are
`harness.config.identity`'s: that module is the one place that says what makes one configuration.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.base.units import parse_bytes
from harness.config.finetune import FinetuneConfig
from harness.config.stack import Stack

Pinning = Literal["none", "cores", "numa"]
Isa = Literal["default", "avx512_core_amx", "avx512_core_bf16", "avx512_core_vnni", "avx512_core", "avx2"]
Allocator = Literal["default", "jemalloc", "tcmalloc"]
# inject_fault, for testing the harness itself: crash (SIGSEGV), hang, oom (MemoryError) at step 1, or slow
# (every step made about twice as long: a change clear enough for the verdicts' tests to see on three or four noisy
# runs a side), or slow:N% (each step N% longer: the size of slowdown a regression tracker must see). It is not
# part of a cell's identity when result sets are matched.
FAULTS = ("none", "crash", "hang", "oom", "slow")
_SLOW_BY = re.compile(r"^slow:(\d+(?:\.\d+)?)%$")


def slow_fraction(fault: str) -> float | None:
    """How much longer an injected `slow` fault makes each step (1.0 for plain `slow`), None for other faults."""
    if fault == "slow":
        return 1.0
    found = _SLOW_BY.match(fault)
    return float(found.group(1)) / 100.0 if found else None
Evaluate = Literal["first", "every"]


class LaunchSettings(BaseModel):
    """How the launcher runs a cell's process (not part of the training config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pinning: Pinning = "none"
    allocator: Allocator = "default"
    env: str = Field(default="default", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    inject_fault: str = "none"
    # oneDNN's ISA ceiling (ONEDNN_MAX_CPU_ISA): measures the AMX speedup on one machine, in one sweep
    isa: Isa = "default"
    # Data parallelism (torchrun): ranks per node, and for several machines the rendezvous settings.
    ranks: int = Field(default=1, ge=1)
    nnodes: int = Field(default=1, ge=1)
    node_rank: int = Field(default=0, ge=0)
    rdzv_endpoint: str | None = None
    # full: the tree sampler, the oneDNN probe and progress lines; bare: none of them (the step clock stays), to
    # measure what the harness's own instrumentation costs, side by side in one sweep
    instrument: Literal["full", "bare"] = "full"
    # a label that changes nothing that runs: `replica: [a, b]` makes two configurations that are the same, an A/A
    # pair inside one sweep (what a verdict says when nothing changed)
    replica: str = Field(default="a", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
    # set by a matrix's `design: duet` (never by a key of its own): the cell runs at the same time as another, each
    # on half the cores; its figures compare only with its duet partner's, so it is a configuration of its own
    duet: bool = False
    # a memory budget for the cell's whole process tree, in bytes ("6GiB" in a matrix): cgroup where xeonft may
    # make one, else the sampler; a cell over it ends `oom`, the host never swaps
    memory_limit: int | None = None
    # a library stack from pins, layered over xeonft's own environment (harness.launch.stacks); its pins are part
    # of the cell's identity, a requirements file's lines included
    stack: Stack | None = None

    @field_validator("inject_fault")
    @classmethod
    def _fault(cls, value: str) -> str:
        fraction = slow_fraction(value)
        if value not in FAULTS and fraction is None:
            raise ValueError(f"inject_fault {value!r}: expected one of {', '.join(FAULTS)} or slow:N% (e.g. slow:10%)")
        if fraction is not None and not 0 < fraction <= 10:
            raise ValueError(f"inject_fault {value!r}: the slowdown must be above 0% and at most 1000%")
        return value

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _size(cls, value: object) -> object:
        return None if value is None else parse_bytes(value)  # type: ignore[arg-type]

    @field_validator("stack", mode="after")
    @classmethod
    def _resolve(cls, value: Stack | None) -> Stack | None:
        return value.resolved() if value is not None else None

    @model_validator(mode="after")
    def _one_environment(self) -> LaunchSettings:
        if self.stack is not None and self.env != "default":
            raise ValueError(f"stack {self.stack.name} is layered over xeonft's own environment; it cannot be "
                             f"combined with env {self.env}")
        return self


LAUNCH_KEYS = tuple(LaunchSettings.model_fields)


class CellSpec(BaseModel):
    """Everything that defines one cell, and nothing else: a frozen, hashable value."""

    # On disk (and in the hash) the timing warm-up keeps its first name, `warmup_steps`; in code it is
    # `timing_warmup_steps`, never to be confused with the learning-rate warm-up (`config.warmup_steps`).
    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)

    config: FinetuneConfig
    launch: LaunchSettings
    timing_warmup_steps: int = Field(alias="warmup_steps", ge=0)
    measured_steps: int
    profile: bool = False
    preset: str = "none"  # the overlay the cell's config was built with (its effect is in `config`)
    repeat: int = 0
    variables: tuple[tuple[str, str], ...] = ()
    timeout_s: float = 1800
    # first: only a configuration's first run (repeat 0) evaluates; every: each run does. Which runs evaluate
    # changes nothing the measured steps do, so it is no part of any key (harness.config.identity).
    evaluate: Evaluate = "first"
    # The sweep's reference eval token ids, one file for every stack (`harness.cell.reference_tokens`): where the
    # own eval loss reads its ids. Set by the launcher; no part of any key (it changes no measured step).
    own_eval_tokens: str | None = None

"""What defines one cell: its training config, how the launcher runs it, and how it is measured.

A `CellSpec` is a frozen value; the store's key is its hash plus the environment's, and result sets are matched
across sweeps by `match_key` (the definition alone). Keys must stay stable across xeonft versions, or `--resume`
and `compare` would stop recognising earlier cells: new fields are left out of the hash at their defaults.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.base.units import parse_bytes
from harness.config.finetune import LATER_CONFIG_DEFAULTS, FinetuneConfig
from harness.config.stack import Stack

Pinning = Literal["none", "cores", "numa"]
Isa = Literal["default", "avx512_core_amx", "avx512_core_bf16", "avx512_core_vnni", "avx512_core", "avx2"]
Allocator = Literal["default", "jemalloc", "tcmalloc"]
# inject_fault, for testing the harness itself: crash (SIGSEGV), hang, oom (MemoryError) at step 1, or slow
# (every step made about twice as long: a change clear enough for the verdicts' tests to see on three or four noisy
# runs a side). It is not part of a cell's identity when result sets are matched.
Fault = Literal["none", "crash", "hang", "oom", "slow"]


class LaunchSettings(BaseModel):
    """How the launcher runs a cell's process (not part of the training config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pinning: Pinning = "none"
    allocator: Allocator = "default"
    env: str = Field(default="default", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    inject_fault: Fault = "none"
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
    # a memory budget for the cell's whole process tree, in bytes ("6GiB" in a matrix): cgroup where xeonft may
    # make one, else the sampler; a cell over it ends `oom`, the host never swaps
    memory_limit: int | None = None
    # a library stack from pins, layered over xeonft's own environment (harness.launch.stacks); its pins are part
    # of the cell's identity, a requirements file's lines included
    stack: Stack | None = None

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


# Launch settings that joined later: left out of a cell's hash at their defaults, so earlier keys stay valid.
LATER_LAUNCH_DEFAULTS = {"instrument": "full", "memory_limit": None, "stack": None}

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

    def _dump(self, exclude: dict[str, Any]) -> dict[str, Any]:
        # fields that joined later are left out at their defaults, which keeps the keys of earlier result sets
        exclude = dict(exclude)
        if self.preset == "none":
            exclude["preset"] = True
        at_default = {k: True for k, v in LATER_LAUNCH_DEFAULTS.items() if getattr(self.launch, k) == v}
        if at_default:
            launch = exclude.get("launch", {})
            exclude["launch"] = {**({k: True for k in launch} if isinstance(launch, set) else launch), **at_default}
        config_at_default = {k: True for k, v in LATER_CONFIG_DEFAULTS.items() if getattr(self.config, k) == v}
        if config_at_default:
            exclude["config"] = config_at_default
        return self.model_dump(mode="json", exclude=exclude)

    def pair_key(self) -> str:
        """The match key without `instrument`: a bare cell and its fully instrumented twin share it."""
        return self.model_copy(update={"launch": self.launch.model_copy(update={"instrument": "full"})}).match_key()

    def key(self, environment: str) -> str:
        """The store's key: a hash of the cell's definition plus the environment it ran in."""
        text = json.dumps({"spec": self._dump({"timeout_s": True}), "env": environment}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def match_key(self) -> str:
        """A hash of the definition alone (no environment, repeat, injected fault or node rank): how result sets
        are matched, and how the nodes of one multi-node cell find each other when merged."""
        text = json.dumps(self._dump({"timeout_s": True, "repeat": True,
                                      "launch": {"inject_fault": True, "node_rank": True}}), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]



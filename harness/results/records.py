"""The typed records of a result set: a cell's record (its result, summary and steps), the manifest, the fingerprint.

Every model is open (`extra="allow"`): a field this xeonft does not know is kept, not dropped, so a record read and
written again loses nothing. `schema_version` tells the layouts apart: 1 is every record written before it existed
(the same fields, no version), 2 adds the version itself and the run-level fields of the trust issue. Readers accept
both; a record from a newer xeonft is refused with a clear message (`check_version`) rather than misread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harness.base.errors import XeonftError

# the status sets are harness.config.identity's, re-exported for the readers of records
from harness.config.identity import MEASURED as MEASURED
from harness.config.identity import STATUSES as STATUSES
from harness.config.identity import Status as Status

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)


def check_version(data: dict[str, Any], what: str) -> None:
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise XeonftError(f"{what} has schema_version {version!r}, newer than this xeonft reads "
                          f"({SCHEMA_VERSION}): update xeonft to read it")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class StepRow(_Open):
    """One optimizer step as stored (see `harness.measure.steps.StepRecord`)."""

    step: int
    seconds: float
    tokens: int
    sequences: int | None = None
    compute_seconds: float | None = None
    data_seconds: float | None = None
    loss: float | None = None
    allreduce_seconds: float = 0.0
    hwm_bytes: int | None = None


class Summary(_Open):
    """A run's figures over its measured steps; the timing warm-up and evaluation apart."""

    steps: int | None = None
    warmup_steps: int = 0  # the timing warm-up (not the learning-rate warm-up)
    measured_steps: int | None = None
    warmup_seconds: float | None = None
    measured_seconds: float | None = None
    measured_tokens: int | None = None
    measured_sequences: int | None = None
    tokens_per_second: float | None = None
    sequences_per_second: float | None = None
    step_seconds_p50: float | None = None
    step_seconds_p90: float | None = None
    step_seconds_cv: float | None = None
    eval_seconds: float | None = None
    tracker_seconds_per_step: float | None = None
    allreduce_seconds: float | None = None


class CellResult(_Open):
    """What the worker (or the ranks, combined) measured."""

    summary: Summary = Field(default_factory=Summary)
    steps: list[StepRow] = Field(default_factory=list)
    evals: list[dict[str, Any]] = Field(default_factory=list)
    eval_loss: float | None = None
    model: dict[str, Any] = Field(default_factory=dict)
    world_size: int = 1
    versions: dict[str, Any] = Field(default_factory=dict)
    compile: dict[str, Any] | None = None
    onednn: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    ranks: list[dict[str, Any]] | None = None
    node_rank: int | None = None

    def measured_steps(self) -> list[StepRow]:
        """The steps a statistic may use: after the timing warm-up, and never the profiled step after them."""
        start = self.summary.warmup_steps
        count = self.summary.measured_steps
        return self.steps[start:None if count is None else start + count]


class Memory(_Open):
    """The launcher's readings of the cell's process tree."""

    peak_rss_bytes: int | None = None
    peak_uss_bytes: int | None = None
    foreign_cpu_cores_mean: float | None = None
    launcher_cpu_seconds: float | None = None


class LaunchRecord(_Open):
    command: list[str] = Field(default_factory=list)
    binding_method: str | None = None
    placement: dict[str, Any] | None = None
    rank_placements: list[dict[str, Any]] | None = None
    env: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True)
class Headline:
    """A cell's headline numbers in one place (the report, the terminal table and compare all read these)."""

    tokens_per_s: float | None
    sequences_per_s: float | None
    step_s_p50: float | None
    measured_tokens: int | None
    measured_seconds: float | None
    eval_loss: float | None
    final_train_loss: float | None
    peak_rss_bytes: int | None
    peak_uss_bytes: int | None


class CellRecord(_Open):
    """One cell (one repeat of one configuration) as stored in `cells/<key>.json`."""

    schema_version: int = 1
    key: str
    match_key: str | None = None
    repeat: int = 0
    spec: dict[str, Any] = Field(default_factory=dict)
    status: Status
    reason: str | None = None
    started: str | None = None
    finished: str | None = None
    exit_code: int | None = None
    wall_seconds: float | None = None
    launch: LaunchRecord | None = None
    memory: Memory | None = None
    result: CellResult | None = None
    log: str | None = None
    axes: dict[str, Any] = Field(default_factory=dict)
    stderr_tail: str | None = None
    budget: dict[str, Any] | None = None  # a memory budget: its limit, how enforced, crossed or not, the step reached
    nodes: list[dict[str, Any]] | None = None
    # the GEMM peak (TFLOP/s per dtype) at this cell's core count, measured before it ran; MFU is against it
    peak: dict[str, Any] | None = None

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.spec.get("config") or {})

    @property
    def launch_settings(self) -> dict[str, Any]:
        return dict(self.spec.get("launch") or {})

    @property
    def measured(self) -> bool:
        return self.status in MEASURED and self.result is not None

    def headline(self) -> Headline:
        res = self.result or CellResult()
        s, mem = res.summary, self.memory or Memory()
        losses = [st.loss for st in res.steps if st.loss is not None]
        return Headline(tokens_per_s=s.tokens_per_second, sequences_per_s=s.sequences_per_second,
                        step_s_p50=s.step_seconds_p50, measured_tokens=s.measured_tokens,
                        measured_seconds=s.measured_seconds, eval_loss=res.eval_loss,
                        final_train_loss=losses[-1] if losses else None,
                        peak_rss_bytes=mem.peak_rss_bytes if self.memory else None,
                        peak_uss_bytes=mem.peak_uss_bytes if self.memory else None)

    def step_work(self) -> dict[str, float] | None:
        """The work of a measured step (means): tokens, packed rows, documents, padding, attention span (sum of
        squared document lengths over tokens): what must be set beside any speed verdict across library stacks,
        since a new trl may pack (and so compute) differently."""
        steps = self.result.measured_steps() if self.result else []
        if not steps:
            return None
        n = len(steps)
        tokens = sum(s.tokens for s in steps)
        extra = [s.model_extra or {} for s in steps]
        slots = sum(e.get("slots") or 0 for e in extra)
        return {"tokens_per_step": tokens / n, "rows_per_step": sum(e.get("rows") or 0 for e in extra) / n,
                "documents_per_step": sum(s.sequences or 0 for s in steps) / n,
                "padding_share": 1 - tokens / slots if slots else 0.0,
                "attention_span": sum(e.get("doc_sq") or 0 for e in extra) / max(1, tokens)}

    def label(self) -> str:
        """The cell's axes as `key=value`; for a matrix without axes, its precision and batch size."""
        shown = self.axes or {k: self.config[k] for k in ("precision", "batch_size") if k in self.config}
        return " ".join(f"{k}={v}" for k, v in shown.items()) or self.match_key or self.key


class Fingerprint(_Open):
    """The machine and software a result set came from (see `harness.measure.fingerprint`)."""

    hostname: str | None = None
    cpu: dict[str, Any] = Field(default_factory=dict)
    topology: dict[str, Any] = Field(default_factory=dict)
    memory_bytes: int | None = None
    os: dict[str, Any] = Field(default_factory=dict)
    python: str | None = None
    libraries: dict[str, Any] = Field(default_factory=dict)
    torch_build: dict[str, Any] = Field(default_factory=dict)
    tools: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)


class Manifest(_Open):
    """`manifest.json`: the matrix, the machine, the environment key, the GEMM peaks and the cells in order."""

    schema_version: int = 1
    name: str | None = None
    created: str | None = None
    updated: str | None = None
    matrix: dict[str, Any] = Field(default_factory=dict)
    environment: str | None = None
    fingerprint: Fingerprint = Field(default_factory=Fingerprint)
    peak_tflops: dict[str, Any] | None = None
    cells: list[str] = Field(default_factory=list)
    merged_from: list[str] | None = None
    fingerprints: list[dict[str, Any]] | None = None

    @property
    def axes(self) -> list[str]:
        return list((self.matrix or {}).get("axes", {}))

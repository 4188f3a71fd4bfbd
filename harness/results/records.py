"""The typed records of a result set: a cell's record (its spec, result, summary and steps), the manifest, the
fingerprint. The worker builds a `CellResult`, the launcher a `CellRecord`; the store writes and reads these models,
and `docs/schema/` is generated from them (`harness.results.schema`).

Every model is open (`extra="allow"`) but the spec: a field this xeonft does not know is kept, not dropped, so a
record read and written again loses nothing. The layouts on disk, by `schema_version`:

    1  every record written before the version existed (no `schema_version`); the first layout (before f3f14d0)
       named the spec's environment variables `env`, at its top level
    2  the version itself and the run-level fields of the trust issue; the spec's variables are `variables`

Readers accept every version up to `SCHEMA_VERSION`; the migrations beside the model (`update_to_2`, listed in
`MIGRATIONS`) bring an older record to the current layout as it is read; a record from a newer xeonft is refused
with one message (`check_version`) rather than misread. Typing the stages' hand-offs changed no key on disk, so the
version stays 2: a result set written now is still read by the xeonft of before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SerializationInfo, field_serializer, model_validator

from harness.base.errors import XeonftError

# the status sets are harness.config.identity's, re-exported for the readers of records
from harness.config.identity import MEASURED as MEASURED
from harness.config.identity import OUTSIDE_EVERY_KEY
from harness.config.identity import STATUSES as STATUSES
from harness.config.identity import Status as Status
from harness.config.spec import CellSpec
from harness.measure.phases import Phases, SweepClock, WorkerClock
from harness.measure.steps import Measurement, Open, Step, Summary

__all__ = ["MEASURED", "SCHEMA_VERSION", "STATUSES", "Budget", "Calibration", "CalibrationRun", "CellRecord",
           "CellResult", "CpuSet", "Fingerprint", "Headline", "LaunchRecord", "Manifest", "Measurement", "Memory",
           "NodeOutcome", "Open", "Phases", "RankResult", "RunOrder", "Status", "Step", "Summary", "SweepClock",
           "WorkerClock", "check_version", "upgrade"]

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)


def check_version(data: dict[str, Any], what: str) -> None:
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise XeonftError(f"{what} has schema_version {version!r}, newer than this xeonft reads "
                          f"({SCHEMA_VERSION}): update xeonft to read it")


def update_to_2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 to 2: the spec of the first layout named the cell's environment variables `env`, at its top level
    (before `launch.env` named an environment); they are `variables` since."""
    spec = data.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("env"), list) and "variables" not in spec:
        spec = {("variables" if k == "env" else k): v for k, v in spec.items()}
    return {**data, "spec": spec, "schema_version": 2}


# The migration that produces each version from the one before it.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {2: update_to_2}


def upgrade(data: dict[str, Any], what: str = "a cell record") -> dict[str, Any]:
    """A stored cell record in the current layout: refused when newer than this xeonft, migrated when older."""
    check_version(data, what)
    for version in range(data.get("schema_version", 1) + 1, SCHEMA_VERSION + 1):
        data = MIGRATIONS[version](data)
    return data


class RankResult(Measurement):
    """One rank of a data-parallel cell, as kept in its combined result."""

    rank: int = Field(description="The rank's global number (0 is the one whose loss and evaluations are kept).")
    local_rank: int | None = Field(default=None, description="The rank's number on its node.")
    pid: int | None = Field(default=None, description="The rank's process id.")
    binding: dict[str, Any] | None = Field(default=None, description="The CPUs and memory policy the rank ran on.")
    torch_threads: int | None = Field(default=None, description="torch's intra-op threads in the rank.")
    lora_checksum: str | None = Field(default=None, description="A digest of the rank's LoRA weights after "
                                                                "training: equal on every rank when in sync.")
    peak_rss_bytes: int | None = Field(default=None, description="The rank's own peak RSS, from the launcher's "
                                                                 "sampler.")
    peak_uss_bytes: int | None = Field(default=None, description="The rank's own peak USS.")


class CommonEval(Open):
    """xeonft's own eval loss (`harness.cell.common_eval`): one definition under every library stack, so runs of
    different stacks can be told apart by how well they trained, not by how their trainer counts its loss."""

    loss: float = Field(description="Mean cross-entropy per token (every token after a row's first, each row run "
                                    "alone) of the trained model on the eval rows.")
    base_loss: float = Field(description="The same before training (the adapters at their initial values): the "
                                         "base model's.")
    tokens: int = Field(description="Tokens the mean is over.")
    rows: int = Field(description="Eval rows.")
    tokens_digest: str | None = Field(default=None, description="A digest of the eval rows' token ids: two runs "
                                                                "evaluated the same tokens only when it is equal.")
    reference_tokens: bool = Field(default=False, description="The eval rows' ids came from the sweep's one "
                                                              "reference file (made by the launcher's tokenizer, "
                                                              "the same for every stack), not from this stack's "
                                                              "tokenizer.")
    seconds: float = Field(description="Its wall time, both passes (the base before training, the tuned model "
                                       "after): outside the measured steps.")


class CellResult(Measurement):
    """What the worker measured (or, for a data-parallel cell, its ranks combined): the worker writes it as JSON
    and the launcher reads it back into this model."""

    saves: list[dict[str, Any]] | None = Field(default=None, description="Checkpoint saves: step and seconds.")
    eval_loss: float | None = Field(default=None, description="The last evaluation's loss.")
    common_eval: CommonEval | None = Field(default=None, description="xeonft's own eval loss, the same definition "
                                                                     "under every stack (runs that evaluate).")
    setup_seconds: float | None = Field(default=None, description="Loading the data and the model and building "
                                                                  "the trainer, in seconds.")
    model: dict[str, Any] = Field(default_factory=dict, description="The model as resolved: name, source, "
                                                                    "architecture and shape (harness.cell.models).")
    train_rows: int | None = Field(default=None, description="Rows of the training split.")
    eval_rows: int | None = Field(default=None, description="Rows of the evaluation split.")
    torch_threads: int | None = Field(default=None, description="torch's intra-op threads in the worker.")
    binding: dict[str, Any] | None = Field(default=None, description="The CPUs and memory policy the worker ran on.")
    versions: dict[str, Any] = Field(default_factory=dict, description="Python and the main libraries' versions.")
    packages: dict[str, str] | None = Field(default=None, description="Every installed distribution and its "
                                                                      "version.")
    xeonft_commit: str | None = Field(default=None, description="The xeonft commit the cell ran (+dirty when the "
                                                                "tree had changes).")
    compile: dict[str, Any] | None = Field(default=None, description="torch.compile's report (compiled backends).")
    rank: int | None = Field(default=None, description="The worker's rank (0 for a single process).")
    local_rank: int | None = Field(default=None, description="The worker's rank on its node.")
    world_size: int = Field(default=1, description="Ranks of the cell, over all its nodes.")
    pid: int | None = Field(default=None, description="The worker's process id.")
    lora_checksum: str | None = Field(default=None, description="A digest of the LoRA weights after training.")
    onednn: dict[str, Any] | None = Field(default=None, description="oneDNN's kernels during the measured steps: "
                                                                    "GEMM time and the share on AMX.")
    profile: dict[str, Any] | None = Field(default=None, description="The profiled step's time by category.")
    noise: dict[str, Any] | None = Field(default=None, description="Steal, busy cores, load and frequency over the "
                                                                   "measured steps.")
    measured_epoch: list[float] | None = Field(default=None, description="Wall-clock start and end of the measured "
                                                                         "steps (seconds since the epoch).")
    memory_phases: dict[str, Any] | None = Field(default=None, description="The worker's VmHWM at the end of each "
                                                                           "phase and the phase that set the peak.")
    ranks: list[RankResult] | None = Field(default=None, description="A data-parallel cell's ranks, each with its "
                                                                     "own steps and summary.")
    node_rank: int | None = Field(default=None, description="The node these ranks ran on (multi-node cells).")
    ranks_on_this_node: int | None = Field(default=None, description="Ranks that ran on this node.")
    rank_peak_rss_sum_bytes: int | None = Field(default=None, description="The ranks' own peak RSS, summed.")
    nodes: int | None = Field(default=None, description="Nodes a merged multi-node result came from.")
    skipped: list[str] | None = Field(default=None, description="What this run left to its configuration's first "
                                      "run (repeat 0): 'eval' (unless the matrix asks for `evaluate: every`), "
                                      "'onednn' (the verbose probe: the first run's kernels stand for it).")
    clock: WorkerClock | None = Field(default=None, description="What the worker timed of its own cell "
                                                                "(harness.measure.phases).")


class Memory(Open):
    """The launcher's readings of the cell's process tree (`harness.measure.sampler`)."""

    peak_rss_bytes: int | None = Field(default=None, description="Peak RSS of the cell's whole process tree.")
    peak_uss_bytes: int | None = Field(default=None, description="Peak USS (memory no other process shares) of "
                                                                 "the tree.")
    peak_pss_bytes: int | None = Field(default=None, description="Peak PSS of the tree (shared pages split).")
    memory_samples: int | None = Field(default=None, description="How many times the tree's RSS was read.")
    foreign_cpu_cores_mean: float | None = Field(default=None, description="Cores other processes used, on "
                                                                           "average over the cell.")
    foreign_cpu_cores_p90: float | None = Field(default=None, description="The 90th percentile of that, per "
                                                                          "second.")
    measured_foreign_cpu_cores_mean: float | None = Field(default=None, description="Cores other processes used "
                                                                                    "during the measured steps.")
    launcher_cpu_seconds: float | None = Field(default=None, description="CPU time the launcher's sampler took.")
    rss_timeline: list[tuple[float, int]] | None = Field(default=None, description="The tree's RSS once a second: "
                                                                                   "(seconds since start, bytes).")

    @classmethod
    def across_nodes(cls, nodes: list[Memory], base: Memory | None = None) -> Memory:
        """A multi-node cell's readings: the nodes' peaks summed (each node watched its own tree), the foreign load
        the worst node's; the other readings are `base`'s (the first node's)."""
        update = {"peak_rss_bytes": sum(m.peak_rss_bytes or 0 for m in nodes),
                  "peak_uss_bytes": sum(m.peak_uss_bytes or 0 for m in nodes),
                  "foreign_cpu_cores_mean": max(m.foreign_cpu_cores_mean or 0.0 for m in nodes)}
        return (base or cls()).model_copy(update=update)


class CpuSet(Open):
    """CPUs and a memory node a process was bound to."""

    cpus: list[int] = Field(description="The logical CPUs.")
    mem_node: int | None = Field(default=None, description="The NUMA node its memory was bound to.")


class LaunchRecord(Open):
    """How the launcher started the cell."""

    command: list[str] = Field(default_factory=list, description="The cell's command line.")
    binding_method: str | None = Field(default=None, description="numactl, sched_setaffinity or none.")
    placement: CpuSet | None = Field(default=None, description="The cell's CPUs (single process, pinned).")
    rank_placements: list[CpuSet] | None = Field(default=None, description="Each rank's CPUs (data-parallel).")
    env: dict[str, str] = Field(default_factory=dict, description="The environment variables xeonft set "
                                                                  "(secrets left out).")


class Budget(Open):
    """What a cell's memory budget saw."""

    limit_bytes: int = Field(description="The budget for the cell's whole process tree.")
    method: Literal["cgroup-v2", "cgroup-v1", "sampler"] = Field(description="How it was enforced.")
    why_sampler: str | None = Field(default=None, description="Why no cgroup could be made, in words.")
    exceeded: bool = Field(description="Whether the cell crossed it.")
    oom_kills: int | None = Field(default=None, description="OOM kills in the cell's cgroup.")
    cgroup_peak_bytes: int | None = Field(default=None, description="The cgroup's peak memory.")
    peak_rss_bytes: int | None = Field(default=None, description="The sampler's peak RSS of the tree.")
    exceeded_rss_bytes: int | None = Field(default=None, description="The tree's RSS when the sampler saw it cross.")
    step_reached: int = Field(description="The last step the worker reported.")
    steps_total: int = Field(description="The steps it was to run.")


class CalibrationRun(Open):
    """One run of the calibration workload (`harness.measure.calibration`), as its process measured it."""

    gflops: dict[str, float] = Field(description="GFLOP/s of the workload's GEMMs, per dtype (bf16, fp32): their "
                                                 "work over their summed time.")
    gemm_seconds: dict[str, list[float]] | None = Field(default=None, description="Each timed GEMM's seconds, per "
                                                                                  "dtype.")
    seconds: float = Field(description="Wall seconds of the run: pinning, the untimed and the timed GEMMs.")
    cpus: list[int] = Field(description="The CPUs every thread of the calibration process was allowed while it ran "
                                        "(their union, read back).")
    threads: int = Field(description="torch's threads in the run.")
    cpu_seconds_start: float = Field(description="The calibration process's CPU time (all threads) when the run "
                                                 "began.")
    cpu_seconds_end: float = Field(description="Its CPU time when the run ended.")


class Calibration(Open):
    """The calibration beside a cell: the same short workload right before and right after it, in the launcher's own
    interpreter, at the cell's threads on its CPUs. Recorded always; whether normalizing by it lowers the spread
    between runs is the analysis's to say (`harness.analysis.calibration`)."""

    workload: str = Field(description="The workload in words (sizes, GEMMs, threads).")
    cpus: list[int] = Field(description="The cell's CPUs the calibration was asked to run on.")
    threads: int = Field(description="The cell's threads per process (all its ranks' together).")
    before: CalibrationRun | None = Field(default=None, description="The run right before the cell (None if it "
                                                                    "failed: see `note`).")
    after: CalibrationRun | None = Field(default=None, description="The run right after it.")
    mean: dict[str, float] | None = Field(default=None, description="GFLOP/s per dtype: the mean of the runs there "
                                                                    "are (both, normally).")
    seconds: float = Field(description="Wall seconds the launcher spent on the calibration beside this cell (both "
                                       "runs, and starting the process when it started it here): its cost.")
    start_seconds: float | None = Field(default=None, description="Of those, starting the calibration process "
                                                                  "(importing torch), when it was started for this "
                                                                  "cell.")
    idle_cpu_seconds: float | None = Field(default=None, description="CPU time the calibration process used while "
                                                                     "the cell ran (between the two runs): about 0.")
    pid: int | None = Field(default=None, description="The calibration process's id.")
    note: str | None = Field(default=None, description="What went wrong, when a run is missing.")


class DuetRun(Open):
    """A cell's part in a duet: it ran at the same time as its partner, each on half the cores. Its throughput is
    taken over the measured steps both cells ran at once (`overlap`), so the ratio of the two sees the same
    machine; the figures compare only within the duet."""

    partner: str = Field(description="The store key of the cell it ran beside.")
    role: Literal["reference", "candidate"] = Field(description="reference: the matrix's first configuration, "
                                                                "which every other one runs beside.")
    duet: int = Field(description="The duet's number in the sweep (0 first).")
    half: int = Field(description="Which half of the cores it ran on: 0 (the lower CPUs) or 1; swapped from one "
                                  "duet to the next.")
    overlap_seconds: float | None = Field(default=None, description="Wall seconds both cells were in their "
                                                                    "measured steps at once.")
    steps: int = Field(default=0, description="Its measured steps that ran wholly inside that overlap.")
    tokens_per_second: float | None = Field(default=None, description="Non-padding tokens over seconds of those "
                                                                      "steps (None when fewer than 2 of them).")
    note: str | None = Field(default=None, description="Why there is no duet figure, when there is none.")


class NodeOutcome(Open):
    """One node's part of a merged multi-node cell."""

    key: str = Field(description="The node's own cell key.")
    status: str = Field(description="The node's status.")
    reason: str | None = Field(default=None, description="Why, when not ok.")
    memory: Memory | None = Field(default=None, description="The node's readings of its tree.")


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


class CellRecord(Open):
    """One cell (one repeat of one configuration) as stored in `cells/<key>.json`."""

    schema_version: int = Field(default=1, description="The record's layout (see harness.results.records).")
    key: str = Field(description="The store's key: a hash of the spec and the environment (the file's name).")
    match_key: str | None = Field(default=None, description="A hash of the definition alone: how result sets "
                                                            "are matched.")
    repeat: int = Field(default=0, description="Which repeat of its configuration the cell is.")
    spec: CellSpec = Field(description="Everything that defines the cell (harness.config.spec.CellSpec).")
    status: Status = Field(description="ok, disturbed (measured, flagged), failed, oom, timeout or unavailable.")
    reason: str | None = Field(default=None, description="Why the cell is not ok, in words a user can act on.")
    started: str | None = Field(default=None, description="When the cell started (ISO 8601).")
    finished: str | None = Field(default=None, description="When it finished.")
    exit_code: int | None = Field(default=None, description="The cell process's exit code.")
    wall_seconds: float | None = Field(default=None, description="Wall time of the cell's process.")
    launch: LaunchRecord | None = Field(default=None, description="How the launcher started it.")
    memory: Memory | None = Field(default=None, description="The launcher's readings of its process tree.")
    result: CellResult | None = Field(default=None, description="What it measured (None when it did not finish).")
    log: str | None = Field(default=None, description="Its stderr, relative to the result set.")
    axes: dict[str, Any] = Field(default_factory=dict, description="The cell's values of the matrix's axes.")
    stderr_tail: str | None = Field(default=None, description="The last lines of its stderr, when not ok.")
    budget: Budget | None = Field(default=None, description="Its memory budget, when it had one.")
    nodes: list[NodeOutcome] | None = Field(default=None, description="The nodes of a merged multi-node cell.")
    peak: dict[str, Any] | None = Field(default=None, description="The GEMM peak (TFLOP/s per dtype) at the cell's "
                                                                  "core count, measured before it ran: MFU is "
                                                                  "against it.")
    phases: Phases | None = Field(default=None, description="The cell's wall time split into phases that add up "
                                                            "to it: start-up, loading, preparing, warm-up, measured "
                                                            "steps, eval, ... (harness.measure.phases).")
    calibration: Calibration | None = Field(default=None, description="The calibration workload right before and "
                                                                       "after the cell (None when the matrix turns "
                                                                       "it off).")
    duet: DuetRun | None = Field(default=None, description="Its part in a duet (design: duet), None in a solo "
                                                           "sweep.")

    @model_validator(mode="before")
    @classmethod
    def _current_layout(cls, data: Any) -> Any:
        return upgrade(data) if isinstance(data, dict) else data

    @field_serializer("spec")
    def _whole_spec(self, spec: CellSpec, info: SerializationInfo) -> dict[str, Any]:
        # always written whole: a spec's fields left at their defaults are part of what defined the cell; those no
        # key holds (which runs evaluate) are written where they differ from their default, so a record read and
        # written again keeps its bytes
        quiet = {k for k in OUTSIDE_EVERY_KEY if getattr(spec, k) == CellSpec.model_fields[k].default}
        return spec.model_dump(mode=info.mode, exclude=quiet)

    @property
    def config(self) -> dict[str, Any]:
        """The training config as a flat dict, for callers that look its fields up by name."""
        return self.spec.config.model_dump(mode="json")

    @property
    def launch_settings(self) -> dict[str, Any]:
        return self.spec.launch.model_dump(mode="json")

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
        slots = sum(s.slots for s in steps)
        return {"tokens_per_step": tokens / n, "rows_per_step": sum(s.rows for s in steps) / n,
                "documents_per_step": sum(s.sequences or 0 for s in steps) / n,
                "padding_share": 1 - tokens / slots if slots else 0.0,
                "attention_span": sum(s.doc_sq for s in steps) / max(1, tokens)}

    def label(self) -> str:
        """The cell's axes as `key=value`; for a matrix without axes, its precision and batch size."""
        config = self.config
        shown = self.axes or {k: config[k] for k in ("precision", "batch_size") if k in config}
        return " ".join(f"{k}={v}" for k, v in shown.items()) or self.match_key or self.key


class Fingerprint(Open):
    """The machine and software a result set came from (see `harness.measure.fingerprint`)."""

    hostname: str | None = Field(default=None, description="The machine's name.")
    cpu: dict[str, Any] = Field(default_factory=dict, description="The CPU: brand, family, model, caches, flags.")
    topology: dict[str, Any] = Field(default_factory=dict, description="Sockets, NUMA nodes, physical cores.")
    memory_bytes: int | None = Field(default=None, description="The machine's memory.")
    os: dict[str, Any] = Field(default_factory=dict, description="The operating system and kernel.")
    python: str | None = Field(default=None, description="The Python version.")
    libraries: dict[str, Any] = Field(default_factory=dict, description="The main libraries' versions.")
    torch_build: dict[str, Any] = Field(default_factory=dict, description="torch's build: oneDNN, MKL, ISA.")
    tools: dict[str, Any] = Field(default_factory=dict, description="numactl and the allocators found.")
    env: dict[str, str] = Field(default_factory=dict, description="Performance-relevant environment variables "
                                                                  "(secrets left out).")


class RunOrder(Open):
    """How a sweep ordered each round's cells (`harness.launch.order`): a resume keeps the seed."""

    shuffle: bool = Field(description="Whether each round's cells were shuffled (else run as the matrix lists "
                                      "them).")
    seed: int = Field(description="The seed each round's order was drawn from, with the round's number.")


class Manifest(Open):
    """`manifest.json`: the matrix, the machine, the environment key, the GEMM peaks and the cells in order."""

    # sweep-wide readings a resume keeps unless it reads them again
    SWEEP_STATE: ClassVar[tuple[str, ...]] = ("system", "system_warnings", "repeats_auto")

    schema_version: int = Field(default=1, description="The manifest's layout (see harness.results.records).")
    name: str | None = Field(default=None, description="The result set's name (the matrix's).")
    set_id: str | None = Field(default=None, description="The result set's identity wherever it is copied (a uuid4 "
                               "hex made when it is created, kept on resume; a merge makes a new one). Absent in "
                               "sets made before it: `Manifest.identity` derives one.")
    created: str | None = Field(default=None, description="When the result set was created (ISO 8601).")
    updated: str | None = Field(default=None, description="When a sweep last opened it.")
    matrix: dict[str, Any] = Field(default_factory=dict, description="The matrix document as given.")
    environment: str | None = Field(default=None, description="The environment key (part of every cell key).")
    fingerprint: Fingerprint = Field(default_factory=Fingerprint, description="The machine and software.")
    peak_tflops: dict[str, Any] | None = Field(default=None, description="The GEMM peaks, by thread count.")
    cells: list[str] = Field(default_factory=list, description="The cells' keys in run order.")
    merged_from: list[str] | None = Field(default=None, description="The result sets a merged one came from.")
    fingerprints: list[dict[str, Any]] | None = Field(default=None, description="Each merged node's fingerprint.")
    system: dict[str, Any] | None = Field(default=None, description="Repeatability settings read before the sweep "
                                                                    "(governor, turbo, SMT, THP, load).")
    system_warnings: list[str] | None = Field(default=None, description="What in them makes timings vary.")
    repeats_auto: dict[str, Any] | None = Field(default=None, description="Adaptive repeats: min, max, target, "
                                                                          "budget.")
    sweep_clock: SweepClock | None = Field(default=None, description="What the last sweep spent outside its "
                                                                     "cells: the GEMM peak, waiting for the machine.")
    order: RunOrder | None = Field(default=None, description="The order of the cells in each round: shuffled or "
                                                             "as listed, and the seed it was drawn from.")

    @model_validator(mode="before")
    @classmethod
    def _current_layout(cls, data: Any) -> Any:
        if isinstance(data, dict):
            check_version(data, "a manifest")
        return data

    def identity(self, root: Path) -> str:
        """The result set's portable id: its `set_id`, or for a set made before there was one a digest of where and
        when it was made (the machine's name, the folder's resolved path, the creation time), stable across reads."""
        if self.set_id:
            return self.set_id
        made = json.dumps([self.fingerprint.hostname, str(root.resolve()), self.created])
        return hashlib.sha256(made.encode()).hexdigest()[:32]

    @property
    def axes(self) -> list[str]:
        return list((self.matrix or {}).get("axes", {}))

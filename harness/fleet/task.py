"""The typed values of a fleet: where a job runs (`Target`), what it is handed (`FleetTask`: plain paths, a digest
and flags, so it pickles small and means the same on every machine), what it hands back (`TargetOutcome`), and what
the submitter makes of each job (`JobReport`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Executor = Literal["local", "slurm"]
OK = "ok"  # the one status counted as a cell that came out right (disturbed cells are kept, but not ok)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes: how a job tells that the matrix it was handed is the one it finds."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Target:
    """Where one job runs: this machine (local), any node of a Slurm partition, or one Slurm node (pinned; its
    `partition`, when set, is the partition list Slurm may place it through)."""

    executor: Executor
    partition: str | None = None
    node: str | None = None

    @property
    def label(self) -> str:
        if self.node:
            return f"node {self.node}"
        if self.partition:
            return f"partition {self.partition}"
        return "this machine" if self.executor == "local" else "slurm"


@dataclass(frozen=True)
class FleetTask:
    """What a job is handed: the whole matrix is run on its machine. Paths are absolute (a shared filesystem is
    assumed for Slurm); `catalog` is the shared catalog each job adds its set to, or None when the submitter records
    the sets in its own."""

    matrix: Path
    matrix_sha256: str
    out_root: Path
    catalog: str | None = None
    memory_limit: str | None = None
    resume: bool = False
    retry_failed: bool = False
    wait: bool = True  # wait for another benchmark on the target to end, rather than refuse
    create_envs: bool = False
    allow_torch_stacks: bool = False
    trust_remote_code: bool = False


@dataclass(frozen=True)
class TargetOutcome:
    """What a job returns: the machine it ran on, its result set, the cells by status, the bundle of the set, and
    the warnings of a bundle or a shared catalog that could not take it (the cells are safe in the set either
    way)."""

    host: str
    result_set: Path
    statuses: dict[str, int] = field(default_factory=dict)
    bundle: Path | None = None
    catalog_warning: str | None = None
    bundle_warning: str | None = None

    @property
    def cells_ok(self) -> int:
        return self.statuses.get(OK, 0)

    @property
    def cells_not_ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if s != OK)


@dataclass(frozen=True)
class JobReport:
    """One job as the submitter saw it end: its outcome, or why it has none (an exception in it, a node failure, a
    cancelled or timed-out job) and the submitit log that tells more."""

    target: Target
    job_id: str
    log: Path
    outcome: TargetOutcome | None = None
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is not None

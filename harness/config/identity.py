"""What makes one configuration, for every reader, and what a recorded status means: the one home of both.

One cell (`CellSpec`) is known by several keys, each leaving out what its reader must not see:

    store_key        the definition plus the environment it ran in: the cell file's name, what `--resume` looks up
    match_key        the definition alone (no environment, repeat, injected fault or node rank): how result sets
                     are matched, and how the nodes of one multi-node cell find each other when merged
    twin_key         the match key without `instrument`: a bare cell and its fully instrumented twin share it
    lineage_key      the match key without the library stack or environment: one cell followed across releases
                     (the catalog's `identity` column)

and, for records already on disk (read by their stored match key, never recomputed), a `Configuration`: the match
key plus the injected fault, which tells repeats of one configuration in a set apart from another (`grouping`) and
pairs a configuration with its counterpart in another set (`counterpart`).

The hashes must stay byte-identical across xeonft versions, or `--resume`, `compare` and the catalog would stop
recognising earlier cells: fields that joined later are left out of every hash at their defaults.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from harness.config.finetune import LATER_CONFIG_DEFAULTS
from harness.config.spec import CellSpec, slow_fraction

Status = Literal["ok", "failed", "oom", "timeout", "unavailable", "disturbed"]
STATUSES: tuple[str, ...] = Status.__args__  # type: ignore[attr-defined]
MEASURED: tuple[str, ...] = ("ok", "disturbed")  # statuses whose numbers exist (a disturbed cell's are flagged)
# The resume rule's sets: a disturbed measurement is always worth taking again; failures only when asked.
RERUN_ALWAYS = frozenset({"disturbed"})
RERUN_IF_RETRYING = frozenset({"failed", "oom", "timeout"})
# A single cell run outside a matrix (a sizing probe, a bisect's version) is taken again unless it measured or ran
# out of memory: an oom is the probe's answer, anything else is worth another try.
PROBE_RETRY = frozenset(STATUSES) - {"ok", "oom"}

NO_FAULT = "none"


def comparable_fault(fault: str) -> bool:
    """An injected fault that leaves a cell comparable to its normal twin: none, or one that only slows the steps
    (`slow`, `slow:N%`)."""
    return fault == NO_FAULT or slow_fraction(fault) is not None


# Launch settings the match key leaves out: a fault injected on purpose, and which node of a multi-node cell ran.
OUTSIDE_MATCH = ("inject_fault", "node_rank")
# Spec fields no key holds: which runs of a configuration evaluate, and which token ids its own eval loss reads (the
# measured steps are the same either way).
OUTSIDE_EVERY_KEY = ("evaluate", "own_eval_tokens")
# Launch settings that joined later: left out of a cell's hash at their defaults, so earlier keys stay valid.
LATER_LAUNCH_DEFAULTS: dict[str, Any] = {"instrument": "full", "memory_limit": None, "stack": None, "replica": "a",
                                         "duet": False}


def should_run(recorded: str | None, resume: bool = True, retry: Collection[str] = ()) -> bool:
    """The resume rule: a cell runs when nothing is recorded under its key, when the run does not resume, when its
    record is one always taken again (disturbed), or when its status is one the caller retries."""
    return recorded is None or not resume or recorded in RERUN_ALWAYS or recorded in retry


def retried(retry_failed: bool) -> frozenset[str]:
    """The statuses a sweep's `--retry-failed` takes again."""
    return RERUN_IF_RETRYING if retry_failed else frozenset()


def hashed_document(spec: CellSpec, exclude: dict[str, Any]) -> dict[str, Any]:
    """The spec as it enters a hash: `exclude` left out, the settings that never change what a cell measures
    (`OUTSIDE_EVERY_KEY`) too, and every field that joined later left out at its default (which keeps the keys of
    earlier result sets)."""
    exclude = {**dict.fromkeys(OUTSIDE_EVERY_KEY, True), **exclude}
    if spec.preset == "none":
        exclude["preset"] = True
    at_default = {k: True for k, v in LATER_LAUNCH_DEFAULTS.items() if getattr(spec.launch, k) == v}
    if at_default:
        launch = exclude.get("launch", {})
        exclude["launch"] = {**({k: True for k in launch} if isinstance(launch, set) else launch), **at_default}
    config_at_default = {k: True for k, v in LATER_CONFIG_DEFAULTS.items() if getattr(spec.config, k) == v}
    if config_at_default:
        exclude["config"] = config_at_default
    return spec.model_dump(mode="json", exclude=exclude)


def _digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


def store_key(spec: CellSpec, environment: str, pins: str | None = None) -> str:
    """The store's key: a hash of the cell's definition plus the environment it ran in (and the digest of a
    library environment's pins, when the cell runs in one: pins changed, new cells)."""
    env = f"{environment}+{pins}" if pins else environment
    return _digest({"spec": hashed_document(spec, {"timeout_s": True}), "env": env})


def match_key(spec: CellSpec) -> str:
    """A hash of the definition alone: no environment, repeat, injected fault or node rank."""
    return _digest(hashed_document(spec, {"timeout_s": True, "repeat": True,
                                          "launch": {k: True for k in OUTSIDE_MATCH}}))


def twin_key(spec: CellSpec) -> str:
    """The match key without `instrument`: a bare cell and its fully instrumented twin share it."""
    return match_key(spec.model_copy(update={"launch": spec.launch.model_copy(update={"instrument": "full"})}))


def without_stack(spec: CellSpec) -> CellSpec:
    """The cell as run on xeonft's own environment: what stays the same across library stacks."""
    return spec.model_copy(update={"launch": spec.launch.model_copy(update={"stack": None, "env": "default"})})


def lineage_key(spec: CellSpec) -> str:
    """A cell's key across library stacks (the catalog's identity): its match key with the stack and the
    environment left out."""
    return match_key(without_stack(spec))


@dataclass(frozen=True)
class Configuration:
    """One configuration as the readers of stored records see it: the record's stored match key (never recomputed,
    so a record keeps the key it was written with) and its injected fault, which the match key leaves out."""

    match_key: str
    fault: str = NO_FAULT

    @property
    def grouping(self) -> str:
        """What makes two records of one result set repeats of one configuration: a cell with a fault injected is
        not a repeat of its normal twin."""
        return self.match_key if self.fault == NO_FAULT else f"{self.match_key}+{self.fault}"

    @property
    def counterpart(self) -> str:
        """What pairs a configuration with another result set's: a cell slowed on purpose matches its normal twin
        (that is what a slowdown test compares); one that crashes, hangs or runs out of memory is its own."""
        return self.match_key if comparable_fault(self.fault) else self.grouping

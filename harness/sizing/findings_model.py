"""What `xeonft size` found, as written to `sizing.json` and read back by the report and `--validate`.

One model per part, built from the sizing's own values (the job's shape, the fits, the probes, the projection:
frozen dataclasses defined beside the code that computes them). The file keeps the layout it had before these
models existed: a key that sizing writes only in some cases (the cost without a price, the soak's growth when the
soak did not run, everything after the boundary when nothing fits) is written only when set, so a file read and
written again is the file it was. The keys added since: `numa` beside each placement's label (read from the
label in files written before it); `no_extrapolation`, the reason `--cores` gave no projection; and the machine's
`kind` and `hostname`, so `xeonft machines` can set a sizing beside the same machines' runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, computed_field, field_serializer, model_validator

from harness.base.errors import XeonftError
from harness.config.finetune import FinetuneConfig
from harness.results.store import write_json
from harness.sizing.cells import Layout
from harness.sizing.fit import Breakdown, MemoryFit, Scaling
from harness.sizing.growth import Growth
from harness.sizing.project import JobShape, Projection, RunRates, Schedule
from harness.sizing.search import ProbeRow

FILE = "sizing.json"


class _Part(BaseModel):
    # infinities stay JSON's Infinity (a fit with no slope allows any batch); "from" is a key of the file
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants", validate_by_name=True,
                              validate_by_alias=True, serialize_by_alias=True)


def _computed_in_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """The keys made from the fields (computed) are keys of the file too: a reader's schema lists them."""
    for name, info in model.model_computed_fields.items():
        schema.setdefault("properties", {}).setdefault(name, TypeAdapter(info.return_type).json_schema())


class _LaidOut(_Part):
    """A part about one layout: its threads, ranks and NUMA placement, and the label they make."""

    model_config = ConfigDict(json_schema_extra=_computed_in_schema)

    threads: int = Field(description="Threads per process.")
    ranks: int = Field(description="Processes (data-parallel ranks).")
    numa: bool = Field(default=False, description="One rank per NUMA node (files from before this key: read from "
                                                  "the label).")

    @model_validator(mode="before")
    @classmethod
    def _from_label(cls, data: Any) -> Any:
        """The label (and the cores) are made from the fields, never read; files written before `numa` was a key
        of its own said it in the label only."""
        if isinstance(data, dict) and "placement" in data:
            data = dict(data)
            label = data.pop("placement")
            data.pop("cores", None)
            data.setdefault("numa", "NUMA" in str(label))
        return data

    @property
    def layout(self) -> Layout:
        return Layout(self.threads, self.ranks, self.numa)

    @computed_field(description="The layout's label, e.g. '2 x 4 threads (one per NUMA node)'.")  # type: ignore[prop-decorator]
    @property
    def placement(self) -> str:
        return self.layout.label()


class RequestSummary(_Part):
    """What was asked: the job's config, the memory and time budgets, the core counts and price to project to."""

    memory_bytes: int = Field(description="The memory budget of a cell's process tree (--memory-limit).")
    budget_s: float = Field(description="Wall time for probes and placements (--budget).")
    margin: float = Field(description="Share of the memory budget the recommended batch leaves free (--margin).")
    batch: int | None = Field(description="The batch given (--batch-size): no boundary search.")
    config: FinetuneConfig = Field(description="The job's config (harness.config.finetune.FinetuneConfig).")
    cores: list[int] = Field(description="Core counts to project the job to (--cores).")
    price_per_hour: float | None = Field(description="What an hour of the machine costs (--price-per-hour).")
    rows_drawn: int | None = Field(default=None, description="--rows: the job's dataset is this many rows drawn "
                                                             "from `rows_from`.")
    rows_from: str | None = Field(default=None, description="--rows: the dataset they were drawn from.")

    @field_serializer("config")
    def _config(self, cfg: FinetuneConfig) -> dict[str, Any]:
        return cfg.model_dump(mode="json")  # every field, set or defaulted


class Boundary(_Part):
    """The OOM boundary the probes found."""

    largest_ok: int | None = Field(description="The largest batch that trained below the smallest that did not.")
    smallest_failed: int | None = Field(description="The smallest batch that did not train (None: none failed).")
    safe_batch: int | None = Field(description="The largest batch whose peak left the margin free.")
    fastest_safe_batch: int | None = Field(default=None, description="The batch the placements ran: the safe batch, "
                                           "or a smaller one whose probe trained more than 15% faster.")
    found: bool = Field(description="Whether the boundary lies between two adjacent batches.")


class Machine(_Part):
    """The machine the sizing ran on."""

    cpu: str | None = Field(description="The CPU's name.")
    cores: int = Field(description="The cores sizing could use.")
    amx: bool | None = Field(description="Whether the CPU has AMX.")
    numa_nodes: int = Field(description="NUMA nodes.")
    kind: str | None = Field(default=None, description="The machine's kind (harness.measure.kind), so `xeonft "
                             "machines` can put the sizing beside the same machines' runs; absent before kinds.")
    hostname: str | None = Field(default=None, description="The machine's name.")


class PredictedBoundary(_Part):
    """The largest batch a budget allows, from the memory fit."""

    budget_bytes: int = Field(description="The memory budget.")
    tokens_per_step: float = Field(description="Tokens per step whose predicted peak leaves the margin free "
                                               "(Infinity where the fit has no slope).")
    batch: int | None = Field(description="Those tokens in packed rows.")
    measured: bool = Field(description="The budget the probes ran under (the fit at it); else a prediction.")


class PlacementRow(_LaidOut):
    """One layout's runs: what failed, the peak, and (where a run trained) the throughput and the job projected."""

    batch_per_rank: int | None = Field(description="The batch each rank ran (None: no run).")
    runs: int = Field(description="Runs that trained.")
    failed: list[str] = Field(description="'status: reason' of each run that did not train.")
    disturbed: int = Field(description="Runs marked disturbed (other processes took CPU).")
    peak_rss_bytes: int | None = Field(description="The highest process-tree peak RSS of its runs.")
    tokens_per_second: float | None = Field(default=None, description="Median training throughput of the runs.")
    tps_low: float | None = Field(default=None, description="Its 95% interval's low end.")
    tps_high: float | None = Field(default=None, description="Its 95% interval's high end.")
    schedule: Schedule | None = Field(default=None, description="The job's steps, evaluations and saves here.")
    epoch_steps: int | None = Field(default=None, description="Optimizer steps in one epoch.")
    projection: Projection | None = Field(default=None, description="The job's projected wall time.")
    rates: list[RunRates] = Field(default=[], description="Each run's rates, which the projection used.")

    @computed_field(description="Cores the layout uses (threads x ranks).")  # type: ignore[prop-decorator]
    @property
    def cores(self) -> int:
        return self.layout.cores


class Recommendation(_LaidOut):
    """The batch and layout to run the job with, its time, memory and cost."""

    batch_per_rank: int = Field(description="The batch per rank.")
    projected_seconds: float = Field(description="The job's projected wall time.")
    projected_low: float | None = Field(description="Its 95% prediction interval's low end (None from one run).")
    projected_high: float | None = Field(description="Its high end.")
    hours: float = Field(description="The projected wall time in hours.")
    projected_peak_bytes: float | None = Field(description="The job's projected peak RSS (the soak's growth "
                                                           "included when it ran).")
    measured_peak_bytes: int | None = Field(description="The peak its short runs measured.")
    fit_peak_bytes: float | None = Field(description="The peak the memory fit predicts (all ranks).")
    provision_gib: int | None = Field(description="The memory to provision: the projected peak (its upper end after "
                                                  "a soak) with the margin left free, in whole GiB.")
    indistinguishable_from: list[str] = Field(description="Placements the runs cannot tell from this one.")
    steps: int = Field(description="The job's optimizer steps.")
    cost: float | None = Field(default=None, description="The job's cost at --price-per-hour.")
    cost_low: float | None = Field(default=None, description="Its low end.")
    cost_high: float | None = Field(default=None, description="Its high end.")
    projected_peak_high_bytes: float | None = Field(default=None, description="The peak's upper end, after a soak.")
    peak_from: str | None = Field(default=None, description="Where the projected peak came from.")


class Soak(_Part):
    """The soak run: `ran` false with the steps that would have fit, or its outcome and the growth fitted."""

    ran: bool = Field(description="Whether it ran.")
    steps_that_fit: int | None = Field(default=None, description="The steps that would have fit (when it did not).")
    steps: int | None = Field(default=None, description="The steps it ran.")
    job_steps: int | None = Field(default=None, description="The job's steps.")
    status: str | None = Field(default=None, description="Its cell's status.")
    key: str | None = Field(default=None, description="Its cell's key.")
    note: str | None = Field(default=None, description="Why there is no growth.")
    growth: Growth | None = Field(default=None, description="The curves through its per-step peaks.")
    peak_bytes: int | None = Field(default=None, description="Its process tree's peak RSS.")
    factor: float | None = Field(default=None, description="The peak at the job's end over the soak's (log curve).")
    factor_high: float | None = Field(default=None, description="The same, upper end (straight line).")
    projected_peak_bytes: float | None = Field(default=None, description="The peak projected to the job's end.")
    projected_peak_high_bytes: float | None = Field(default=None, description="Its upper end.")


class Extrapolation(_Part):
    """The job at another core count, from Amdahl's law fitted over the core counts measured."""

    cores: int = Field(description="The core count.")
    seconds: float = Field(description="The job's projected wall time there.")
    speedup: float = Field(description="Training and evaluation's speedup over the recommendation's cores.")
    extrapolation: bool = Field(description="Beyond the core counts measured.")
    source: str = Field(alias="from", description="The fit it came from, and its range.")


class MemoryGrowth(_Part):
    """How the tree's RSS moved over the validation run after its first minute."""

    bytes_per_second: float = Field(description="Least-squares slope of the RSS.")
    bytes_per_step: float = Field(description="The same, per step.")
    rss_after_first_minute: float = Field(description="Mean RSS over the first readings after the first minute.")
    rss_last_minute: float = Field(description="Mean RSS over the last minute.")


class Validation(_Part):
    """`--validate`: the recommended job (or a share of its steps) run for real, beside its projection."""

    fraction: float = Field(description="The share of the job's steps run.")
    steps: int = Field(description="The steps run.")
    status: str = Field(description="Its cell's status.")
    reason: str | None = Field(description="Why it did not finish, when it did not.")
    projected_seconds: float = Field(description="Its projected wall time.")
    projected_low: float | None = Field(description="Its 95% prediction interval's low end.")
    projected_high: float | None = Field(description="Its high end.")
    projected_parts: dict[str, float] = Field(description="The projection by part: train, eval, save, fixed, total.")
    actual_seconds: float | None = Field(description="Its wall time.")
    time_error: float | None = Field(description="Actual over projected time, less 1 (None: did not finish).")
    inside_interval: bool | None = Field(description="Whether the actual time fell inside the interval.")
    actual_parts: dict[str, float] | None = Field(description="The run's time by the projection's parts and rules.")
    projected_peak_bytes: float | None = Field(description="The peak projected at the steps run.")
    actual_peak_bytes: int | None = Field(description="Its process tree's peak RSS.")
    projected_peak_high_bytes: float | None = Field(description="The projected peak's upper end.")
    memory_error: float | None = Field(description="Actual over projected peak, less 1.")
    noise: dict[str, Any] = Field(description="What its record measured of the machine (CPU steal, busy cores, ...).")
    foreign_cpu_cores: float | None = Field(description="Cores other processes used meanwhile, on average.")
    key: str = Field(description="Its cell's key.")
    memory_growth: MemoryGrowth | None = Field(description="How its RSS moved after the first minute.")


class Findings(_Part):
    """sizing.json, what `xeonft size` found. Everything after `breakdown` is absent when nothing fits (then
    `verdict` says why); `validation` is there once `--validate` ran."""

    request: RequestSummary = Field(description="What was asked.")
    job: JobShape = Field(description="The job as trl packs it.")
    row_tokens: float = Field(description="Mean tokens of a packed training row.")
    probes: list[ProbeRow] = Field(description="The boundary search's probes, by batch.")
    boundary: Boundary = Field(description="The boundary they found.")
    fit: MemoryFit | None = Field(description="Peak memory against tokens per step (None: too few probes).")
    fingerprint: Machine = Field(description="The machine.")
    predicted_boundaries: list[PredictedBoundary] = Field(description="The largest batch by budget, from the fit.")
    breakdown: Breakdown | None = Field(description="Memory by part, analytic beside the fit.")
    verdict: str | None = Field(default=None, description="Why nothing fits, when nothing does.")
    placements: list[PlacementRow] = Field(default=[], description="Each layout's runs and projection.")
    scaling: Scaling | None = Field(default=None, description="Amdahl's law over the core counts measured.")
    recommendation: Recommendation | None = Field(default=None, description="What to run (None: no placement "
                                                                            "trained).")
    soak: Soak | None = Field(default=None, description="The soak run (None: --soak-steps 0).")
    extrapolations: list[Extrapolation] = Field(default=[], description="The job at the --cores asked for.")
    no_extrapolation: str | None = Field(default=None, description="Why --cores gave no projection.")
    elapsed_s: float | None = Field(default=None, description="The sizing's wall time.")
    validation: Validation | None = Field(default=None, description="The validation run, once it ran.")

    def dump(self) -> dict[str, Any]:
        """The file's content: each part's keys as they were set (read, or built)."""
        return self.model_dump(mode="json", exclude_unset=True)

    def write(self, path: Path) -> None:
        write_json(path, self.dump())


def row_of(rows: list[PlacementRow], rec: Recommendation) -> PlacementRow:
    """The placement row a recommendation was made from."""
    return next(r for r in rows if r.layout == rec.layout)


def load_findings(out: Path) -> Findings:
    path = out / FILE
    if not path.is_file():
        raise XeonftError(f"'{out}' holds no sizing (no {FILE}): run `xeonft size` first")
    return Findings.model_validate(json.loads(path.read_text(encoding="utf-8")))

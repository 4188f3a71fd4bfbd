"""What `xeonft size` found, as written to `sizing.json` and read back by the report and `--validate`.

One model per part, built from the sizing's own values (the job's shape, the fits, the probes, the projection:
frozen dataclasses defined beside the code that computes them). The file keeps the layout it had before these
models existed: a key that sizing writes only in some cases (the cost without a price, the soak's growth when the
soak did not run, everything after the boundary when nothing fits) is written only when set, so a file read and
written again is the file it was. The one key added since is `numa` beside each placement's label (read from the
label in files written before it); and `no_extrapolation`, the reason `--cores` gave no projection.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_serializer, model_validator

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


class _LaidOut(_Part):
    """A part about one layout: its threads, ranks and NUMA placement, and the label they make."""

    threads: int
    ranks: int
    numa: bool

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

    @computed_field  # type: ignore[prop-decorator]
    @property
    def placement(self) -> str:
        return self.layout.label()


class RequestSummary(_Part):
    """What was asked: the job's config, the memory and time budgets, the core counts and price to project to."""

    memory_bytes: int
    budget_s: float
    margin: float
    batch: int | None
    config: FinetuneConfig
    cores: list[int]
    price_per_hour: float | None
    rows_drawn: int | None = None  # --rows: a dataset of this many rows drawn from `rows_from`
    rows_from: str | None = None

    @field_serializer("config")
    def _config(self, cfg: FinetuneConfig) -> dict[str, Any]:
        return cfg.model_dump(mode="json")  # every field, set or defaulted


class Boundary(_Part):
    largest_ok: int | None
    smallest_failed: int | None
    safe_batch: int | None  # the largest batch whose peak left the margin free
    fastest_safe_batch: int | None = None  # the batch the placements ran (a smaller one may train faster)
    found: bool


class Machine(_Part):
    cpu: str | None
    cores: int
    amx: bool | None
    numa_nodes: int


class PredictedBoundary(_Part):
    budget_bytes: int
    tokens_per_step: float  # Infinity where the fit has no slope
    batch: int | None
    measured: bool  # the budget the probes ran under (the fit at it), else a prediction


class PlacementRow(_LaidOut):
    """One layout's runs: what failed, the peak, and (where a run trained) the throughput and the job projected."""

    batch_per_rank: int | None
    runs: int
    failed: list[str]  # "status: reason" of each run that did not train
    disturbed: int
    peak_rss_bytes: int | None
    tokens_per_second: float | None = None  # median of the runs, with its 95% interval
    tps_low: float | None = None
    tps_high: float | None = None
    schedule: Schedule | None = None
    epoch_steps: int | None = None
    projection: Projection | None = None
    rates: list[RunRates] = []

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cores(self) -> int:
        return self.layout.cores


class Recommendation(_LaidOut):
    batch_per_rank: int
    projected_seconds: float
    projected_low: float | None
    projected_high: float | None
    hours: float
    projected_peak_bytes: float | None
    measured_peak_bytes: int | None
    fit_peak_bytes: float | None
    provision_gib: int | None
    indistinguishable_from: list[str]  # labels of the placements the runs cannot tell from this one
    steps: int
    cost: float | None = None  # with --price-per-hour
    cost_low: float | None = None
    cost_high: float | None = None
    projected_peak_high_bytes: float | None = None  # after a soak
    peak_from: str | None = None


class Soak(_Part):
    """The soak run: `ran` false with the steps that would have fit, or its outcome and the growth fitted."""

    ran: bool
    steps_that_fit: int | None = None
    steps: int | None = None
    job_steps: int | None = None
    status: str | None = None
    key: str | None = None
    note: str | None = None  # why there is no growth
    growth: Growth | None = None
    peak_bytes: int | None = None
    factor: float | None = None
    factor_high: float | None = None
    projected_peak_bytes: float | None = None
    projected_peak_high_bytes: float | None = None


class Extrapolation(_Part):
    cores: int
    seconds: float
    speedup: float
    extrapolation: bool  # beyond the core counts measured
    source: str = Field(alias="from")  # the fit it came from, and its range


class MemoryGrowth(_Part):
    """How the tree's RSS moved over the validation run after its first minute."""

    bytes_per_second: float
    bytes_per_step: float
    rss_after_first_minute: float
    rss_last_minute: float


class Validation(_Part):
    fraction: float
    steps: int
    status: str
    reason: str | None
    projected_seconds: float
    projected_low: float | None
    projected_high: float | None
    projected_parts: dict[str, float]
    actual_seconds: float | None
    time_error: float | None  # None: the run did not finish
    inside_interval: bool | None
    actual_parts: dict[str, float] | None
    projected_peak_bytes: float | None
    actual_peak_bytes: int | None
    projected_peak_high_bytes: float | None
    memory_error: float | None
    noise: dict[str, Any]  # what the run's record measured (CPU steal, busy cores, ...)
    foreign_cpu_cores: float | None
    key: str
    memory_growth: MemoryGrowth | None


class Findings(_Part):
    """sizing.json. Everything after `breakdown` is absent when nothing fits (then `verdict` says why)."""

    request: RequestSummary
    job: JobShape
    row_tokens: float
    probes: list[ProbeRow]
    boundary: Boundary
    fit: MemoryFit | None
    fingerprint: Machine
    predicted_boundaries: list[PredictedBoundary]
    breakdown: Breakdown | None
    verdict: str | None = None
    placements: list[PlacementRow] = []
    scaling: Scaling | None = None
    recommendation: Recommendation | None = None
    soak: Soak | None = None
    extrapolations: list[Extrapolation] = []
    no_extrapolation: str | None = None  # why --cores gave none
    elapsed_s: float | None = None
    validation: Validation | None = None

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

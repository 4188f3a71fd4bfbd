"""Optimizer steps as measured inside a cell, their summary, and how the ranks of a data-parallel cell combine.

Pure Python (no torch): the worker, the launcher (to combine ranks) and `merge` (to combine nodes) share these
types, so throughput is computed in exactly one way. Vocabulary: the *timing warm-up* is the first steps of a cell,
not timed (compilation and first-touch allocation happen there); it is not the learning-rate warm-up
(`FinetuneConfig.warmup_steps`). The models are open (`extra="allow"`): a field this xeonft does not know survives
a read and a write.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Open(BaseModel):
    """A stored value that keeps the fields it does not declare (written by a newer or older xeonft)."""

    model_config = ConfigDict(extra="allow")


def measured_window(timing_warmup: int, measured: int | None) -> slice:
    """The steps a statistic may use: after the timing warm-up, `measured` of them when given (a profiled step
    after them is never measured). The one statement of that rule: the summary, the record and the tracker's
    noise window all take it from here."""
    return slice(timing_warmup, None if measured is None else timing_warmup + measured)


def p90(values: Sequence[float]) -> float:
    """The 90th percentile by nearest rank (a value that occurred, never an interpolation); 0.0 when empty."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))] if ordered else 0.0


class Step(Open):
    """One optimizer step. `seconds` = data (fetching and collating its batches) + compute (forward, backward,
    optimizer); logging and evaluation after the step are not in it."""

    step: int = Field(description="The trainer's global step number (from 1).")
    seconds: float = Field(description="Wall time of the step: data plus compute, in seconds.")
    tokens: int = Field(description="Non-padding tokens trained on in the step (summed over ranks in a "
                                    "data-parallel cell's global step).")
    sequences: int | None = Field(default=None, description="Documents (sequences) trained on in the step.")
    compute_seconds: float | None = Field(default=None, description="Forward, backward and optimizer, in seconds.")
    data_seconds: float | None = Field(default=None, description="Fetching and collating the step's batches, in "
                                                                 "seconds.")
    loss: float | None = Field(default=None, description="The training loss the trainer logged for the step "
                                                         "(rank 0's: the mean across ranks).")
    allreduce_seconds: float = Field(default=0.0, description="Time the gradient all-reduce buckets took, launch "
                                                              "to completion (they may overlap the backward).")
    rows: int = Field(default=0, description="Packed rows in the step's batches (harness.cell.recipe.batch_work).")
    slots: int = Field(default=0, description="Token slots of the step's batches, padding included.")
    doc_sq: int = Field(default=0, description="Sum of squared document lengths: attention's work per document.")
    row_sq: int = Field(default=0, description="Sum of squared row lengths: attention's work over whole rows.")
    hwm_bytes: int | None = Field(default=None, description="This process's peak RSS so far (VmHWM) at the step's "
                                                            "end; summed over ranks in a global step.")
    ended: float | None = Field(default=None, description="Wall-clock time the step ended (Unix seconds); with "
                                                        "`seconds`, when it ran: a duet's two cells are compared over "
                                                        "the steps they ran at the same time.")

    @classmethod
    def across_ranks(cls, per_rank: Sequence[Step]) -> Step:
        """One global step from the same step of every rank: its work (tokens, sequences, rows, slots and the
        squared lengths) summed, the time the slowest rank's (they wait for each other in the all-reduce), the loss
        rank 0's, every rank's peak so far summed (what the ranks together have needed by this step; None unless
        every rank read one)."""
        slowest = max(per_rank, key=lambda s: s.seconds)
        hwm = [s.hwm_bytes for s in per_rank]
        work = {k: sum(getattr(s, k) for s in per_rank) for k in ("tokens", "rows", "slots", "doc_sq", "row_sq")}
        return slowest.model_copy(update={
            **work, "sequences": sum(s.sequences or 0 for s in per_rank),
            "loss": per_rank[0].loss, "allreduce_seconds": max(s.allreduce_seconds for s in per_rank),
            "hwm_bytes": sum(h for h in hwm if h) if all(hwm) else None})


class Summary(Open):
    """A run's figures over its measured steps; the timing warm-up and evaluation apart. Every key
    `summarize_steps` writes is declared here; records from before a key existed leave it None."""

    steps: int | None = Field(default=None, description="Optimizer steps the cell ran (warm-up, measured, "
                                                        "profiled).")
    warmup_steps: int = Field(default=0, description="Steps of the timing warm-up (not the learning-rate "
                                                     "warm-up): never measured.")
    measured_steps: int | None = Field(default=None, description="Steps every statistic is taken over.")
    warmup_seconds: float | None = Field(default=None, description="Wall time of the timing warm-up's steps.")
    measured_seconds: float | None = Field(default=None, description="Wall time of the measured steps.")
    measured_tokens: int | None = Field(default=None, description="Non-padding tokens of the measured steps.")
    measured_sequences: int | None = Field(default=None, description="Documents of the measured steps.")
    measured_rows: int | None = Field(default=None, description="Packed rows of the measured steps.")
    measured_padding: int | None = Field(default=None, description="Padding token slots of the measured steps "
                                                                   "(None where a step did not record its slots).")
    measured_doc_sq: int | None = Field(default=None, description="Sum of squared document lengths over the "
                                                                  "measured steps.")
    measured_row_sq: int | None = Field(default=None, description="Sum of squared row lengths over the measured "
                                                                  "steps.")
    tokens_per_second: float | None = Field(default=None, description="The run's throughput: measured tokens "
                                                                      "over measured seconds.")
    sequences_per_second: float | None = Field(default=None, description="Measured documents over measured "
                                                                         "seconds.")
    data_seconds: float | None = Field(default=None, description="Data loading time within the measured steps.")
    allreduce_seconds: float | None = Field(default=None, description="All-reduce time within the measured "
                                                                      "steps.")
    eval_seconds: float | None = Field(default=None, description="Time spent in evaluation (outside the steps).")
    evals: int | None = Field(default=None, description="How many evaluations ran.")
    tokens_all_steps: int | None = Field(default=None, description="Non-padding tokens of every step, warm-up "
                                                                   "included: what the model trained on.")
    trl_num_tokens: int | None = Field(default=None, description="trl's own cumulative token count (a "
                                                                 "cross-check of tokens_all_steps).")
    tracker_seconds_per_step: float | None = Field(default=None, description="Time the step clock's own hooks "
                                                                             "took, per step.")
    step_seconds_p50: float | None = Field(default=None, description="Median measured step time.")
    step_seconds_p90: float | None = Field(default=None, description="90th percentile (nearest rank) of the "
                                                                      "measured step times.")
    step_seconds_cv: float | None = Field(default=None, description="Coefficient of variation of the measured "
                                                                    "step times (0 for one step).")


def summarize_steps(steps: Sequence[Step], timing_warmup: int = 0, measured: int | None = None,
                    evals: Sequence[dict[str, Any]] | None = None, trl_num_tokens: int | None = None,
                    tracker_seconds: float = 0.0) -> Summary:
    """Throughput over the measured steps: their tokens over their seconds (the run's one value); the timing
    warm-up (compile) and evaluation apart."""
    evals = evals or []
    warm = steps[:timing_warmup]
    window = steps[measured_window(timing_warmup, measured)]
    seconds = sum(s.seconds for s in window)
    tokens = sum(s.tokens for s in window)
    sequences = sum(s.sequences or 0 for s in window)
    times = sorted(s.seconds for s in window)
    spread: dict[str, float] = {}
    if times:  # left unset (and so unwritten) when no step was measured
        spread = {"step_seconds_p50": statistics.median(times), "step_seconds_p90": p90(times),
                  "step_seconds_cv": statistics.pstdev(times) / statistics.fmean(times) if len(times) > 1 else 0.0}
    return Summary(
        steps=len(steps), warmup_steps=len(warm), measured_steps=len(window),
        warmup_seconds=sum(s.seconds for s in warm), measured_seconds=seconds,
        measured_tokens=tokens, measured_sequences=sequences, measured_rows=sum(s.rows for s in window),
        measured_padding=sum(s.slots for s in window) - tokens if all(s.slots for s in window) else None,
        measured_doc_sq=sum(s.doc_sq for s in window) if all(s.doc_sq for s in window) else None,
        measured_row_sq=sum(s.row_sq for s in window) if all(s.row_sq for s in window) else None,
        tokens_per_second=tokens / seconds if seconds > 0 else None,
        sequences_per_second=sequences / seconds if seconds > 0 else None,
        data_seconds=sum(s.data_seconds or 0.0 for s in window),
        allreduce_seconds=sum(s.allreduce_seconds for s in window),
        eval_seconds=sum(e["seconds"] for e in evals), evals=len(evals),
        tokens_all_steps=sum(s.tokens for s in steps), trl_num_tokens=trl_num_tokens,
        tracker_seconds_per_step=tracker_seconds / len(steps) if steps else None, **spread)


class Measurement(Open):
    """What a run measured: its steps, their summary and its evaluations. A cell's result and each rank's entry
    in it are measurements; combining the ranks of a data-parallel cell is this type's own method."""

    summary: Summary = Field(default_factory=Summary, description="The run's figures over its measured steps.")
    steps: list[Step] = Field(default_factory=list, description="Every optimizer step, in order.")
    evals: list[dict[str, Any]] = Field(default_factory=list, description="Each evaluation: its step, its seconds "
                                                                         "and the trainer's eval_* metrics.")

    def measured_steps(self) -> list[Step]:
        """The steps a statistic may use (`measured_window` over the summary's own counts)."""
        return self.steps[measured_window(self.summary.warmup_steps, self.summary.measured_steps)]

    @classmethod
    def of_ranks(cls, ranks: Sequence[Measurement], timing_warmup: int, measured: int | None = None) -> Measurement:
        """Global figures of a data-parallel cell from its ranks' own measurements, in rank order.

        Every step is a global step (`Step.across_ranks`), as many as the rank with the fewest. Throughput is
        then global tokens over the slowest rank's time, never an average of per-rank throughputs. The
        evaluations and trl's token count are rank 0's (trl gathers its count across ranks already).
        """
        steps = [Step.across_ranks(per) for per in zip(*(r.steps for r in ranks), strict=False)]  # the fewest
        evals = ranks[0].evals
        summary = summarize_steps(steps, timing_warmup, measured, evals=evals,
                                  trl_num_tokens=ranks[0].summary.trl_num_tokens)
        return cls(summary=summary, steps=steps, evals=evals)

"""Optimizer steps as measured inside a cell, and the one function that turns them into a cell's summary.

Pure Python (no torch): the worker, the launcher (to combine ranks) and `merge` (to combine nodes) share it, so
throughput is computed in exactly one way. Vocabulary: the *timing warm-up* is the first steps of a cell, not
timed (compilation and first-touch allocation happen there); it is not the learning-rate warm-up
(`FinetuneConfig.warmup_steps`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any


@dataclass
class StepRecord:
    """One optimizer step. `seconds` = data (fetching and collating its batches) + compute (forward, backward,
    optimizer); logging and evaluation after the step are not in it."""

    step: int
    seconds: float
    compute_seconds: float
    data_seconds: float
    tokens: int
    sequences: int
    loss: float | None = None
    allreduce_seconds: float = 0.0
    # the work of the step (see harness.cell.recipe.batch_work): rows, token slots with padding, and the sums of
    # squared document and row lengths (attention's work per document, and over whole rows)
    rows: int = 0
    slots: int = 0
    doc_sq: int = 0
    row_sq: int = 0
    # this process's peak RSS so far (VmHWM) at the step's end: how the peak grows over a run, step by step
    hwm_bytes: int | None = None


def measured_window(n_steps: int, timing_warmup: int, measured: int | None) -> slice:
    """The steps a statistic may use: after the timing warm-up, `measured` of them when given (a profiled step
    after them is never measured)."""
    return slice(timing_warmup, None if measured is None else min(n_steps, timing_warmup + measured))


def summarize_steps(steps: list[StepRecord], timing_warmup: int = 0, measured: int | None = None,
                    evals: list[dict[str, Any]] | None = None, trl_num_tokens: int | None = None,
                    tracker_seconds: float = 0.0) -> dict[str, Any]:
    """Throughput over the measured steps: their tokens over their seconds (the run's one value); the timing
    warm-up (compile) and evaluation apart."""
    evals = evals or []
    warm = steps[:timing_warmup]
    window = steps[measured_window(len(steps), timing_warmup, measured)]
    seconds = sum(s.seconds for s in window)
    tokens = sum(s.tokens for s in window)
    sequences = sum(s.sequences for s in window)
    times = sorted(s.seconds for s in window)
    out: dict[str, Any] = {
        "steps": len(steps),
        "warmup_steps": len(warm),
        "measured_steps": len(window),
        "warmup_seconds": sum(s.seconds for s in warm),
        "measured_seconds": seconds,
        "measured_tokens": tokens,
        "measured_sequences": sequences,
        "measured_rows": sum(s.rows for s in window),
        "measured_padding": sum(s.slots for s in window) - tokens if all(s.slots for s in window) else None,
        "measured_doc_sq": sum(s.doc_sq for s in window) if all(s.doc_sq for s in window) else None,
        "measured_row_sq": sum(s.row_sq for s in window) if all(s.row_sq for s in window) else None,
        "tokens_per_second": tokens / seconds if seconds > 0 else None,
        "sequences_per_second": sequences / seconds if seconds > 0 else None,
        "data_seconds": sum(s.data_seconds for s in window),
        "allreduce_seconds": sum(s.allreduce_seconds for s in window),
        "eval_seconds": sum(e["seconds"] for e in evals),
        "evals": len(evals),
        "tokens_all_steps": sum(s.tokens for s in steps),
        "trl_num_tokens": trl_num_tokens,
        "tracker_seconds_per_step": tracker_seconds / len(steps) if steps else None,
    }
    if times:
        out["step_seconds_p50"] = statistics.median(times)
        out["step_seconds_p90"] = times[min(len(times) - 1, round(0.9 * (len(times) - 1)))]
        out["step_seconds_cv"] = statistics.pstdev(times) / statistics.fmean(times) if len(times) > 1 else 0.0
    return out


def steps_from_records(records: list[dict[str, Any]]) -> list[StepRecord]:
    fields = StepRecord.__dataclass_fields__
    return [StepRecord(**{k: v for k, v in r.items() if k in fields}) for r in records]

"""The real job's wall time and cost, projected from the runs of one configuration.

Every run (a separate process) gives its own projection: its training throughput over the job's tokens, its
evaluation throughput over the eval set as often as the Trainer evaluates, its checkpoint save time as often as
the Trainer saves, and its fixed cost (start, model and data loading, the slower first step). The projection is
the geometric mean of those, with a 95% *prediction* interval (a t-interval on logs widened by sqrt(1 + 1/n)):
the range one more run of the job should land in, which is what `--validate` checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from harness.config.finetune import FinetuneConfig
from harness.results.records import CellRecord, CellResult


@dataclass(frozen=True)
class JobShape:
    """The job as trl trains it: its rows packed into sequences of `seq_len` tokens."""

    train_rows: int
    eval_rows: int
    packed_rows: int  # packed sequences per epoch (trl's packing of the tokenized train rows)
    train_tokens: int  # tokens per epoch (every packed token is trained on: packing is padding-free)
    eval_tokens: int  # tokens of one pass over the eval set
    seq_len: int
    longest_row: int


@dataclass(frozen=True)
class Schedule:
    """How often the Trainer steps, evaluates and saves over the job."""

    steps: int
    evals: int
    saves: int


def schedule(job: JobShape, batch: int, ranks: int = 1, grad_accum: int = 1, epochs: float = 1.0,
             eval_steps: int | None = None, save_steps: int | None = None, max_steps: int | None = None) -> Schedule:
    """Optimizer steps (each rank takes its share of the packed rows, `batch` at a time), then one evaluation at
    every multiple of `eval_steps` and at the last step, and the same for saves (the Trainer's own rule)."""
    per_rank = math.ceil(job.packed_rows / ranks)
    per_epoch = max(1, math.ceil(math.ceil(per_rank / batch) / grad_accum))
    steps = max_steps or math.ceil(per_epoch * epochs)
    evals = math.ceil(steps / eval_steps) if eval_steps and job.eval_rows else 0
    saves = math.ceil(steps / save_steps) if save_steps else 0
    return Schedule(steps=steps, evals=evals, saves=saves)


def job_schedule(cfg: FinetuneConfig, job: JobShape, batch: int, ranks: int, max_steps: int | None = None) -> Schedule:
    """The schedule of `cfg`'s job at `batch` per rank over `ranks`: its accumulation, epochs and evaluations, its
    saves when it saves checkpoints, and `max_steps` (default: the config's own)."""
    return schedule(job, batch, ranks, cfg.gradient_accumulation_steps, cfg.num_train_epochs, cfg.eval_steps,
                    cfg.save_steps if cfg.save_checkpoints else None, max_steps or cfg.max_steps)


def epoch_steps(cfg: FinetuneConfig, job: JobShape, batch: int, ranks: int) -> int:
    """Optimizer steps in one epoch of the job (what the projection scales the job's tokens by)."""
    return schedule(job, batch, ranks, cfg.gradient_accumulation_steps).steps


@dataclass(frozen=True)
class RunRates:
    """One run's rates: what it measured, in the units the projection needs."""

    tokens_per_second: float  # training, over the measured steps
    eval_tokens_per_second: float | None
    save_seconds: float | None
    fixed_seconds: float  # `fixed_seconds` of the run


def run_seconds(rates: RunRates, job: JobShape, plan: Schedule, per_epoch_steps: int) -> dict[str, float]:
    """One run's projection of the job, by part (seconds)."""
    train = job.train_tokens * plan.steps / per_epoch_steps / rates.tokens_per_second
    evaluate = plan.evals * job.eval_tokens / rates.eval_tokens_per_second if plan.evals and \
        rates.eval_tokens_per_second else 0.0
    save = plan.saves * (rates.save_seconds or 0.0)
    return {"train": train, "eval": evaluate, "save": save, "fixed": rates.fixed_seconds,
            "total": train + evaluate + save + rates.fixed_seconds}


@dataclass(frozen=True)
class Projection:
    seconds: float  # geometric mean over the runs
    low: float | None  # 95% prediction interval for one more run (None from one run: cannot tell)
    high: float | None
    runs: int
    parts: dict[str, float]  # geometric means by part (they need not sum exactly to `seconds`)
    per_run: list[float]  # each run's own projection of the job (seconds)


def prediction_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float | None, float | None]:
    """Geometric mean and the t prediction interval (on logs) for one more value; no interval from one value."""
    logs = np.log(np.asarray(values, float))
    centre = float(np.mean(logs))
    if len(values) < 2:
        return math.exp(centre), None, None
    q = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1))
    margin = q * float(np.std(logs, ddof=1)) * math.sqrt(1 + 1 / len(values))
    return math.exp(centre), math.exp(centre - margin), math.exp(centre + margin)


def project(runs: list[RunRates], job: JobShape, plan: Schedule, per_epoch_steps: int) -> Projection:
    per_run = [run_seconds(r, job, plan, per_epoch_steps) for r in runs]
    point, low, high = prediction_interval([p["total"] for p in per_run])
    parts = {k: float(np.exp(np.mean(np.log([max(p[k], 1e-9) for p in per_run])))) for k in per_run[0]}
    return Projection(seconds=point, low=low, high=high, runs=len(runs), parts=parts,
                      per_run=[p["total"] for p in per_run])


def evals_and_saves(result: CellResult) -> tuple[list[float], list[float]]:
    """The seconds of each evaluation and of each checkpoint save a run recorded."""
    evals = [e["seconds"] for e in result.evals if e.get("seconds")]
    saves = [s["seconds"] for s in result.saves or [] if s.get("seconds")]
    return evals, saves


def fixed_seconds(record: CellRecord) -> float | None:
    """A run's fixed cost: its wall time less all its steps at the measured training rate, its evaluations and its
    checkpoint saves. That leaves what a run pays once whatever its length: the process's start, loading the model
    and the data, compiling, and the warm-up steps' time beyond the measured rate. Never below 0; None for a run
    that did not train. The projection adds it once to the job; the evaluations and saves it projects apart."""
    result = record.result
    if not record.measured or result is None or not (tps := result.summary.tokens_per_second):
        return None
    evals, saves = evals_and_saves(result)
    steps = sum(s.tokens for s in result.steps) / tps
    return max(0.0, (record.wall_seconds or 0.0) - steps - sum(evals) - sum(saves))


def rates_from_record(record: CellRecord, eval_tokens: int | None) -> RunRates | None:
    """A run's rates from its cell record (None when it did not train). `eval_tokens`: its eval set's tokens."""
    result, fixed = record.result, fixed_seconds(record)
    if result is None or fixed is None or not (tps := result.summary.tokens_per_second):
        return None
    evals, saves = evals_and_saves(result)
    eval_tps = eval_tokens * len(evals) / sum(evals) if evals and eval_tokens else None
    save_s = sum(saves) / len(saves) if saves else None
    return RunRates(tokens_per_second=tps, eval_tokens_per_second=eval_tps,
                    save_seconds=save_s, fixed_seconds=fixed)

"""The in-cell step clock: one TrainerCallback (the training loop stays trl's own) that times every optimizer step
and counts the non-padding tokens and sequences it trained on."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from transformers import TrainerCallback

from harness.measure.steps import StepRecord, summarize_steps


class StepTracker(TrainerCallback):
    """Per-step wall time, non-padding tokens and sequences, loss; eval timed apart.

    Tokens come from the batches themselves (the trainer calls `on_batch` before each micro-batch); trl's own
    cumulative `num_tokens` log is kept beside them as a cross-check.
    """

    def __init__(self, on_step: Callable[[int, int], None] | None = None) -> None:
        self.steps: list[StepRecord] = []
        self.evals: list[dict[str, float]] = []
        self.trl_num_tokens: int | None = None
        self._on_step = on_step
        self._t_begin = 0.0
        self._last_event = time.perf_counter()
        self._tokens = 0
        self._sequences = 0
        self._data_seconds = 0.0
        self._allreduce_seconds = 0.0
        self.own_seconds = 0.0  # time spent in this tracker's own hooks (its share of the harness's overhead)

    def on_allreduce(self, seconds: float) -> None:
        """One gradient bucket's all-reduce, from launch to completion (it may overlap the backward pass)."""
        self._allreduce_seconds += seconds

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._last_event = time.perf_counter()

    def on_batch(self, tokens: int, sequences: int) -> None:
        """Told by the trainer, which adds the time it took to count them to `own_seconds`."""
        self._tokens += tokens
        self._sequences += sequences

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._t_begin = time.perf_counter()
        self._data_seconds = self._t_begin - self._last_event

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        now = time.perf_counter()
        self._step_end(state, now)
        self.own_seconds += time.perf_counter() - now

    def _step_end(self, state: Any, now: float) -> None:
        compute = now - self._t_begin
        self.steps.append(StepRecord(step=state.global_step, seconds=compute + self._data_seconds,
                                     compute_seconds=compute, data_seconds=self._data_seconds,
                                     tokens=self._tokens, sequences=self._sequences,
                                     allreduce_seconds=self._allreduce_seconds))
        self._tokens = self._sequences = 0
        self._allreduce_seconds = 0.0
        self._last_event = now
        if self._on_step is not None:
            self._on_step(state.global_step, state.max_steps)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        if "num_tokens" in logs:
            self.trl_num_tokens = int(logs["num_tokens"])
        if "loss" in logs and self.steps and self.steps[-1].step == state.global_step:
            self.steps[-1].loss = float(logs["loss"])
        if not any(k.startswith("eval_") for k in logs):  # evaluate() logs its metrics just before on_evaluate
            self._last_event = time.perf_counter()

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    **kwargs: Any) -> None:
        now = time.perf_counter()
        record = {"step": state.global_step, "seconds": now - self._last_event}
        record.update({k: v for k, v in (metrics or {}).items() if isinstance(v, int | float)})
        self.evals.append(record)
        self._last_event = now

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._last_event = time.perf_counter()

    def summary(self, timing_warmup: int = 0, measured: int | None = None) -> dict[str, Any]:
        """Throughput over the measured steps (see `summarize_steps`)."""
        return summarize_steps(self.steps, timing_warmup, measured, evals=self.evals,
                               trl_num_tokens=self.trl_num_tokens, tracker_seconds=self.own_seconds)

    def records(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.steps]

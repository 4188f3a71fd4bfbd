"""The in-cell step clock: one TrainerCallback (the training loop stays trl's own) that times every optimizer step
and counts the non-padding tokens and sequences it trained on."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

from harness.measure.memory import PhasePeaks, vm_hwm
from harness.measure.noise import NoiseWindow
from harness.measure.steps import Step, Summary, measured_window, summarize_steps

WORK = ("rows", "slots", "doc_sq", "row_sq")


class StepTracker(TrainerCallback):
    """Per-step wall time, non-padding tokens and sequences, loss; eval timed apart.

    Tokens come from the batches themselves (the trainer calls `on_batch` before each micro-batch); trl's own
    cumulative `num_tokens` log is kept beside them as a cross-check.
    """

    def __init__(self, on_step: Callable[[int, int], None] | None = None, timing_warmup: int = 0,
                 measured: int | None = None, meet: Callable[[], float] | None = None) -> None:
        self.steps: list[Step] = []
        self._window = measured_window(timing_warmup, measured)
        self.noise: NoiseWindow | None = None
        self.measured_epoch: list[float] = []  # wall-clock start and end of the measured steps, for the launcher
        self.memory = PhasePeaks()
        self.evals: list[dict[str, float]] = []
        self.saves: list[dict[str, float]] = []  # checkpoint saves: step and seconds
        self.trl_num_tokens: int | None = None
        self._on_step = on_step
        self._t_begin = 0.0
        self._last_event = time.perf_counter()
        self._tokens = 0
        self._sequences = 0
        self._work = dict.fromkeys(WORK, 0)
        self._data_seconds = 0.0
        self._allreduce_seconds = 0.0
        self.own_seconds = 0.0  # time spent in this tracker's own hooks (its share of the harness's overhead)
        self._meet = meet  # a duet's barrier, met between the timing warm-up and the measured steps
        self.met_seconds: float | None = None  # how long it waited there for its partner

    def on_allreduce(self, seconds: float) -> None:
        """One gradient bucket's all-reduce, from launch to completion (it may overlap the backward pass)."""
        self._allreduce_seconds += seconds

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.memory.end("load")
        self._meet_partner(0)
        self._last_event = time.perf_counter()

    def _meet_partner(self, done: int) -> None:
        """At the start of the measured steps, wait for a duet's partner (not counted in any step)."""
        if self._meet is not None and done == self._window.start and self.met_seconds is None:
            self.met_seconds = self._meet()
            self._last_event = time.perf_counter()

    def on_batch(self, tokens: int, sequences: int, **work: int) -> None:
        """Told by the trainer, which adds the time it took to count them to `own_seconds`."""
        self._tokens += tokens
        self._sequences += sequences
        for k in WORK:
            self._work[k] += work.get(k, 0)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._t_begin = time.perf_counter()
        self._data_seconds = self._t_begin - self._last_event
        if len(self.steps) == self._window.start and self.noise is None:  # the first measured step begins
            t = time.perf_counter()
            self.noise = NoiseWindow().start()
            self.measured_epoch = [time.time()]
            self.own_seconds += time.perf_counter() - t

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        now = time.perf_counter()
        self._step_end(state, now)
        if len(self.steps) == self._window.start:
            self._meet_partner(len(self.steps))
        if len(self.steps) == self._window.stop and self.noise is not None and len(self.measured_epoch) == 1:
            self.noise.stop()
            self.measured_epoch.append(time.time())
        self.memory.end("train")
        self.own_seconds += time.perf_counter() - now

    def _step_end(self, state: Any, now: float) -> None:
        compute = now - self._t_begin
        self.steps.append(Step(step=state.global_step, seconds=compute + self._data_seconds,
                               compute_seconds=compute, data_seconds=self._data_seconds,
                               tokens=self._tokens, sequences=self._sequences,
                               loss=None, allreduce_seconds=self._allreduce_seconds, hwm_bytes=vm_hwm(),
                               ended=time.time(), **self._work))
        self._tokens = self._sequences = 0
        self._work = dict.fromkeys(WORK, 0)
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
        self.memory.end("eval")
        self._last_event = now

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        now = time.perf_counter()
        self.saves.append({"step": state.global_step, "seconds": now - self._last_event})
        self._last_event = now

    def summary(self, timing_warmup: int = 0, measured: int | None = None) -> Summary:
        """Throughput over the measured steps (see `summarize_steps`)."""
        return summarize_steps(self.steps, timing_warmup, measured, evals=self.evals,
                               trl_num_tokens=self.trl_num_tokens, tracker_seconds=self.own_seconds)

    def noise_readings(self) -> dict[str, Any] | None:
        """Steal, busy cores, load and frequency over the measured steps only (None when they never ended)."""
        return self.noise.result if self.noise is not None else None

    def records(self) -> list[dict[str, Any]]:
        return [s.model_dump() for s in self.steps]


class SlowSteps(TrainerCallback):
    """inject_fault: slow, a real slowdown inside each step so that the step times carry it (for testing verdicts).

    Listed before the tracker: its `on_step_end` runs first, so the wait falls inside the step the tracker times
    and outside the tracker's own overhead. Each step waits `fraction` of its own work (from its begin to its end,
    as this callback sees them): `slow` (1.0) makes steps about twice as long, `slow:10%` 10% longer. The wait
    goes by the step itself, not the one before: the warm-up step, slower than the rest, must not lengthen the
    first measured one.
    """

    def __init__(self, fraction: float = 1.0) -> None:
        self._fraction = fraction
        self._began = 0.0
        self.waits: list[float] = []

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._began = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        wait = self._fraction * (time.perf_counter() - self._began)
        self.waits.append(wait)
        time.sleep(wait)

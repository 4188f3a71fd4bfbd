"""Measurements taken while the recipe trains, through one TrainerCallback (the training loop stays trl's own)."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from transformers import TrainerCallback


@dataclass
class StepRecord:
    """One optimizer step: its wall time (eval excluded), the non-padding tokens it trained on, its loss."""

    step: int
    seconds: float
    tokens: int | None = None
    loss: float | None = None


@dataclass
class StepTracker(TrainerCallback):
    """Times each optimizer step and reads trl's cumulative `num_tokens` (non-padding tokens) from its logs.

    Eval runs after `on_step_end`, so it is outside the step times and timed apart through `on_evaluate`.
    """

    steps: list[StepRecord] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    _t0: float = 0.0
    _tokens_seen: int = 0
    _last_end: float = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._t0 = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._last_end = time.perf_counter()
        self.steps.append(StepRecord(step=state.global_step, seconds=self._last_end - self._t0))

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    **kwargs: Any) -> None:
        record = {"step": state.global_step, "seconds": time.perf_counter() - self._last_end}
        record.update({k: v for k, v in (metrics or {}).items() if isinstance(v, int | float)})
        self.evals.append(record)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        logs = logs or {}
        if "num_tokens" in logs and self.steps:
            total = int(logs["num_tokens"])
            unassigned = [s for s in self.steps if s.tokens is None]
            if len(unassigned) == 1:  # logging_steps=1: exact per-step counts
                unassigned[0].tokens = total - self._tokens_seen
            elif unassigned:  # spread a logging window evenly (approximate; sweeps log every step)
                share = (total - self._tokens_seen) / len(unassigned)
                for s in unassigned:
                    s.tokens = round(share)
            self._tokens_seen = total
        if "loss" in logs and self.steps:
            self.steps[-1].loss = float(logs["loss"])

    def summary(self, warmup_steps: int = 0) -> dict[str, Any]:
        """Throughput over the measured steps (after `warmup_steps`), eval time kept apart."""
        measured = [s for s in self.steps[warmup_steps:] if s.tokens is not None]
        seconds = sum(s.seconds for s in measured)
        tokens = sum(s.tokens or 0 for s in measured)
        times = sorted(s.seconds for s in measured)
        out: dict[str, Any] = {
            "steps": len(self.steps),
            "measured_steps": len(measured),
            "warmup_steps_excluded": min(warmup_steps, len(self.steps)),
            "train_seconds_measured": seconds,
            "train_seconds_all_steps": sum(s.seconds for s in self.steps),
            "tokens_measured": tokens,
            "tokens_per_second": tokens / seconds if seconds > 0 else None,
            "eval_seconds": sum(e["seconds"] for e in self.evals),
            "evals": len(self.evals),
        }
        if times:
            out["step_seconds_p50"] = statistics.median(times)
            out["step_seconds_p90"] = times[min(len(times) - 1, round(0.9 * (len(times) - 1)))]
        return out

    def records(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.steps]

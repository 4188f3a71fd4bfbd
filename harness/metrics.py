"""Measurements of a training run.

Inside the cell: `StepTracker`, one TrainerCallback (the training loop stays trl's own) that times every optimizer
step and counts the non-padding tokens and sequences it trained on. Outside the cell: `TreeSampler`, a thread in
the launcher that samples the memory of the cell's whole process tree and the CPU that other processes take.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil
from transformers import TrainerCallback


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

    def summary(self, warmup_steps: int = 0, measured_steps: int | None = None) -> dict[str, Any]:
        """Throughput over the measured steps (after `warmup_steps`, `measured_steps` of them when given: a
        profiled step after them is not measured); warm-up (compile) and eval apart."""
        warm = self.steps[:warmup_steps]
        end = None if measured_steps is None else warmup_steps + measured_steps
        measured = self.steps[warmup_steps:end]
        seconds = sum(s.seconds for s in measured)
        tokens = sum(s.tokens for s in measured)
        sequences = sum(s.sequences for s in measured)
        times = sorted(s.seconds for s in measured)
        out: dict[str, Any] = {
            "steps": len(self.steps),
            "warmup_steps": len(warm),
            "measured_steps": len(measured),
            "warmup_seconds": sum(s.seconds for s in warm),
            "measured_seconds": seconds,
            "measured_tokens": tokens,
            "measured_sequences": sequences,
            "tokens_per_second": tokens / seconds if seconds > 0 else None,
            "sequences_per_second": sequences / seconds if seconds > 0 else None,
            "data_seconds": sum(s.data_seconds for s in measured),
            "allreduce_seconds": sum(s.allreduce_seconds for s in measured),
            "eval_seconds": sum(e["seconds"] for e in self.evals),
            "evals": len(self.evals),
            "tokens_all_steps": sum(s.tokens for s in self.steps),
            "trl_num_tokens": self.trl_num_tokens,
            "tracker_seconds_per_step": self.own_seconds / len(self.steps) if self.steps else None,
        }
        if times:
            out["step_seconds_p50"] = statistics.median(times)
            out["step_seconds_p90"] = times[min(len(times) - 1, round(0.9 * (len(times) - 1)))]
            out["step_seconds_cv"] = statistics.pstdev(times) / statistics.fmean(times) if len(times) > 1 else 0.0
        return out

    def records(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.steps]

    @classmethod
    def from_records(cls, steps: list[dict[str, Any]]) -> StepTracker:
        tracker = cls()
        tracker.steps = [StepRecord(**s) for s in steps]
        return tracker


def combine_ranks(ranks: list[dict[str, Any]], warmup_steps: int, measured_steps: int | None = None) -> dict[str, Any]:
    """Global figures of a data-parallel cell from its ranks' own results.

    Every step is a global step: its tokens and sequences are summed over the ranks and its time is the slowest
    rank's (they wait for each other in the all-reduce). Throughput is then global tokens over that time, never an
    average of per-rank throughputs. The loss is rank 0's (the trainer logs the mean across ranks there).
    """
    by_rank = sorted(ranks, key=lambda r: r["rank"])
    n_steps = min(len(r["steps"]) for r in by_rank)
    steps = []
    for i in range(n_steps):
        per = [r["steps"][i] for r in by_rank]
        slowest = max(per, key=lambda s: s["seconds"])
        steps.append({**slowest, "tokens": sum(s["tokens"] for s in per),
                      "sequences": sum(s["sequences"] for s in per), "loss": per[0].get("loss"),
                      "allreduce_seconds": max(s.get("allreduce_seconds", 0.0) for s in per)})
    tracker = StepTracker.from_records(steps)
    tracker.evals = by_rank[0].get("evals", [])
    trl_tokens = [r["summary"].get("trl_num_tokens") for r in by_rank]
    tracker.trl_num_tokens = trl_tokens[0]  # trl gathers its count across ranks already
    return {"summary": tracker.summary(warmup_steps, measured_steps), "steps": tracker.records(),
            "evals": tracker.evals}


def _sum_over(procs: list[psutil.Process], read: Callable[[psutil.Process], int], peaks: dict[int, int]) -> int:
    """Sum a per-process reading over a tree, keeping each process's own peak; gone processes count zero."""
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            value = read(p)
            total += value
            peaks[p.pid] = max(peaks.get(p.pid, 0), value)
    return total


@dataclass
class TreeSampler:
    """Samples a process tree from outside it: peak RSS and USS of the whole tree, and foreign CPU load.

    Foreign load is the CPU time that processes outside the tree (and outside this sampler's own process) used,
    in cores, over each second: the signal that a measurement was disturbed.
    """

    pid: int
    interval: float = 0.1
    uss_interval: float = 5.0
    sampler_cpu_seconds: float = 0.0
    peak_rss: int = 0
    peak_uss: int = 0
    samples: int = 0
    foreign_cores: list[float] = field(default_factory=list)
    peak_rss_by_pid: dict[int, int] = field(default_factory=dict)
    peak_uss_by_pid: dict[int, int] = field(default_factory=dict)
    timeline: list[tuple[float, int]] = field(default_factory=list)
    _me_start: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> TreeSampler:
        self._me_start = self._cpu_seconds([psutil.Process()])
        self._thread = threading.Thread(target=self._run, name="xeonft-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    @staticmethod
    def _cpu_seconds(procs: list[psutil.Process]) -> float:
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        """RSS every tick (reading /proc/PID/statm costs microseconds). USS walks every page mapping (about 40 ms
        of CPU for a 2 GB process), so it is read every `uss_interval` seconds and when RSS has grown 2% past
        the last read, at most once a second. The tree's members and the CPU accounting refresh once a second."""
        me = psutil.Process()
        t0 = time.monotonic()
        last_t, last_busy, last_tree, last_me = t0, self._busy(), 0.0, self._cpu_seconds([me])
        last_uss, rss_at_uss = -1e9, 0
        known: dict[int, float] = {}
        procs = self._tree()
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            rss = _sum_over(procs, lambda p: p.memory_info().rss, self.peak_rss_by_pid)
            self.peak_rss = max(self.peak_rss, rss)
            self.samples += 1
            grown = rss > rss_at_uss * 1.02 and now - last_uss >= 1.0
            if grown or now - last_uss >= self.uss_interval:
                uss = _sum_over(procs, lambda p: p.memory_full_info().uss, self.peak_uss_by_pid)
                self.peak_uss = max(self.peak_uss, uss)
                last_uss, rss_at_uss = now, rss
            if now - last_t >= 1.0:
                procs = self._tree()
                # Each live member's own CPU plus that of its children already reaped (short-lived helpers
                # would otherwise count as foreign); a member that has gone is dropped, as its time now sits
                # in its parent's children_* counters.
                live: dict[int, float] = {}
                for p in procs:
                    with contextlib.suppress(psutil.Error):
                        t = p.cpu_times()
                        live[p.pid] = t.user + t.system + t.children_user + t.children_system
                known = live or known
                busy, tree, mine = self._busy(), sum(known.values()), self._cpu_seconds([me])
                foreign = (busy - last_busy) - (tree - last_tree) - (mine - last_me)
                self.foreign_cores.append(max(0.0, foreign / (now - last_t)))
                self.timeline.append((round(now - t0, 2), rss))
                self.sampler_cpu_seconds = mine - self._me_start
                last_t, last_busy, last_tree, last_me = now, busy, tree, mine

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)

    def summary(self) -> dict[str, Any]:
        loads = sorted(self.foreign_cores)
        return {
            "peak_rss_bytes": self.peak_rss,
            "peak_uss_bytes": self.peak_uss,
            "memory_samples": self.samples,
            "foreign_cpu_cores_mean": statistics.fmean(loads) if loads else 0.0,
            "foreign_cpu_cores_p90": loads[min(len(loads) - 1, round(0.9 * (len(loads) - 1)))] if loads else 0.0,
            "launcher_cpu_seconds": self.sampler_cpu_seconds,
        }

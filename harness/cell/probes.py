"""The in-cell probes beside the step clock: oneDNN's verbose log over one warm-up step (which kernels ran: the
AMX proof), torch.profiler over one extra step after the measured ones, and what torch.compile did.

Each probe covers a step that is never measured, because each slows the step it covers.
"""

from __future__ import annotations

import time
from typing import Any


def _probe_class() -> type:
    from transformers import TrainerCallback

    from harness.measure.onednn import capture_verbose, summarize

    class Probe(TrainerCallback):
        """oneDNN's verbose log over one step (the last warm-up step: logging slows it), summarized."""

        def __init__(self, step: int) -> None:
            self.step, self.summary, self._ctx = step, None, None  # type: Any, Any, Any
            self.parse_seconds = 0.0  # reading and summarizing the log, after the step the tracker timed

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.step >= 1 and state.global_step + 1 == self.step:
                self._ctx = capture_verbose()
                self._lines = self._ctx.__enter__()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self._ctx is not None:
                t0 = time.monotonic()
                self._ctx.__exit__(None, None, None)
                self._ctx = None
                self.summary = summarize(self._lines)
                self.parse_seconds = time.monotonic() - t0

    return Probe


def _profiler_class() -> type:
    from transformers import TrainerCallback

    from harness.measure.profile import categorize, profile_events

    class Profiler(TrainerCallback):
        """torch.profiler over one extra step after the measured ones (profiling slows the step it covers)."""

        def __init__(self, step: int) -> None:
            self.step, self.summary, self._prof = step, None, None  # type: Any, Any, Any

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step + 1 == self.step:
                import torch

                self._prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                self._prof.__enter__()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self._prof is not None:
                self._prof.__exit__(None, None, None)
                self.summary = categorize(profile_events(self._prof))
                self._prof = None

    return Profiler


def onednn_probe(step: int) -> Any:
    """A TrainerCallback made on demand, so that importing the worker stays light."""
    return _probe_class()(step)


def profiler(step: int) -> Any:
    """torch.profiler over step `step` (one after the measured ones), as a TrainerCallback."""
    return _profiler_class()(step)


def compile_report() -> dict[str, Any]:
    """What torch.compile did in this process: compile time (apart from the steady-state steps), frames compiled,
    recompiles, graph breaks, and compile-cache hits (the launcher shares one cache across cells)."""
    try:
        from torch._dynamo.utils import counters, get_compilation_metrics
    except ImportError:
        return {}
    metrics = get_compilation_metrics()
    seconds = sum(getattr(m, "entire_frame_compile_time_s", None) or 0.0 for m in metrics)
    inductor: dict[str, int] = counters.get("inductor", {})
    aot: dict[str, int] = counters.get("aot_autograd", {})
    return {
        "compile_seconds": seconds,
        "frames_compiled": len(metrics),
        "unique_graphs": dict(counters.get("stats", {})).get("unique_graphs", 0),
        "recompiles": sum(counters.get("recompiles", {}).values()),
        "recompile_reasons": dict(counters.get("recompiles", {})),
        "graph_breaks": sum(counters.get("graph_break", {}).values()),
        "graph_break_reasons": dict(counters.get("graph_break", {})),
        "fx_graph_cache_hits": inductor.get("fxgraph_cache_hit", 0),
        "fx_graph_cache_misses": inductor.get("fxgraph_cache_miss", 0),
        "autograd_cache_hits": aot.get("autograd_cache_hit", 0),
        "autograd_cache_misses": aot.get("autograd_cache_miss", 0),
    }

"""The isolated cell: `python -m harness.worker SPEC.json RESULT.json`.

It knows nothing of matrices: it reads one CellSpec, trains the recipe for the spec's steps with a StepTracker
attached, and writes what it measured. Progress goes to stdout as `@@xeonft step N M` lines for the launcher;
everything else goes to stderr. Exit 0 on success, 2 on bad input, 3 when the cell cannot run here (IPEX
missing); the last stderr line says why.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROGRESS_PREFIX = "@@xeonft"
PLACEMENTS_VAR = "XEONFT_RANK_PLACEMENTS"  # JSON list, one {cpus, mem_node} per local rank, set by the launcher
BOUND_VAR = "XEONFT_BOUND"
UNAVAILABLE_PREFIX = "xeonft: unavailable:"  # the stderr line of a cell that cannot run here (exit code 3)


def world() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment; (0, 0, 1) outside it."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1))


def bind_rank(argv: list[str]) -> None:
    """Put this rank on its own cores (and memory node) before torch loads: numactl by re-exec, where installed
    (the pid torchrun watches stays the same), else sched_setaffinity; OMP_NUM_THREADS = its core count."""
    placements = os.environ.get(PLACEMENTS_VAR)
    if not placements or os.environ.get(BOUND_VAR):
        return
    _, local_rank, _ = world()
    mine = json.loads(placements)[local_rank]
    cpus, node = mine["cpus"], mine.get("mem_node")
    os.environ.update(OMP_NUM_THREADS=str(len(cpus)), MKL_NUM_THREADS=str(len(cpus)), OMP_PROC_BIND="close",
                      OMP_PLACES="cores", **{BOUND_VAR: "1"})
    numactl = shutil.which("numactl")
    if numactl:
        args = [numactl, f"--physcpubind={','.join(map(str, cpus))}"]
        if node is not None:
            args.append(f"--membind={node}")
        os.execv(numactl, [*args, sys.executable, "-m", "harness.worker", *argv])
    os.sched_setaffinity(0, cpus)


def _probe_class() -> type:
    from transformers import TrainerCallback

    from harness.onednn import capture_verbose, summarize

    class Probe(TrainerCallback):
        """oneDNN's verbose log over one step (the last warm-up step: logging slows it), summarized."""

        def __init__(self, step: int) -> None:
            self.step, self.summary, self._ctx = step, None, None

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.step >= 1 and state.global_step + 1 == self.step:
                self._ctx = capture_verbose()
                self._lines = self._ctx.__enter__()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self._ctx is not None:
                self._ctx.__exit__(None, None, None)
                self._ctx = None
                self.summary = summarize(self._lines)

    return Probe


def _profiler_class() -> type:
    from transformers import TrainerCallback

    from harness.profile import categorize, profile_events

    class Profiler(TrainerCallback):
        """torch.profiler over one extra step after the measured ones (profiling slows the step it covers)."""

        def __init__(self, step: int) -> None:
            self.step, self.summary, self._prof = step, None, None

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


def lora_checksum(model: Any) -> str:
    """A digest of every trainable (LoRA) weight: equal on every rank when data parallelism kept them in sync."""
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _progress(step: int, total: int) -> None:
    print(f"{PROGRESS_PREFIX} step {step} {total}", flush=True)


def _inject(fault: str) -> None:
    """Faults on purpose, for testing the harness: a real crash, hang or allocation failure at step 1."""
    if fault == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "hang":
        time.sleep(10**6)
    elif fault == "oom":
        raise MemoryError("injected: DefaultCPUAllocator: can't allocate memory")


def compile_report() -> dict[str, Any]:
    """What torch.compile did in this process: compile time (apart from the steady-state steps), frames compiled,
    recompiles, graph breaks, and compile-cache hits (the launcher shares one cache across cells)."""
    try:
        from torch._dynamo.utils import counters, get_compilation_metrics
    except ImportError:
        return {}
    metrics = get_compilation_metrics()
    seconds = sum(getattr(m, "entire_frame_compile_time_s", None) or 0.0 for m in metrics)
    inductor, aot = counters.get("inductor", {}), counters.get("aot_autograd", {})
    return {
        "compile_seconds": seconds,
        "frames_compiled": len(metrics),
        "unique_graphs": counters.get("stats", {}).get("unique_graphs", 0),
        "recompiles": sum(counters.get("recompiles", {}).values()),
        "recompile_reasons": dict(counters.get("recompiles", {})),
        "graph_breaks": sum(counters.get("graph_break", {}).values()),
        "graph_break_reasons": dict(counters.get("graph_break", {})),
        "fx_graph_cache_hits": inductor.get("fxgraph_cache_hit", 0),
        "fx_graph_cache_misses": inductor.get("fxgraph_cache_miss", 0),
        "autograd_cache_hits": aot.get("autograd_cache_hit", 0),
        "autograd_cache_misses": aot.get("autograd_cache_miss", 0),
    }


def run_cell(spec: Any) -> dict[str, Any]:
    """Train one cell and return its measurements."""
    import torch
    from peft import get_peft_model
    from transformers import set_seed

    from harness.config import COMPILED
    from harness.data import load_splits
    from harness.fingerprint import versions
    from harness.metrics import StepTracker
    from harness.models import resolve_model
    from harness.recipe import build_trainer, lora_config, model_dtype
    from harness.topology import current_binding

    cfg = spec.config
    rank, local_rank, world_size = world()
    if cfg.threads and world_size == 1:
        torch.set_num_threads(cfg.threads)
    elif os.environ.get(PLACEMENTS_VAR):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    set_seed(cfg.seed)
    if cfg.backend == "ipex":
        from harness.recipe import load_ipex

        load_ipex()  # unavailable before a minute is spent loading the model
    t0 = time.perf_counter()
    train_ds, eval_ds = load_splits(cfg.dataset, cfg.train_size, cfg.eval_size, cfg.split_seed)
    loaded = resolve_model(cfg.model, model_dtype(cfg), cfg.tokenizer, cfg.trust_remote_code, seed=cfg.seed)
    peft_model = get_peft_model(loaded.model, lora_config(cfg))
    fault = spec.launch.inject_fault

    bare = spec.launch.instrument == "bare"

    def on_step(step: int, total: int) -> None:
        if not bare:
            _progress(step, total)
        if step == 1 and fault in ("crash", "hang", "oom") and rank == world_size - 1:  # the last rank dies
            _inject(fault)

    tracker = StepTracker(on_step=on_step)
    probe = onednn_probe(spec.warmup_steps) if not bare else None
    profiler = _profiler_class()(spec.warmup_steps + spec.measured_steps + 1) if spec.profile else None
    if fault == "slow":  # a real slowdown inside each step, so the step times carry it
        count_batch = tracker.on_batch

        def slow_batch(tokens: int, sequences: int) -> None:
            if tracker.steps:
                time.sleep(0.25 * tracker.steps[-1].compute_seconds)
            count_batch(tokens, sequences)

        tracker.on_batch = slow_batch  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory(prefix="xeonft-cell-") as tmp:
        trainer = build_trainer(cfg, peft_model, loaded.tokenizer, train_ds, eval_ds, Path(tmp),
                                [c for c in (tracker, probe, profiler) if c is not None])
        setup_seconds = time.perf_counter() - t0
        trainer.train()
    evals = [e for e in tracker.evals if "eval_loss" in e]
    return {
        "summary": tracker.summary(warmup_steps=spec.warmup_steps, measured_steps=spec.measured_steps),
        "steps": tracker.records(),
        "evals": tracker.evals,
        "eval_loss": evals[-1]["eval_loss"] if evals else None,
        "setup_seconds": setup_seconds,
        "model": loaded.info,
        "train_rows": len(train_ds),
        "eval_rows": len(eval_ds) if eval_ds is not None else 0,
        "torch_threads": torch.get_num_threads(),
        "binding": current_binding(),
        "versions": versions(),
        "compile": compile_report() if cfg.backend in COMPILED else None,
        "rank": rank,
        "local_rank": local_rank,
        "world_size": world_size,
        "pid": os.getpid(),
        "lora_checksum": lora_checksum(peft_model),
        "onednn": probe.summary if probe else None,
        "profile": profiler.summary if profiler else None,
    }


def main(argv: list[str] | None = None) -> int:
    import warnings

    from harness.errors import Unavailable, XeonftError
    from harness.matrix import CellSpec

    warnings.filterwarnings("ignore", category=FutureWarning)
    from pydantic import ValidationError

    args = list(argv if argv is not None else sys.argv[1:])
    bind_rank(args)
    spec_path, result_path = args[:2]
    rank, _, world_size = world()
    if world_size > 1:  # every rank writes its own result beside the path it was given
        result_path = str(Path(result_path).with_name(f"result.rank{rank}.json"))
    try:
        spec = CellSpec.model_validate_json(Path(spec_path).read_text(encoding="utf-8"))
    except ValidationError as err:
        print(f"xeonft: error: the cell spec does not fit this xeonft's CellSpec (a different version?): "
              f"{err.errors()[0]['loc']}: {err.errors()[0]['msg']}", file=sys.stderr)
        return 2
    try:
        result = run_cell(spec)
    except Unavailable as err:
        print(f"{UNAVAILABLE_PREFIX} {err}", file=sys.stderr)
        return err.exit_code
    except XeonftError as err:
        print(f"xeonft: error: {err}", file=sys.stderr)
        return 2
    tmp = Path(result_path).with_suffix(".partial")
    tmp.write_text(json.dumps(result, default=str), encoding="utf-8")
    tmp.replace(result_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One cell's training: the recipe with the step clock and the probes attached, for the spec's steps.

This is the worker's cell (`train_cell`); the launcher's side of a cell is `harness.launch.supervisor`.
"""

from __future__ import annotations

import functools
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.cell.protocol import DUET_VAR, PLACEMENTS_VAR, meet, progress_line, world
from harness.config.spec import CellSpec, slow_fraction
from harness.results.records import CellResult


def lora_checksum(model: Any) -> str:
    """A digest of every trainable (LoRA) weight: equal on every rank when data parallelism kept them in sync."""
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _inject(fault: str) -> None:
    """Faults on purpose, for testing the harness: a real crash, hang or allocation failure at step 1."""
    if fault == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "hang":
        time.sleep(10**6)
    elif fault == "oom":
        raise MemoryError("injected: DefaultCPUAllocator: can't allocate memory")


def train_cell(spec: CellSpec) -> CellResult:
    """Train one cell and return what it measured."""
    import torch
    from peft import get_peft_model
    from transformers import set_seed

    from harness.cell.common_eval import CommonEvaluator
    from harness.cell.data import load_splits
    from harness.cell.probes import compile_report, onednn_probe, profiler
    from harness.cell.recipe import build_trainer, load_base, lora_config
    from harness.cell.reference_tokens import read as read_reference
    from harness.cell.tracker import SlowSteps, StepTracker
    from harness.config.finetune import COMPILED
    from harness.measure.fingerprint import packages, versions, xeonft_commit
    from harness.measure.host import current_binding
    from harness.measure.phases import WorkerClock

    cfg = spec.config
    clock = WorkerClock(began=time.monotonic())
    rank, local_rank, world_size = world()
    if cfg.threads and world_size == 1:
        torch.set_num_threads(cfg.threads)
    elif os.environ.get(PLACEMENTS_VAR):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    set_seed(cfg.seed)
    if cfg.backend == "ipex":
        from harness.cell.recipe import load_ipex

        load_ipex()  # unavailable before a minute is spent loading the model
    t0 = time.perf_counter()
    train_ds, eval_ds = load_splits(cfg.dataset, cfg.train_size, cfg.eval_size, cfg.split_seed)
    clock.data_load = time.perf_counter() - t0
    loaded = load_base(cfg)
    peft_model = get_peft_model(loaded.model, lora_config(cfg))
    clock.model_load = time.perf_counter() - t0 - clock.data_load
    fault = spec.launch.inject_fault
    # a configuration's first run evaluates and logs oneDNN's kernels; its other runs measure the same steps without
    # them, unless the matrix asks for an evaluation in every run
    first = spec.repeat == 0
    evaluate = eval_ds is not None and (first or spec.evaluate == "every")
    skipped = [*([] if evaluate or eval_ds is None else ["eval"]), *([] if first or bare_run(spec) else ["onednn"])]

    bare = bare_run(spec)
    # xeonft's own eval loss, a row at a time: under a compiled backend each new length would recompile, so those
    # leave it out for now; the base is measured here, before anything trains or is compiled
    own_eval = evaluate and world_size == 1 and cfg.backend not in COMPILED
    reference = (read_reference(Path(spec.own_eval_tokens), len(loaded.tokenizer))
                 if own_eval and spec.own_eval_tokens else None)
    evaluator = CommonEvaluator(peft_model, loaded.tokenizer, eval_ds, cfg, reference) if own_eval else None

    def on_step(step: int, total: int) -> None:
        if not bare:
            print(progress_line(step, total), flush=True)
        if step == 1 and fault in ("crash", "hang", "oom") and rank == world_size - 1:  # the last rank dies
            _inject(fault)

    barrier = os.environ.get(DUET_VAR)
    tracker = StepTracker(on_step=on_step, timing_warmup=spec.timing_warmup_steps, measured=spec.measured_steps,
                          meet=functools.partial(meet, barrier) if barrier else None)
    probe = onednn_probe(spec.timing_warmup_steps) if not bare and first else None
    prof = profiler(spec.timing_warmup_steps + spec.measured_steps + 1) if spec.profile else None
    fraction = slow_fraction(fault)
    slow = SlowSteps(fraction) if fraction is not None else None
    with tempfile.TemporaryDirectory(prefix="xeonft-cell-") as tmp:
        t1 = time.perf_counter()
        trainer = build_trainer(cfg, peft_model, loaded.tokenizer, train_ds, eval_ds if evaluate else None, Path(tmp),
                                [c for c in (slow, tracker, probe, prof) if c is not None])
        clock.data_prep = trainer.prep_seconds
        clock.trainer_build = time.perf_counter() - t1 - trainer.prep_seconds
        clock.data_cache = trainer.data_cache
        setup_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        trainer.train()
        clock.train = time.perf_counter() - t1
    common = evaluator.after(peft_model) if evaluator else None
    clock.own_eval = common.seconds if common else 0.0
    if probe is not None and probe.summary is not None:
        clock.verbose_step, clock.verbose_parse = probe.step, probe.parse_seconds
    evals = [e for e in tracker.evals if "eval_loss" in e]
    result = CellResult(
        summary=tracker.summary(spec.timing_warmup_steps, spec.measured_steps),
        steps=tracker.steps,
        evals=tracker.evals,
        saves=tracker.saves,
        eval_loss=evals[-1]["eval_loss"] if evals else None,
        common_eval=common,
        setup_seconds=setup_seconds,
        model=loaded.info,
        train_rows=len(train_ds),
        eval_rows=len(eval_ds) if eval_ds is not None else 0,
        torch_threads=torch.get_num_threads(),
        binding=current_binding(),
        versions=versions(),
        packages=packages(),
        xeonft_commit=xeonft_commit(),
        compile=compile_report() if cfg.backend in COMPILED else None,
        rank=rank,
        local_rank=local_rank,
        world_size=world_size,
        pid=os.getpid(),
        lora_checksum=lora_checksum(peft_model),
        onednn=probe.summary if probe else None,
        profile=prof.summary if prof else None,
        noise=tracker.noise_readings(),
        measured_epoch=tracker.measured_epoch,
        memory_phases=tracker.memory.summary(),
        skipped=skipped or None,
    )
    result.clock = clock.model_copy(update={"ended": time.monotonic()})
    return result


def bare_run(spec: CellSpec) -> bool:
    """A bare cell runs without the harness's probes (the step clock stays): what instrumentation costs."""
    return spec.launch.instrument == "bare"

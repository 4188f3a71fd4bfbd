"""Runs a matrix: one cell at a time, each in its own process (`harness.launch.supervisor`), into a result set.

The launcher knows nothing about training: it hands a CellSpec to `python -m harness.cell.worker`, watches the
process tree from outside (memory, foreign CPU load), and turns what happened into one stored record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.config.matrix import Matrix
from harness.config.spec import CellSpec
from harness.launch import envs
from harness.launch.console import console, describe, one_line, summary_table
from harness.launch.supervisor import supervise
from harness.measure.fingerprint import environment_key, fingerprint
from harness.measure.peak import measure_peak
from harness.results.store import ResultStore


def axis_values(spec: CellSpec, axes: list[str]) -> dict[str, Any]:
    def value(axis: str) -> Any:
        for holder in (spec.config, spec.launch, spec):
            if axis in type(holder).model_fields:
                return getattr(holder, axis)
        return None

    return {a: value(a) for a in axes}


def run_sweep(matrix: Matrix, out: str | Path | None = None, resume: bool = False,
              retry_failed: bool = False) -> ResultStore:
    """Run every cell of the matrix into results/<name>/ (or `out`); return the store."""
    for name in sorted({c.launch.env for c in matrix.cells}):
        envs.interpreter(name)  # every environment exists, before anything runs
    store = ResultStore(out or Path("results") / matrix.name)
    fp = fingerprint()
    env_key = environment_key(fp)
    keys = [c.key(env_key) for c in matrix.cells]
    if store.exists() and not resume:
        store.open(matrix.document, fp, env_key, keys, resume=False)  # refuses, before the peak is measured
    peak = None
    if matrix.peak:
        console.print("measuring the GEMM peak (2048^3, bf16 and fp32) ...")
        peak = measure_peak()
        console.print(f"peak: bf16 {peak['bf16']:.2f} TFLOP/s, fp32 {peak['fp32']:.2f} TFLOP/s")
    store.open(matrix.document, fp, env_key, keys, resume=resume, peak=peak)
    axes = list(matrix.axes)
    todo = [(c, k) for c, k in zip(matrix.cells, keys, strict=True) if store.should_run(k, resume, retry_failed)]
    skipped = len(keys) - len(todo)
    console.print(f"[bold]xeonft run[/] {matrix.name}: {len(keys)} cells ({skipped} already done) -> {store.root}")
    if not fp["cpu"]["amx"]:
        console.print("[yellow]note:[/] this CPU has no AMX; bf16 runs on AVX-512 kernels here")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False, refresh_per_second=2) as progress:
        cells_task = progress.add_task("cells", total=len(todo))
        steps_task = progress.add_task("steps", total=1)
        for spec, key in todo:
            values = axis_values(spec, axes)
            label = describe(values) + (f" repeat={spec.repeat}" if spec.repeat else "")
            progress.update(steps_task, description=f"  {label}", completed=0,
                            total=spec.timing_warmup_steps + spec.measured_steps)
            record = supervise(spec, key, store, disturbance_cores=matrix.disturbance_cores,
                              on_step=lambda step, total: progress.update(steps_task, completed=step, total=total))
            record.axes = values
            store.put(key, record)
            progress.advance(cells_task)
            progress.console.print(one_line(label, record))
    console.print(summary_table(store.records(), axes))
    return store

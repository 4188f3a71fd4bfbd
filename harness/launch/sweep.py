"""Runs a matrix: one cell at a time, each in its own process (`harness.launch.supervisor`), into a result set.

The launcher knows nothing about training: it hands a CellSpec to `python -m harness.cell.worker`, watches the
process tree from outside (memory, foreign CPU load), and turns what happened into one stored record. One sweep
writes a result set at a time (a lock on the folder), and one sweep times on this machine at a time (a machine-wide
lock: the second waits, or with `wait=False` refuses). SIGTERM and SIGHUP stop the sweep as Ctrl-C does: the
running cell's whole tree is killed, nothing is half-written, finished cells stay.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.base.errors import Failure
from harness.base.stats import enough_runs, summarize_runs
from harness.config.identity import store_key
from harness.config.matrix import Matrix
from harness.config.spec import CellSpec
from harness.config.stack import Stack
from harness.launch import duet as duets
from harness.launch import emulation, envs, stacks
from harness.launch.calibrator import Calibrator
from harness.launch.console import calibration_line, console, describe, one_line, summary_table
from harness.launch.convert import prepare_models
from harness.launch.lifeline import termination_as_interrupt
from harness.launch.locks import MachineLock, ResultSetLock
from harness.launch.order import in_rounds, sweep_seed
from harness.launch.peaks import cell_peak, peaks_for
from harness.launch.reference import ReferenceTokens, environments
from harness.launch.supervisor import supervise, unavailable
from harness.measure.fingerprint import environment_key, fingerprint
from harness.measure.kind import bf16_note
from harness.measure.phases import SweepClock, share_line
from harness.measure.system import repeatability_warnings, system_state
from harness.results.records import CellRecord
from harness.results.store import ResultStore


def axis_values(spec: CellSpec, axes: list[str]) -> dict[str, Any]:
    def value(axis: str) -> Any:
        for holder in (spec.config, spec.launch, spec):
            if axis in type(holder).model_fields:
                found = getattr(holder, axis)
                return found.name if isinstance(found, Stack) else found  # a stack is shown by its name
        return None

    return {a: value(a) for a in axes}


def cell_key(spec: CellSpec, env_key: str) -> str:
    """The store's key; a library environment's requirements digest is part of it (pins changed: new cells)."""
    return store_key(spec, env_key, envs.digest(spec.launch.env))


class Sweep:
    """One sweep's state: the store, the environment key, the peaks, the progress display."""

    def __init__(self, matrix: Matrix, store: ResultStore, env_key: str, peaks: dict[str, dict[str, float]],
                 resume: bool, retry_failed: bool, seed: int = 0, bf16_kernels: bool = True) -> None:
        self.matrix, self.store, self.env_key, self.peaks = matrix, store, env_key, peaks
        self.bf16_kernels, self.emulated_bf16 = bf16_kernels, emulation.allowed(matrix.emulated_bf16)
        self.seed = seed  # of each round's order (`harness.launch.order`)
        self.resume, self.retry_failed = resume, retry_failed
        self.calibrator: Calibrator | None = None  # the calibration beside each cell (None: the matrix has it off)
        # one set of eval token ids for every stack, where the cells span several (None: one environment)
        self.reference = ReferenceTokens(store.root) if environments(matrix.cells) > 1 else None
        self.axes = list(matrix.axes)
        self.started = time.monotonic()
        self.total = 0  # cells in the progress bar

    def key(self, spec: CellSpec) -> str:
        return cell_key(spec, self.env_key)

    def run(self, specs: list[CellSpec], progress: Progress, cells_task: Any, steps_task: Any) -> None:
        for spec in specs:
            key = self.key(spec)
            values = axis_values(spec, self.axes)
            label = describe(values) + (f" repeat={spec.repeat}" if spec.repeat else "")
            progress.update(steps_task, description=f"  {label}", completed=0,
                            total=spec.timing_warmup_steps + spec.measured_steps)
            refuse = emulation.refusal(spec, self.bf16_kernels, self.emulated_bf16)
            if refuse is None and self.reference is not None:
                spec = self.reference.attach(spec)
            record = unavailable(spec, key, refuse) if refuse is not None else supervise(
                spec, key, self.store, disturbance_cores=self.matrix.disturbance_cores, calibrator=self.calibrator,
                on_step=lambda step, total: progress.update(steps_task, completed=step, total=total))
            record.axes = values
            record.peak = cell_peak(spec, self.peaks) if refuse is None else None
            self._put(key, record, label)
            progress.advance(cells_task)
            progress.console.print(one_line(label, record))

    def _label(self, spec: CellSpec) -> str:
        return describe(axis_values(spec, self.axes)) + (f" repeat={spec.repeat}" if spec.repeat else "")

    def _put(self, key: str, record: CellRecord, label: str) -> None:
        try:
            self.store.put(key, record)
        except OSError as err:
            why = err.strerror or str(err)
            raise Failure(f"could not record the cell {label} in {self.store.root}: {why}; the cells "
                          "recorded before it are intact: free space and run again with --resume") from None

    def run_duets(self, todo: list[duets.Duet], progress: Progress, cells_task: Any, steps_task: Any) -> None:
        """Each duet's two cells at once on the two halves of the cores (`harness.launch.duet`); both are
        recorded with their duet figure, the reference first. A duet cell has no MFU: it shares the machine."""
        sides = duets.halves()
        for d in todo:  # before anything runs
            for spec in (d.reference, d.candidate):
                if why := emulation.refusal(spec, self.bf16_kernels, self.emulated_bf16):
                    raise Failure(f"design: duet: {why}")
                if spec.config.threads and spec.config.threads > len(sides[0].cpus):
                    raise Failure(f"design: duet gives each cell half of the {2 * len(sides[0].cpus)} cores used "
                                  f"here ({len(sides[0].cpus)}); threads {spec.config.threads} would oversubscribe "
                                  "its half: leave threads out or set it at most that")
        for d in todo:
            if self.reference is not None:
                d = dataclasses.replace(d, reference=self.reference.attach(d.reference),
                                        candidate=self.reference.attach(d.candidate))
            ref_label, cand_label = self._label(d.reference), self._label(d.candidate)
            progress.update(steps_task, description=f"  duet {d.number + 1}: {ref_label} | {cand_label}",
                            completed=0, total=d.reference.timing_warmup_steps + d.reference.measured_steps)
            ref_key, cand_key = self.key(d.reference), self.key(d.candidate)

            def one(spec: CellSpec, where: Any, beside: list[int], started: Any, env: dict[str, str],
                    d: duets.Duet = d, keys: tuple[str, str] = (ref_key, cand_key)) -> CellRecord:
                is_ref = spec is d.reference
                return supervise(spec, keys[0] if is_ref else keys[1], self.store,
                                 disturbance_cores=self.matrix.disturbance_cores, placement=where, partner_pids=beside,
                                 on_start=started, env_extra=env, on_step=(lambda step, total: progress.update(
                                     steps_task, completed=step, total=total)) if is_ref else None)

            ref, cand = duets.run_pair(d, sides, one)
            ref.duet = duets.part(ref, cand, cand_key, d, "reference")
            cand.duet = duets.part(cand, ref, ref_key, d, "candidate")
            for spec, key, record, label in ((d.reference, ref_key, ref, ref_label),
                                             (d.candidate, cand_key, cand, cand_label)):
                record.axes = axis_values(spec, self.axes)
                self._put(key, record, label)
                progress.console.print(one_line(label, record))
            progress.advance(cells_task, 2)
            progress.console.print(duet_line(ref, cand))

    def runs(self, spec: CellSpec, upto: int) -> list[float]:
        """Throughput of the measured repeats 0..upto-1 of a configuration (the run is the unit)."""
        out = []
        for r in range(upto):
            rec = self.store.get(self.key(spec.model_copy(update={"repeat": r})))
            if rec is not None and rec.status == "ok" and rec.result and rec.result.summary.tokens_per_second:
                out.append(rec.result.summary.tokens_per_second)
        return out

    def more_rounds(self, progress: Progress, cells_task: Any, steps_task: Any) -> list[str]:
        """Adaptive repeats: another interleaved round of the configurations whose interval is still wider than the
        target, until none is, `max` is reached or the budget would be overrun. Returns the keys it added."""
        auto = self.matrix.auto
        if auto is None:
            return []
        first = [c for c in self.matrix.cells if c.repeat == 0]
        added: list[str] = []
        for r in range(auto.min, auto.max):
            # furthest from the target first: where the budget leaves room for part of a round, the runs go there
            width = {self.key(c): summarize_runs(runs).half_width or math.inf for c in first
                     if (runs := self.runs(c, r)) and not enough_runs(runs, auto.target, auto.min, auto.max)}
            need = sorted((c for c in first if self.key(c) in width), key=lambda c: -width[self.key(c)])
            if not need:
                break
            left = math.inf if auto.budget is None else auto.budget - (time.monotonic() - self.started)
            fits = self._fitting(need, r, left)
            if not fits:
                console.print(f"[yellow]repeats: auto:[/] the budget ({auto.budget:.0f} s) leaves no room for round "
                              f"{r + 1}: {len(need)} configuration(s) stay above the target")
                break
            console.print(f"repeats: auto: round {r + 1} for {len(fits)} configuration(s) whose 95% interval is "
                          f"wider than ±{auto.target:.0%}" + (f" (the budget leaves room for {len(fits)} of "
                                                               f"{len(need)}, the widest first)"
                                                               if len(fits) < len(need) else ""))
            specs = [s for c in in_rounds(fits, self.matrix.order, self.seed) if self.store.should_run(
                self.key(s := c.model_copy(update={"repeat": r})), True, self.retry_failed)]
            self.total += len(specs)
            progress.update(cells_task, total=self.total)
            self.run(specs, progress, cells_task, steps_task)
            added += [self.key(s) for s in specs]
            if len(fits) < len(need):
                break
        return added

    def _fitting(self, need: list[CellSpec], r: int, left: float) -> list[CellSpec]:
        """The configurations (in `need`'s order) whose next run fits in `left` seconds, each run estimated by its
        configuration's mean wall time so far."""
        fits: list[CellSpec] = []
        for c in need:
            walls = [rec.wall_seconds for rr in range(r)
                     if (rec := self.store.get(self.key(c.model_copy(update={"repeat": rr})))) and rec.wall_seconds]
            cost = sum(walls) / len(walls) if walls else 0.0
            if cost > left:
                continue
            left -= cost
            fits.append(c)
        return fits


def duet_line(ref: CellRecord, cand: CellRecord) -> str:
    """One duet's ratio, as the sweep prints it."""
    a, b = ref.duet, cand.duet
    if a is None or b is None or a.tokens_per_second is None or b.tokens_per_second is None:
        why = (a.note if a is not None and a.note else None) or (b.note if b is not None else None) or "no figure"
        return f"    duet: no ratio ({why})"
    return (f"    duet {a.duet + 1}: candidate / reference = {b.tokens_per_second / a.tokens_per_second:.3f} over "
            f"{a.overlap_seconds:.0f} s measured together ({a.steps} and {b.steps} steps; reference on half {a.half})")


MIN_FREE_BYTES = 1 << 30  # a result set needs megabytes; a compile cache, hundreds of them


def check_free_space(folder: Path, need: int = MIN_FREE_BYTES) -> None:
    """Refuse to start a sweep on a disk that cannot hold its results (rather than fail in the middle)."""
    existing = next(p for p in (folder, *folder.resolve().parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if free < need:
        raise Failure(f"only {free / 2**20:.0f} MiB free on the disk of {existing}; a sweep needs at least "
                      f"{need / 2**20:.0f} MiB (results, logs, the Inductor cache: `xeonft cache prune` frees that)")


def prepare_stacks(matrix: Matrix, create: bool, allow_torch: bool = False) -> None:
    """Every library stack the matrix names is built (with `create`), or the sweep is refused before it starts;
    one that pins torch only with `allow_torch`, its cost said before it is built."""
    wanted = {c.launch.stack for c in matrix.cells if c.launch.stack is not None}
    for stack in sorted(wanted, key=lambda s: s.name):
        if create and stacks.info(stack) is None:
            cost = stacks.torch_cost(stack)
            console.print(f"building stack {stack.name} ({', '.join(stack.pins) or 'no pins'}) over xeonft's own "
                          "environment ..." + (f" [yellow]{cost}[/]" if cost and allow_torch else ""))
            folder = stacks.build(stack, allow_torch=allow_torch)
            made = stacks.info(stack) or {}
            changed = ", ".join(f"{k} {v['shared']} -> {v['stack']}" for k, v in (made.get("changed") or {}).items())
            console.print(f"  {folder}: {made.get('build_seconds')} s, {(made.get('bytes') or 0) / 2**20:.1f} MiB; "
                          f"{changed or 'nothing differs from the shared environment'}")
        stacks.interpreter(stack)


def run_sweep(matrix: Matrix, out: str | Path | None = None, resume: bool = False,
              retry_failed: bool = False, wait: bool = True, create_envs: bool = False,
              allow_torch_stacks: bool = False) -> ResultStore:
    """Run every cell of the matrix into results/<name>/ (or `out`); return the store."""
    for name in sorted({c.launch.env for c in matrix.cells}):
        envs.interpreter(name)  # every environment exists, before anything runs
    prepare_stacks(matrix, create_envs, allow_torch_stacks)
    store = ResultStore(out or Path("results") / matrix.name)
    check_free_space(store.root)
    fp = fingerprint()
    env_key = environment_key(fp)
    keys = [cell_key(c, env_key) for c in matrix.cells]

    def waiting(holder: dict[str, Any]) -> None:
        console.print(f"[yellow]waiting:[/] another benchmark is timing on this machine (pid {holder.get('pid')}: "
                      f"{holder.get('command')}); it starts when that one ends (--no-wait refuses instead)")

    with termination_as_interrupt(), ResultSetLock(store.root):
        if store.exists() and not resume:
            store.open(matrix.document, fp, env_key, keys, resume=False)  # refuses, before anything is measured
        asked = time.monotonic()
        with MachineLock(wait=wait, on_wait=waiting):
            clock = SweepClock(lock_wait=time.monotonic() - asked)
            prepare_models(matrix.cells)  # torch work: not while another sweep times
            return _run(matrix, store, fp, env_key, keys, resume, retry_failed, clock)


def _run(matrix: Matrix, store: ResultStore, fp: dict[str, Any], env_key: str, keys: list[str], resume: bool,
         retry_failed: bool, clock: SweepClock | None = None) -> ResultStore:
    clock = clock or SweepClock()
    state = system_state()
    warnings = repeatability_warnings(state)
    for w in warnings:
        console.print(f"[yellow]repeatability:[/] {w}")
    kernels = fp.get("torch_build", {}).get("bf16_kernels", True)
    if not fp["cpu"]["amx"]:
        console.print(f"[yellow]note:[/] {bf16_note(kernels)}")
    earlier = (store.manifest().peak_tflops or {}) if store.manifest_path.is_file() else {}
    peaks: dict[str, dict[str, float]] = dict(earlier.get("by_threads") or {})
    if matrix.peak:
        started = time.monotonic()
        peaks = peaks_for(matrix.cells, peaks, announce=lambda t: console.print(
            f"measuring the GEMM peak at {t} thread(s) (2048^3, "
            f"{'bf16 and fp32' if kernels else 'fp32; bf16 is emulated here, and bounded by it'}) ..."))
        clock.peak = time.monotonic() - started
    # the sweep-wide figures (the most threads measured) stay as first recorded: earlier cells without a peak of
    # their own are measured against them, and a resume must not change their MFU
    widest = peaks.get(str(max((int(t) for t in peaks), default=0)), {})
    legacy = {k: v for k, v in earlier.items() if k in ("bf16", "fp32")}
    peak = {**widest, **legacy, "by_threads": peaks} if peaks else None
    recorded = store.manifest().order if resume and store.manifest_path.is_file() else None
    seed = sweep_seed(matrix.order, recorded.seed if recorded else None)
    extra = {"system": state, "system_warnings": warnings,
             "repeats_auto": matrix.auto.model_dump() if matrix.auto else None, "sweep_clock": clock.model_dump(),
             "order": {"shuffle": matrix.order.shuffle, "seed": seed}}
    store.open(matrix.document, fp, env_key, keys, resume=resume, peak=peak, extra=extra)
    sweep = Sweep(matrix, store, env_key, peaks, resume, retry_failed, seed, bf16_kernels=kernels)
    pairs = [d for d in duets.plan(matrix.cells, matrix.order, seed)
             if any(store.should_run(sweep.key(s), resume, retry_failed) for s in (d.reference, d.candidate))] \
        if matrix.design == "duet" else []  # a duet runs again whole, where either cell is to be taken again
    todo = [s for d in pairs for s in (d.reference, d.candidate)] if matrix.design == "duet" else \
        in_rounds([c for c, k in zip(matrix.cells, keys, strict=True) if store.should_run(k, resume, retry_failed)],
                  matrix.order, seed)
    console.print(f"[bold]xeonft run[/] {matrix.name}: {len(keys)} cells ({len(keys) - len(todo)} already done)"
                  + (f", repeats: auto up to {matrix.auto.max}" if matrix.auto else "")
                  + (f", {len(pairs)} duet(s) of two cells at once on the two halves of the cores"
                     if matrix.design == "duet" else "") + f" -> {store.root}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False, refresh_per_second=2) as progress, \
            Calibrator() if matrix.calibration else contextlib.nullcontext() as calibrator:
        sweep.calibrator, sweep.total = calibrator, len(todo)
        cells_task = progress.add_task("cells", total=len(todo))
        steps_task = progress.add_task("steps", total=1)
        if matrix.design == "duet":
            sweep.run_duets(pairs, progress, cells_task, steps_task)
            added = []
        else:
            sweep.run(todo, progress, cells_task, steps_task)
            added = sweep.more_rounds(progress, cells_task, steps_task)
    if added:
        store.add_cells(added)
    records = store.records()
    console.print(summary_table(records, list(matrix.axes)))
    line = share_line([r.phases for r in records if r.phases is not None], clock)
    if line:  # where the cells' time went, over every cell of the set (a resumed one's earlier cells included)
        console.print(line)
    if (cost := calibration_line(records)) is not None:
        console.print(cost)
    return store

"""The launcher's side of one cell: start its process (or torchrun's), watch its tree, stop it on a timeout, and
turn what happened into one record. The worker's side is `harness.cell.train`."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.base.errors import Unavailable
from harness.cell.protocol import PLACEMENTS_VAR, parse_progress
from harness.config.identity import match_key
from harness.config.spec import CellSpec
from harness.launch.budget import MemoryCap
from harness.launch.calibrator import Beside, Calibrator
from harness.launch.command import cell_env, cell_placement, command, is_distributed, process_threads, rank_placements
from harness.launch.lifeline import chain_preexec, die_with_parent, kill_tree
from harness.launch.oom import oom_kills
from harness.launch.outcome import classify, tail
from harness.launch.topology import Placement
from harness.measure.fingerprint import safe_env
from harness.measure.phases import Phases
from harness.measure.sampler import TreeSampler
from harness.results.records import (
    Budget,
    CellRecord,
    CellResult,
    CpuSet,
    LaunchRecord,
    Measurement,
    Memory,
    RankResult,
)
from harness.results.store import ResultStore


def unavailable(spec: CellSpec, key: str, reason: str) -> CellRecord:
    """The record of a cell that cannot run here, known before any process starts (no process is started)."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return CellRecord(key=key, match_key=match_key(spec), repeat=spec.repeat, spec=spec, started=started,
                      status="unavailable", reason=reason, finished=started)


def supervise(spec: CellSpec, key: str, store: ResultStore, on_step: Callable[[int, int], None] | None = None,
             disturbance_cores: float = 0.25, calibrator: Calibrator | None = None,
             placement: Placement | None = None, partner_pids: list[int] | None = None,
             on_start: Callable[[int], None] | None = None, env_extra: dict[str, str] | None = None) -> CellRecord:
    """Run one cell in its own process and return its record (the caller stores it); with a `calibrator`, the
    calibration workload runs right before and right after it, on its CPUs at its threads. A duet gives the
    cell's `placement` (its half of the cores) and `partner_pids`, the pids of its partner's process (filled in as it
    starts; its load is not foreign), its barrier in `env_extra`, and learns this cell's pid through `on_start`."""
    given = placement
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    cell: dict[str, Any] = {"key": key, "match_key": match_key(spec), "repeat": spec.repeat, "spec": spec,
                            "started": started}
    placements: list[Placement] = []
    try:
        if is_distributed(spec):
            placement = None
            placements = rank_placements(spec)
            # no OpenMP binding for torchrun itself: its children would inherit its bound CPU; each rank binds itself
            env = cell_env(spec, None)
            env[PLACEMENTS_VAR] = json.dumps([{"cpus": list(p.cpus), "mem_node": p.mem_node} for p in placements])
        else:
            placement = given or cell_placement(spec)
            env = cell_env(spec, placement)
        env.update(env_extra or {})
    except Unavailable as err:
        return CellRecord(**cell, status="unavailable", reason=str(err), finished=started)

    log_path = store.log_path(key)
    with tempfile.TemporaryDirectory(prefix="xeonft-launch-") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(spec.model_dump_json(), encoding="utf-8")
        cmd, method = command(spec, spec_path, result_path, placement)

        def bind() -> None:
            if placement is not None and method == "sched_setaffinity":
                os.sched_setaffinity(0, placement.cpus)

        beside = _beside(calibrator, spec, placement, placements)
        if beside is not None:
            beside.before()
        t0, launched = time.perf_counter(), time.monotonic()
        timed_out = False
        kills_before = oom_kills()
        launcher = os.getpid()  # read here: inside preexec_fn it would be the child's own
        cap = MemoryCap.open(spec.launch.memory_limit) if spec.launch.memory_limit else None
        reached = [0, 0]  # the last step the worker reported, of how many

        def stepped(step: int, total: int) -> None:
            reached[:] = [step, total]
            if on_step is not None:
                on_step(step, total)

        with log_path.open("w", encoding="utf-8") as log:
            # the cell dies with the launcher (PDEATHSIG survives the exec of numactl and python); with a budget it
            # joins its cgroup before exec, so its whole tree is charged there
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, text=True,
                                    start_new_session=True,
                                    preexec_fn=chain_preexec(functools.partial(die_with_parent, launcher), bind,
                                                             *([cap.join] if cap else [])))
            if on_start is not None:
                on_start(proc.pid)
            reader = threading.Thread(target=_read_progress, args=(proc, stepped), daemon=True)
            reader.start()
            bare = spec.launch.instrument == "bare" and cap is None  # a budget needs the sampler's peak
            watcher = None if bare else TreeSampler(proc.pid, beside=partner_pids if partner_pids is not None else [])
            if watcher is not None and cap is not None and cap.method == "sampler":
                watcher.limit = cap.limit
                watcher.on_exceed = lambda rss: _kill_tree(proc, wait=False)
            try:
                with contextlib.nullcontext() if watcher is None else watcher as sampler:
                    try:
                        proc.wait(timeout=spec.timeout_s)
                    except subprocess.TimeoutExpired:
                        timed_out = True
                        _kill_tree(proc)
            except BaseException:
                _kill_tree(proc)
                raise
            finally:
                reader.join(timeout=5)
                planned = spec.timing_warmup_steps + spec.measured_steps + int(spec.profile)
                budget = _budget(cap, watcher, reached, planned) if cap is not None else None
                if cap is not None:
                    cap.close()
        wall = time.perf_counter() - t0
        if beside is not None:
            beside.after()
            cell["calibration"] = beside.record()
        store.redact_file(log_path)
        stderr_tail = tail(log_path)
        kills_after = oom_kills()
        delta = kills_after - kills_before if kills_before is not None and kills_after is not None else None
        if budget is not None and budget.oom_kills is not None:
            delta = budget.oom_kills  # the cell's own cgroup: its kills are its own
        status, reason = classify(proc.returncode, timed_out, stderr_tail, delta)
        if budget is not None and budget.exceeded and not timed_out:
            status, reason = "oom", _over_budget(budget)
        if is_distributed(spec):
            ranks = [_result(f) for f in sorted(Path(tmp).glob("result.rank*.json"))]
            result = _combine(ranks, spec, sampler) if ranks and status == "ok" else None
        else:
            result = _result(result_path) if result_path.is_file() else None
    if status == "ok" and result is None:
        status, reason = "failed", "the worker exited 0 without writing a result"
    if timed_out:
        reason = f"no result after {spec.timeout_s:g} s (timeout); killed"
    window = result.measured_epoch if result is not None else None
    memory = Memory.model_validate(sampler.summary(window) if sampler is not None else {})  # bare: not watched
    # disturbed only by what happened during the measured steps (where the worker said when they ran)
    foreign = memory.measured_foreign_cpu_cores_mean
    when = "during the measured steps"
    if foreign is None:
        foreign, when = memory.foreign_cpu_cores_mean, "during the cell"
    if status == "ok" and foreign is not None and foreign > disturbance_cores:
        status = "disturbed"
        reason = (f"other processes used {foreign:.2f} cores on average {when} (threshold {disturbance_cores:g})")
    if budget is not None:
        cell["budget"] = budget
    if status != "ok":
        cell["stderr_tail"] = stderr_tail
    launch = LaunchRecord(command=cmd, binding_method=method, placement=_cpu_set(placement),
                          rank_placements=[c for p in placements if (c := _cpu_set(p))] or None, env=safe_env(env))
    phases = Phases.of_cell(wall, launched, result.clock, result.steps, result.evals, result.saves,
                            spec.timing_warmup_steps, spec.measured_steps) if result is not None else \
        Phases(wall=wall, other=wall)
    return CellRecord(**cell, status=status, reason=reason, exit_code=proc.returncode, wall_seconds=wall,
                      finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), launch=launch, memory=memory, result=result,
                      log=str(log_path.relative_to(store.root)), phases=phases)


def _beside(calibrator: Calibrator | None, spec: CellSpec, placement: Placement | None,
            placements: list[Placement]) -> Beside | None:
    """The calibration's CPUs and threads: the cell's own (every rank's together for a data-parallel cell; an
    unpinned cell's are every CPU the launcher may use)."""
    if calibrator is None:
        return None
    if placements:
        cpus = sorted({c for p in placements for c in p.cpus})
        threads = sum(process_threads(spec, p) for p in placements)
    else:
        cpus = list(placement.cpus) if placement is not None else sorted(os.sched_getaffinity(0))
        threads = process_threads(spec, placement)
    return Beside(calibrator, cpus, threads)


def _result(path: Path) -> CellResult:
    """What a worker wrote (its own `CellResult`, as JSON)."""
    return CellResult.model_validate_json(path.read_text(encoding="utf-8"))


def _cpu_set(placement: Placement | None) -> CpuSet | None:
    return CpuSet(cpus=list(placement.cpus), mem_node=placement.mem_node) if placement is not None else None


def _budget(cap: MemoryCap, sampler: TreeSampler | None, reached: list[int], planned: int) -> Budget:
    """What the budget saw: how it was enforced, whether the cell crossed it, its peak, the step it reached."""
    kills = cap.oom_kills()
    exceeded = bool(kills) or (sampler is not None and sampler.exceeded_rss is not None)
    return Budget(limit_bytes=cap.limit, method=cap.method, why_sampler=cap.why_sampler, exceeded=exceeded,
                  oom_kills=kills, cgroup_peak_bytes=cap.peak(),
                  peak_rss_bytes=sampler.peak_rss if sampler is not None else None,
                  exceeded_rss_bytes=sampler.exceeded_rss if sampler is not None else None,
                  step_reached=reached[0], steps_total=reached[1] or planned)


def _over_budget(budget: Budget) -> str:
    gib = 2**30
    peak = budget.cgroup_peak_bytes or budget.exceeded_rss_bytes or budget.peak_rss_bytes
    how = {"cgroup-v2": "cgroup v2", "cgroup-v1": "cgroup v1", "sampler": "sampler"}[budget.method]
    done, total = budget.step_reached, budget.steps_total
    where = f"in step {done + 1} of {total}" if done < total else f"after its {total} steps"
    return (f"over its memory budget of {budget.limit_bytes / gib:.2f} GiB ({how}) {where}; peak "
            f"{(peak or 0) / gib:.2f} GiB; stopped")


# what a node's combined result keeps of its rank 0's own (the rest is per rank, or global)
RANK0_FIELDS = ("eval_loss", "setup_seconds", "model", "train_rows", "eval_rows", "versions", "world_size",
                "measured_epoch", "noise", "memory_phases", "clock", "skipped")


def _combine(ranks: list[CellResult], spec: CellSpec, sampler: TreeSampler | None) -> CellResult:
    """One result from the ranks of this node: global steps and throughput, per-rank memory and binding."""
    ranks = sorted(ranks, key=lambda r: r.rank or 0)
    per_rank = [RankResult(
        rank=r.rank or 0, local_rank=r.local_rank, pid=r.pid, binding=r.binding, torch_threads=r.torch_threads,
        lora_checksum=r.lora_checksum, summary=r.summary, steps=r.steps,
        peak_rss_bytes=sampler.peak_rss_by_pid.get(r.pid) if sampler and r.pid is not None else None,
        peak_uss_bytes=sampler.peak_uss_by_pid.get(r.pid) if sampler and r.pid is not None else None)
        for r in ranks]
    combined = Measurement.of_ranks(ranks, spec.timing_warmup_steps, spec.measured_steps)
    return CellResult(**{k: getattr(ranks[0], k) for k in RANK0_FIELDS}, **dict(combined),
                      node_rank=spec.launch.node_rank, ranks_on_this_node=len(ranks), ranks=per_rank,
                      rank_peak_rss_sum_bytes=sum(r.peak_rss_bytes or 0 for r in per_rank))


def _read_progress(proc: subprocess.Popen, on_step: Callable[[int, int], None] | None) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        progress = parse_progress(line)
        if progress is not None and on_step is not None:
            on_step(*progress)


def _kill_tree(proc: subprocess.Popen, wait: bool = True) -> None:
    """The cell's whole tree, torchrun's ranks included (they run in sessions of their own)."""
    kill_tree(proc.pid)
    if wait:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

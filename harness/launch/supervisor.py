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

from harness.cell.protocol import PLACEMENTS_VAR, parse_progress
from harness.config.spec import CellSpec
from harness.errors import Unavailable
from harness.launch.command import cell_env, cell_placement, command, is_distributed, rank_placements
from harness.launch.lifeline import chain_preexec, die_with_parent, kill_tree
from harness.launch.oom import oom_kills
from harness.launch.outcome import classify, tail
from harness.launch.topology import Placement
from harness.measure.fingerprint import safe_env
from harness.measure.sampler import TreeSampler
from harness.results.ranks import combine_ranks
from harness.results.records import CellRecord
from harness.results.store import ResultStore


def supervise(spec: CellSpec, key: str, store: ResultStore, on_step: Callable[[int, int], None] | None = None,
             disturbance_cores: float = 0.25) -> CellRecord:
    """Run one cell in its own process and return its record (the caller stores it)."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    record: dict[str, Any] = {"key": key, "match_key": spec.match_key(), "repeat": spec.repeat,
                              "spec": spec.model_dump(mode="json"), "started": started}
    placements: list[Placement] = []
    try:
        if is_distributed(spec):
            placement = None
            placements = rank_placements(spec)
            # no OpenMP binding for torchrun itself: its children would inherit its bound CPU; each rank binds itself
            env = cell_env(spec, None)
            env[PLACEMENTS_VAR] = json.dumps([{"cpus": list(p.cpus), "mem_node": p.mem_node} for p in placements])
        else:
            placement = cell_placement(spec)
            env = cell_env(spec, placement)
    except Unavailable as err:
        return CellRecord.model_validate({**record, "status": "unavailable", "reason": str(err), "finished": started})

    log_path = store.log_path(key)
    with tempfile.TemporaryDirectory(prefix="xeonft-launch-") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(spec.model_dump_json(), encoding="utf-8")
        cmd, method = command(spec, spec_path, result_path, placement)

        def bind() -> None:
            if placement is not None and method == "sched_setaffinity":
                os.sched_setaffinity(0, placement.cpus)

        t0 = time.perf_counter()
        timed_out = False
        kills_before = oom_kills()
        launcher = os.getpid()  # read here: inside preexec_fn it would be the child's own
        with log_path.open("w", encoding="utf-8") as log:
            # the cell dies with the launcher (PDEATHSIG survives the exec of numactl and python)
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, text=True,
                                    start_new_session=True,
                                    preexec_fn=chain_preexec(functools.partial(die_with_parent, launcher), bind))
            reader = threading.Thread(target=_read_progress, args=(proc, on_step), daemon=True)
            reader.start()
            bare = spec.launch.instrument == "bare"
            try:
                with contextlib.nullcontext() if bare else TreeSampler(proc.pid) as sampler:
                    try:
                        proc.wait(timeout=spec.timeout_s)
                    except subprocess.TimeoutExpired:
                        timed_out = True
                        _kill_tree(proc)
            except BaseException:
                _kill_tree(proc)
                raise
            reader.join(timeout=5)
        wall = time.perf_counter() - t0
        store.redact_file(log_path)
        stderr_tail = tail(log_path)
        kills_after = oom_kills()
        delta = kills_after - kills_before if kills_before is not None and kills_after is not None else None
        status, reason = classify(proc.returncode, timed_out, stderr_tail, delta)
        if is_distributed(spec):
            rank_files = sorted(Path(tmp).glob("result.rank*.json"))
            ranks = [json.loads(f.read_text(encoding="utf-8")) for f in rank_files]
            result = _combine(ranks, spec, sampler) if ranks and status == "ok" else None
        else:
            result = json.loads(result_path.read_text(encoding="utf-8")) if result_path.is_file() else None
    if status == "ok" and result is None:
        status, reason = "failed", "the worker exited 0 without writing a result"
    if timed_out:
        reason = f"no result after {spec.timeout_s:g} s (timeout); killed"
    window = (result or {}).get("measured_epoch")
    memory = sampler.summary(window) if sampler is not None else {}  # a bare cell is not watched
    # disturbed only by what happened during the measured steps (where the worker said when they ran)
    foreign = memory.get("measured_foreign_cpu_cores_mean")
    when = "during the measured steps"
    if foreign is None:
        foreign, when = memory.get("foreign_cpu_cores_mean"), "during the cell"
    if status == "ok" and foreign is not None and foreign > disturbance_cores:
        status = "disturbed"
        reason = (f"other processes used {foreign:.2f} cores on average {when} (threshold {disturbance_cores:g})")
    record.update(
        status=status, reason=reason, exit_code=proc.returncode, wall_seconds=wall,
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        launch={"command": cmd, "binding_method": method,
                "placement": {"cpus": list(placement.cpus), "mem_node": placement.mem_node} if placement else None,
                "rank_placements": [{"cpus": list(p.cpus), "mem_node": p.mem_node} for p in placements] or None,
                "env": safe_env(env)},
        memory=memory, result=result, log=str(log_path.relative_to(store.root)),
    )
    if status != "ok":
        record["stderr_tail"] = stderr_tail
    return CellRecord.model_validate(record)


def _combine(ranks: list[dict[str, Any]], spec: CellSpec, sampler: TreeSampler | None) -> dict[str, Any]:
    """One result from the ranks of this node: global steps and throughput, per-rank memory and binding."""
    ranks = sorted(ranks, key=lambda r: r["rank"])
    combined = combine_ranks(ranks, spec.timing_warmup_steps, spec.measured_steps)
    per_rank = []
    for r in ranks:
        per_rank.append({
            "rank": r["rank"], "local_rank": r["local_rank"], "pid": r["pid"], "binding": r["binding"],
            "torch_threads": r["torch_threads"], "lora_checksum": r["lora_checksum"], "summary": r["summary"],
            "steps": r["steps"], "peak_rss_bytes": sampler.peak_rss_by_pid.get(r["pid"]) if sampler else None,
            "peak_uss_bytes": sampler.peak_uss_by_pid.get(r["pid"]) if sampler else None,
        })
    first = ranks[0]
    keep = ("eval_loss", "setup_seconds", "model", "train_rows", "eval_rows", "versions", "world_size",
            "measured_epoch", "noise", "memory_phases")
    return {**{k: first.get(k) for k in keep}, **combined, "node_rank": spec.launch.node_rank,
            "ranks_on_this_node": len(ranks), "ranks": per_rank,
            "rank_peak_rss_sum_bytes": sum(r["peak_rss_bytes"] or 0 for r in per_rank)}


def _read_progress(proc: subprocess.Popen, on_step: Callable[[int, int], None] | None) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        progress = parse_progress(line)
        if progress is not None and on_step is not None:
            on_step(*progress)


def _kill_tree(proc: subprocess.Popen) -> None:
    """The cell's whole tree, torchrun's ranks included (they run in sessions of their own)."""
    kill_tree(proc.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)

"""Runs a matrix: one cell at a time, each in its own process, with its environment, binding and timeout.

The launcher knows nothing about training: it hands a CellSpec to `python -m harness.worker`, watches the
process tree from outside (memory, foreign CPU load), and turns what happened into one stored record.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness import envs
from harness.assets import cache_dir
from harness.config import COMPILED
from harness.errors import Unavailable
from harness.fingerprint import environment_key, find_allocator, fingerprint, safe_env
from harness.matrix import CellSpec, Matrix
from harness.metrics import TreeSampler, combine_ranks
from harness.peak import measure_peak
from harness.store import ResultStore
from harness.topology import Placement, cores, numactl, place
from harness.worker import PLACEMENTS_VAR, PROGRESS_PREFIX, UNAVAILABLE_PREFIX

console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*")  # a traceback's last line
# torchrun's summary of the first rank that failed
TORCHRUN_ROOT_CAUSE = re.compile(r"rank\s*:\s*(?P<rank>\d+).*?\n\s*exitcode\s*:\s*(?P<code>-?\d+)", re.S)
OOM_MARKERS = ("MemoryError", "can't allocate memory", "Cannot allocate memory", "std::bad_alloc", "out of memory")
# jemalloc settings from torch.backends.xeon.run_cpu: keep freed memory, avoid returning it to the OS each step.
JEMALLOC_CONF = "oversize_threshold:1,background_thread:true,metadata_thp:auto,dirty_decay_ms:-1,muzzy_decay_ms:-1"


def cell_env(spec: CellSpec, placement: Placement | None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The cell's environment: threads, OpenMP binding, allocator preload, and the matrix's own variables."""
    from harness.fingerprint import torch_build

    env = dict(os.environ if base is None else base)
    threads = spec.config.threads or (len(placement.cpus) if placement else len(cores()))
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false",
               HF_HUB_DISABLE_TELEMETRY="1")
    if torch_build()["intel_openmp"]:
        env.update(KMP_BLOCKTIME="1", KMP_AFFINITY="granularity=fine,compact,1,0" if placement else "disabled")
    elif placement is not None:
        env.update(OMP_PROC_BIND="close", OMP_PLACES="cores")
    if spec.launch.allocator != "default":
        lib = find_allocator(spec.launch.allocator)
        if lib is None:
            pkg = {"jemalloc": "libjemalloc2", "tcmalloc": "libtcmalloc-minimal4"}[spec.launch.allocator]
            raise Unavailable(f"{spec.launch.allocator} is not installed (Debian package {pkg})")
        env["LD_PRELOAD"] = ":".join(p for p in (lib, env.get("LD_PRELOAD")) if p)
        if spec.launch.allocator == "jemalloc":
            env["MALLOC_CONF"] = JEMALLOC_CONF
    if spec.launch.isa != "default":
        env["ONEDNN_MAX_CPU_ISA"] = spec.launch.isa.upper()
    if spec.config.backend in COMPILED:
        # One Inductor cache per library environment, kept between cells and sweeps: a cell whose graphs were
        # compiled before loads them (its record counts the cache hits, so a warm compile time is not mistaken
        # for a cold one). The matrix's `variables` can point it elsewhere; an inherited TORCHINDUCTOR_CACHE_DIR is
        # not trusted (torch sets it in any process that touched Inductor).
        env["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir() / "inductor" / spec.launch.env)
    env.update(dict(spec.variables))
    return env


def cell_placement(spec: CellSpec) -> Placement | None:
    try:
        return place(spec.launch.pinning, spec.config.threads)
    except ValueError as err:
        raise Unavailable(str(err)) from None


def rank_placements(spec: CellSpec) -> list[Placement]:
    """Disjoint cores for each local rank ('none' pinning means 'cores' here: ranks must not share cores)."""
    pinning = "cores" if spec.launch.pinning == "none" else spec.launch.pinning
    try:
        out = [place(pinning, spec.config.threads, rank=r, ranks=spec.launch.ranks) for r in range(spec.launch.ranks)]
    except ValueError as err:
        raise Unavailable(str(err)) from None
    return [p for p in out if p is not None]


def is_distributed(spec: CellSpec) -> bool:
    return spec.launch.ranks > 1 or spec.launch.nnodes > 1


def _torchrun(spec: CellSpec, python: str, spec_path: Path, result_path: Path) -> list[str]:
    """PyTorch's own launcher: one process per rank, rendezvous over c10d (loopback on one node)."""
    launch = spec.launch
    cmd = [python, "-m", "torch.distributed.run", f"--nproc-per-node={launch.ranks}", "--max-restarts=0"]
    if launch.nnodes == 1:
        cmd.append("--standalone")
    else:
        cmd += [f"--nnodes={launch.nnodes}", f"--node-rank={launch.node_rank}", "--rdzv-backend=c10d",
                f"--rdzv-endpoint={launch.rdzv_endpoint}", f"--rdzv-id=xeonft-{spec.match_key()}-{spec.repeat}"]
    return [*cmd, "--module", "harness.worker", str(spec_path), str(result_path)]


def _command(spec: CellSpec, spec_path: Path, result_path: Path, placement: Placement | None) -> tuple[list[str], str]:
    python = envs.interpreter(spec.launch.env)
    if is_distributed(spec):
        return _torchrun(spec, python, spec_path, result_path), "per-rank (numactl)" if numactl() else \
            "per-rank (sched_setaffinity)"
    worker = [python, "-m", "harness.worker", str(spec_path), str(result_path)]
    if placement is None:
        return worker, "none"
    tool = numactl()
    if tool:
        return [tool, *placement.numactl_args(), *worker], "numactl"
    return worker, "sched_setaffinity"


def _classify(rc: int | None, timed_out: bool, stderr_tail: str) -> tuple[str, str | None]:
    if timed_out:
        return "timeout", None
    if rc == 0:
        return "ok", None
    unavailable = [ln for ln in stderr_tail.splitlines() if ln.startswith(UNAVAILABLE_PREFIX)]
    if unavailable:  # the worker's own verdict (every rank of a torchrun cell says the same)
        return "unavailable", unavailable[-1].removeprefix(UNAVAILABLE_PREFIX).strip()
    if any(m in stderr_tail for m in OOM_MARKERS):
        return "oom", "ran out of memory"
    if rc == -signal.SIGKILL:
        return "oom", "killed by SIGKILL (the kernel's OOM killer, most likely)"
    if rc is not None and rc < 0:
        return "failed", f"crashed: killed by {signal.Signals(-rc).name}"
    root = stderr_tail.rfind("Root Cause")
    died = TORCHRUN_ROOT_CAUSE.search(stderr_tail, root if root >= 0 else 0)
    if died:
        code = int(died.group("code"))
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        errors = [ln for ln in stderr_tail.splitlines() if ln.startswith("xeonft: error:")]
        detail = f": {errors[-1].removeprefix('xeonft: error:').strip()}" if errors else ""
        return "failed", f"rank {died.group('rank')} died ({how}){detail}; torchrun stopped the other ranks"
    lines = [ln for ln in stderr_tail.splitlines() if ln.startswith("xeonft: error:")]
    if lines:
        return "failed", lines[-1].removeprefix("xeonft: error:").strip()
    exceptions = [ln for ln in stderr_tail.splitlines() if EXCEPTION_LINE.match(ln)]
    last = exceptions[-1] if exceptions else next((ln for ln in reversed(stderr_tail.splitlines()) if ln.strip()), "")
    return "failed", f"exit code {rc}: {last.strip()}"


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_cell(spec: CellSpec, key: str, store: ResultStore, on_step: Callable[[int, int], None] | None = None,
             disturbance_cores: float = 0.25) -> dict[str, Any]:
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
        return {**record, "status": "unavailable", "reason": str(err), "finished": started}

    log_path = store.log_path(key)
    with tempfile.TemporaryDirectory(prefix="xeonft-launch-") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(spec.model_dump_json(), encoding="utf-8")
        cmd, method = _command(spec, spec_path, result_path, placement)

        def bind() -> None:
            if placement is not None and method == "sched_setaffinity":
                os.sched_setaffinity(0, placement.cpus)

        t0 = time.perf_counter()
        timed_out = False
        with log_path.open("w", encoding="utf-8") as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, text=True,
                                    start_new_session=True, preexec_fn=bind)
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
        tail = _tail(log_path)
        status, reason = _classify(proc.returncode, timed_out, tail)
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
    memory = sampler.summary() if sampler is not None else {}  # a bare cell is not watched
    if status == "ok" and memory and memory["foreign_cpu_cores_mean"] > disturbance_cores:
        status = "disturbed"
        reason = (f"other processes used {memory['foreign_cpu_cores_mean']:.2f} cores on average during the cell "
                  f"(threshold {disturbance_cores:g})")
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
        record["stderr_tail"] = tail
    return record


def _combine(ranks: list[dict[str, Any]], spec: CellSpec, sampler: TreeSampler | None) -> dict[str, Any]:
    """One result from the ranks of this node: global steps and throughput, per-rank memory and binding."""
    ranks = sorted(ranks, key=lambda r: r["rank"])
    combined = combine_ranks(ranks, spec.warmup_steps, spec.measured_steps)
    per_rank = []
    for r in ranks:
        per_rank.append({
            "rank": r["rank"], "local_rank": r["local_rank"], "pid": r["pid"], "binding": r["binding"],
            "torch_threads": r["torch_threads"], "lora_checksum": r["lora_checksum"], "summary": r["summary"],
            "steps": r["steps"], "peak_rss_bytes": sampler.peak_rss_by_pid.get(r["pid"]) if sampler else None,
            "peak_uss_bytes": sampler.peak_uss_by_pid.get(r["pid"]) if sampler else None,
        })
    first = ranks[0]
    keep = ("eval_loss", "setup_seconds", "model", "train_rows", "eval_rows", "versions", "world_size")
    return {**{k: first.get(k) for k in keep}, **combined, "node_rank": spec.launch.node_rank,
            "ranks_on_this_node": len(ranks), "ranks": per_rank,
            "rank_peak_rss_sum_bytes": sum(r["peak_rss_bytes"] or 0 for r in per_rank)}


def _read_progress(proc: subprocess.Popen, on_step: Callable[[int, int], None] | None) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        parts = line.split()
        if len(parts) == 4 and parts[0] == PROGRESS_PREFIX and parts[1] == "step" and on_step is not None:
            with contextlib.suppress(ValueError):
                on_step(int(parts[2]), int(parts[3]))


def _kill_tree(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def axis_values(spec: CellSpec, axes: list[str]) -> dict[str, Any]:
    def value(axis: str) -> Any:
        for holder in (spec.config, spec.launch, spec):
            if axis in type(holder).model_fields:
                return getattr(holder, axis)
        return None

    return {a: value(a) for a in axes}


def _describe(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items()) or "(single cell)"


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
            label = _describe(values) + (f" repeat={spec.repeat}" if spec.repeat else "")
            progress.update(steps_task, description=f"  {label}", completed=0,
                            total=spec.warmup_steps + spec.measured_steps)
            record = run_cell(spec, key, store, disturbance_cores=matrix.disturbance_cores,
                              on_step=lambda step, total: progress.update(steps_task, completed=step, total=total))
            record["axes"] = values
            store.put(key, record)
            progress.advance(cells_task)
            progress.console.print(_one_line(label, record))
    console.print(summary_table(store.records(), axes))
    return store


def _one_line(label: str, record: dict[str, Any]) -> str:
    status = record["status"]
    colour = {"ok": "green", "disturbed": "yellow", "unavailable": "cyan"}.get(status, "red")
    text = f"[{colour}]{status}[/] {label}"
    summary = (record.get("result") or {}).get("summary") or {}
    if summary.get("tokens_per_second"):
        text += f": {summary['tokens_per_second']:.1f} tok/s"
        if record.get("memory"):
            text += f", peak RSS {record['memory']['peak_rss_bytes'] / 2**30:.2f} GiB"
    if record.get("reason"):
        text += f" ({record['reason']})"
    return text


def summary_table(records: list[dict[str, Any]], axes: list[str]) -> Table:
    """The terminal table of a result set: one row per cell."""
    table = Table(title="cells")
    for a in axes:
        table.add_column(a)
    for col in ("repeat", "status", "tok/s", "seq/s", "step p50 s", "peak RSS GiB", "peak USS GiB", "eval loss"):
        table.add_column(col, justify="right")
    for r in records:
        s = (r.get("result") or {}).get("summary") or {}
        mem = r.get("memory") or {}

        def fmt(v: Any, pattern: str = "{:.1f}") -> str:
            return pattern.format(v) if isinstance(v, int | float) else "-"

        table.add_row(*(str(r.get("axes", {}).get(a, "")) for a in axes), str(r.get("repeat", 0)), r["status"],
                      fmt(s.get("tokens_per_second")), fmt(s.get("sequences_per_second"), "{:.2f}"),
                      fmt(s.get("step_seconds_p50"), "{:.2f}"),
                      fmt(mem.get("peak_rss_bytes", 0) / 2**30 if mem else None, "{:.2f}"),
                      fmt(mem.get("peak_uss_bytes", 0) / 2**30 if mem else None, "{:.2f}"),
                      fmt((r.get("result") or {}).get("eval_loss"), "{:.3f}"))
    return table

"""How a cell's process is started: its environment (threads, OpenMP binding, allocator, ISA ceiling, the
matrix's variables), its cores, and its command line (the worker, under numactl or torchrun)."""

from __future__ import annotations

import os
from pathlib import Path

from harness.base.errors import Unavailable
from harness.cell.assets import cache_dir
from harness.config.finetune import COMPILED
from harness.config.identity import match_key
from harness.config.spec import CellSpec
from harness.launch import envs, stacks
from harness.launch.topology import Placement, numactl, place
from harness.measure.fingerprint import find_allocator
from harness.measure.host import cores

# jemalloc settings from torch.backends.xeon.run_cpu: keep freed memory, avoid returning it to the OS each step.
JEMALLOC_CONF = "oversize_threshold:1,background_thread:true,metadata_thp:auto,dirty_decay_ms:-1,muzzy_decay_ms:-1"


def cell_env(spec: CellSpec, placement: Placement | None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The cell's environment: threads, OpenMP binding, allocator preload, and the matrix's own variables."""
    from harness.measure.fingerprint import torch_build

    env = dict(os.environ if base is None else base)
    threads = process_threads(spec, placement)
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


def process_threads(spec: CellSpec, placement: Placement | None) -> int:
    """The threads a process of the cell computes with: the config's `threads`, else one per core it is placed on
    (a rank's cores under torchrun, whose worker sets OMP_NUM_THREADS to their count), else one per usable core.
    The cell's environment and the GEMM peak it is measured against both take the number from here."""
    return spec.config.threads or (len(placement.cpus) if placement else len(cores()))


def threads_per_process(spec: CellSpec) -> int | None:
    """The threads one process of the cell computes with (None when the cell cannot be placed here)."""
    try:
        placement = rank_placements(spec)[:1] if is_distributed(spec) else [cell_placement(spec)]
    except Unavailable:
        return None
    return process_threads(spec, placement[0]) if placement else None


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
                f"--rdzv-endpoint={launch.rdzv_endpoint}", f"--rdzv-id=xeonft-{match_key(spec)}-{spec.repeat}"]
    return [*cmd, "--module", "harness.cell.worker", str(spec_path), str(result_path)]


def command(spec: CellSpec, spec_path: Path, result_path: Path, placement: Placement | None) -> tuple[list[str], str]:
    python = stacks.interpreter(spec.launch.stack) if spec.launch.stack else envs.interpreter(spec.launch.env)
    if is_distributed(spec):
        return _torchrun(spec, python, spec_path, result_path), "per-rank (numactl)" if numactl() else \
            "per-rank (sched_setaffinity)"
    worker = [python, "-m", "harness.cell.worker", str(spec_path), str(result_path)]
    if placement is None:
        return worker, "none"
    tool = numactl()
    if tool:
        return [tool, *placement.numactl_args(), *worker], "numactl"
    return worker, "sched_setaffinity"

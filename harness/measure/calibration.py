"""The calibration beside every cell: a short fixed GEMM workload that reads this machine's speed right before and
right after a cell, at the cell's threads and on its CPUs, and the small server that runs it on request.

The server (`python -m harness.measure.calibration`) is started once per sweep by the launcher with the launcher's
own interpreter and environment, never the cell's library stack or variables: a library change under test can move
the cell, not the calibration. It imports torch and makes its operands once, says it is ready, then blocks on its
stdin between requests, so it takes no CPU while a cell runs (each answer carries the process's CPU time, so that
is checked, not assumed).

Protocol, JSON lines: the server first writes `{"ready": true, ...}`; each request `{"cpus": [...], "threads": n}`
gets one answer, the workload's GFLOP/s per dtype (or `{"error": "..."}`); end of input ends it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

from harness.measure.peak import gemm_dtypes, operands

SIZE = 2048
# timed GEMMs per dtype for each thread: the same work every time at a given thread count, and about the same
# seconds at any count (on this 2-core EPYC about 0.5 s a dtype)
REPS_PER_THREAD = 3
SEED = 0


def reps(threads: int) -> int:
    return REPS_PER_THREAD * max(1, threads)


def describe(threads: int) -> str:
    """The workload in words, as a record keeps it."""
    return (f"torch.mm {SIZE}x{SIZE}x{SIZE}, {reps(threads)} timed GEMMs per dtype ({', '.join(gemm_dtypes())}) "
            f"after one untimed, at {threads} thread(s), in the launcher's interpreter")


def pin_every_thread(cpus: list[int]) -> list[int]:
    """Bind every thread of this process (OpenMP's pool included, which a later sched_setaffinity(0) would miss) to
    `cpus`; return the union of the CPUs they are allowed afterwards, as read back."""
    tasks = sorted(int(t.name) for t in Path("/proc/self/task").iterdir())
    os.sched_setaffinity(0, cpus)  # the calling thread first: threads it starts later inherit this
    for tid in tasks:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cpus)
    allowed: set[int] = set()
    for t in Path("/proc/self/task").iterdir():
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):
            allowed |= os.sched_getaffinity(int(t.name))
    return sorted(allowed)


class Workload:
    """The operands, made once (seeded: the same numbers in every process), and the timed loop. Only the dtypes
    this CPU has GEMM kernels for: an emulated bf16 GEMM of this size takes about 20 s on an AVX2 core."""

    def __init__(self) -> None:
        self.pairs = {dtype: operands(SIZE, SIZE, SIZE, dtype, seed=SEED) for dtype in gemm_dtypes()}

    def run(self, cpus: list[int], threads: int) -> dict[str, Any]:
        import torch

        cpu_start, t0 = time.process_time(), time.perf_counter()
        pinned = pin_every_thread(cpus)
        torch.set_num_threads(threads)
        n = reps(threads)
        gflops: dict[str, float] = {}
        each: dict[str, list[float]] = {}
        for dtype, (a, b) in self.pairs.items():
            torch.mm(a, b)  # untimed: the pool at its new size, the caches and the clock warmed
            marks = [time.perf_counter()]
            for _ in range(n):
                torch.mm(a, b)
                marks.append(time.perf_counter())
            gflops[dtype] = n * 2 * SIZE**3 / (marks[-1] - marks[0]) / 1e9
            each[dtype] = [end - start for start, end in itertools.pairwise(marks)]
        return {"gflops": gflops, "gemm_seconds": each, "seconds": time.perf_counter() - t0, "cpus": pinned,
                "threads": torch.get_num_threads(), "cpu_seconds_start": cpu_start,
                "cpu_seconds_end": time.process_time()}


def serve(stdin: IO[str], stdout: IO[str]) -> None:
    """Answer requests until stdin closes."""
    import torch

    workload = Workload()
    stdout.write(json.dumps({"ready": True, "pid": os.getpid(), "torch": torch.__version__}) + "\n")
    stdout.flush()
    for line in stdin:
        try:
            ask = json.loads(line)
            answer = workload.run([int(c) for c in ask["cpus"]], int(ask["threads"]))
        except (ValueError, KeyError, TypeError, OSError) as err:  # a bad request or CPUs this process may not use
            answer = {"error": f"{type(err).__name__}: {err}"}
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)

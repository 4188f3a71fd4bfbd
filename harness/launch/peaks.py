"""The GEMM peak each cell is measured against: at the cell's own core count, measured once per distinct count.

A cell pinned to one core cannot use the peak of two; a data-parallel cell of R ranks of T threads gets R times the
T-thread peak (each rank on its own cores; shared memory bandwidth is not modelled, so this is an upper bound).
The threads per process are the launcher's (`harness.launch.command.threads_per_process`), the number the cell's
environment is given.
Peaks already in a result set's manifest are reused, never re-measured, so a resume leaves earlier cells' MFU as it
was.
"""

from __future__ import annotations

import os
from typing import Any

from harness.config.spec import CellSpec
from harness.launch.command import threads_per_process
from harness.measure.host import cores
from harness.measure.peak import measure_peak


def measure_at(threads: int) -> dict[str, float]:
    """Square-GEMM TFLOP/s per dtype with `threads` threads, one on each of the first `threads` physical cores."""
    import torch

    cpus = [c.cpus[0] for c in cores()][:threads]
    saved_affinity, saved_threads = os.sched_getaffinity(0), torch.get_num_threads()
    try:
        os.sched_setaffinity(0, cpus)
        torch.set_num_threads(threads)
        return measure_peak()
    finally:
        torch.set_num_threads(saved_threads)
        os.sched_setaffinity(0, saved_affinity)


def peaks_for(specs: list[CellSpec], known: dict[str, dict[str, float]],
              announce: Any = None) -> dict[str, dict[str, float]]:
    """Peaks by threads per process for every distinct count the cells use, measuring only the missing ones."""
    out = dict(known)
    for threads in sorted({t for s in specs if (t := threads_per_process(s)) is not None}):
        if str(threads) not in out:
            if announce is not None:
                announce(threads)
            out[str(threads)] = measure_at(threads)
    return out


def cell_peak(spec: CellSpec, by_threads: dict[str, dict[str, float]]) -> dict[str, Any] | None:
    threads = threads_per_process(spec)
    one = by_threads.get(str(threads)) if threads is not None else None
    if one is None:
        return None
    ranks = spec.launch.ranks * spec.launch.nnodes
    return {"threads": threads, "ranks": ranks, **{dtype: tflops * ranks for dtype, tflops in one.items()}}

"""Running a cell-layer helper module (`python -m harness.cell.X`) in the launcher's own environment, outside any
cell: the eval rows' reference ids, a GGUF model's conversion. One place for its command line, its time limit and how
its one-line reason (`harness.cell.protocol.module_main`) is read back."""

from __future__ import annotations

import subprocess
import sys


def run_module(module: str, args: list[str], timeout_s: float) -> str | None:
    """None when the module exited 0; else why not, in one line (its last stderr line, or the time limit)."""
    try:
        done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return f"python -m {module} took more than {timeout_s:.0f} s"
    if done.returncode == 0:
        return None
    return (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1].removeprefix("xeonft: ")

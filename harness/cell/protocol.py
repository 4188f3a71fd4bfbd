"""What the launcher and the worker say to each other: the environment variables, the progress lines on the
worker's stdout and the verdict line on its stderr. No torch here: the launcher imports it."""

from __future__ import annotations

import os
from collections.abc import Callable

PROGRESS_PREFIX = "@@xeonft"
PLACEMENTS_VAR = "XEONFT_RANK_PLACEMENTS"  # JSON list, one {cpus, mem_node} per local rank, set by the launcher
BOUND_VAR = "XEONFT_BOUND"
UNAVAILABLE_PREFIX = "xeonft: unavailable:"  # the stderr line of a cell that cannot run here (exit code 3)
ERROR_PREFIX = "xeonft: error:"  # the stderr line of a cell given bad input (exit code 2)
# A duet's meeting point: "<folder>:<name>:<count>". Each cell writes <folder>/<name> when its timing warm-up is
# over and waits (at most DUET_WAIT_S) until <count> files are there, so both start their measured steps together.
DUET_VAR = "XEONFT_DUET_BARRIER"
DUET_WAIT_S = 900.0


def meet(barrier: str, wait_s: float = DUET_WAIT_S, poll_s: float = 0.01) -> float:
    """Arrive at a duet's barrier and wait for the others; return the seconds waited. A partner that never comes
    (it failed) releases the wait after `wait_s`: the launcher then finds no overlap and says so."""
    import time
    from pathlib import Path

    folder, name, count = barrier.rsplit(":", 2)
    here = Path(folder)
    (here / name).write_text("", encoding="utf-8")
    started = time.monotonic()
    while len(list(here.iterdir())) < int(count) and time.monotonic() - started < wait_s:
        time.sleep(poll_s)
    return time.monotonic() - started


def world() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment; (0, 0, 1) outside it."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1))


def progress_line(step: int, total: int) -> str:
    return f"{PROGRESS_PREFIX} step {step} {total}"


def parse_progress(line: str) -> tuple[int, int] | None:
    """(step, total) from a progress line; None for any other line."""
    parts = line.split()
    if len(parts) == 4 and parts[0] == PROGRESS_PREFIX and parts[1] == "step":
        try:
            return int(parts[2]), int(parts[3])
        except ValueError:
            return None
    return None


def module_main(argv: list[str] | None, usage: str, nargs: int, body: Callable[[list[str]], None]) -> int:
    """A helper module's `main` (`python -m harness.cell.X ARGS`, run by the launcher in its own environment):
    exit 0 once `body` ran, 2 with one line on stderr (`xeonft: ...`) for a wrong command line or a XeonftError,
    the line the launcher reads back (`harness.launch.helper.run_module`)."""
    import sys

    from harness.base.errors import XeonftError

    args = list(argv if argv is not None else sys.argv[1:])
    if len(args) != nargs:
        print(f"xeonft: usage: {usage}", file=sys.stderr)
        return 2
    try:
        body(args)
    except XeonftError as err:
        print(f"xeonft: {err}", file=sys.stderr)
        return 2
    return 0


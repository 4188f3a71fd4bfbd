"""A process's exact memory high-water mark, per phase.

The kernel keeps each process's peak resident set (VmHWM in /proc/PID/status): exact, where a sampler can miss a
short peak. Writing 5 to /proc/PID/clear_refs resets it (Linux 4.0+), so reading and resetting at the end of each
phase (load, train, eval) gives each phase its own peak. Where either file is unavailable the readings are None.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def vm_hwm(status: Path = STATUS) -> int | None:
    """This process's peak RSS so far (since the last reset), in bytes."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_hwm(clear_refs: Path = CLEAR_REFS) -> bool:
    try:
        clear_refs.write_text("5")
        return True
    except OSError:
        return False


class PhasePeaks:
    """Peaks of the phases of a run: `end(phase)` reads the high-water mark and resets it for the next phase. A
    phase that ends several times (a training step, an evaluation) keeps its largest peak."""

    def __init__(self) -> None:
        self.peaks: dict[str, int] = {}
        self.resettable = True

    def end(self, phase: str) -> None:
        peak = vm_hwm()
        if peak is None:
            return
        self.peaks[phase] = max(self.peaks.get(phase, 0), peak)
        if self.resettable:
            self.resettable = reset_hwm()

    def summary(self) -> dict[str, int | bool]:
        """Peak bytes per phase, the overall peak, and whether phases were told apart (a kernel that cannot reset
        the mark gives every phase the peak so far)."""
        out: dict[str, int | bool] = {f"{k}_peak_bytes": v for k, v in self.peaks.items()}
        with contextlib.suppress(ValueError):
            out["peak_bytes"] = max(self.peaks.values())
        out["phases_separated"] = self.resettable
        return out

"""A process's exact memory high-water mark, read at the end of each phase.

The kernel keeps each process's peak resident set (VmHWM in /proc/PID/status): exact, where a sampler can miss a
short peak. It is read, never reset: resetting it (`clear_refs`) would also reset what `/usr/bin/time`, schedulers
and `getrusage` report as the process's maximum RSS. So each phase (load, train, eval) records the mark as it stood
at its end; a phase that raised it has its own peak exactly, and `peak_phase` names the phase that set the
process's peak.
"""

from __future__ import annotations

from pathlib import Path

STATUS = Path("/proc/self/status")


def vm_hwm(status: Path = STATUS) -> int | None:
    """This process's peak RSS so far, in bytes."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class PhasePeaks:
    """`end(phase)` reads the high-water mark; a phase that ends several times (a step, an evaluation) keeps the
    last reading, which is the largest."""

    def __init__(self, status: Path = STATUS) -> None:
        self.status = status
        self.marks: dict[str, int] = {}
        self.peak_phase: str | None = None
        self._peak = 0

    def end(self, phase: str) -> None:
        mark = vm_hwm(self.status)
        if mark is None:
            return
        self.marks[phase] = mark
        if mark > self._peak:
            self._peak, self.peak_phase = mark, phase

    def summary(self) -> dict[str, int | str | None]:
        """The mark at the end of each phase (bytes), the process's peak, and the phase that reached it."""
        out: dict[str, int | str | None] = {f"{k}_hwm_bytes": v for k, v in self.marks.items()}
        if self.marks:
            out["peak_bytes"] = self._peak
            out["peak_phase"] = self.peak_phase
        return out

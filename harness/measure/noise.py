"""Noise readings over one measured step window, taken inside the training process at the window's edges.

A whole-process reading mixes warm-up, data loading and teardown into the number; reading /proc/stat at the two
edges of the measured steps says what the machine did while the timed steps ran: time stolen by a hypervisor,
cores busy (ours plus anyone else's), time waiting on I/O, and the clock. Each edge costs one /proc/stat read
plus psutil's frequency read (one sysfs file per CPU policy; ``read_freq=False`` skips it), about 0.1 ms, so it can
sit at the step boundaries without disturbing them.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

PROC_STAT = Path("/proc/stat")
KEYS = ("seconds", "steal_share", "busy_cores", "iowait_share", "load_avg_1m", "freq_mhz_start", "freq_mhz_stop")


def _user_hz() -> int:
    """Jiffies per second of /proc/stat (USER_HZ, 100 on Linux)."""
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return 100


USER_HZ = _user_hz()


@dataclass(frozen=True)
class CpuTimes:
    """The aggregate ``cpu`` line of /proc/stat, in jiffies since boot (guest time is already inside user/nice)."""

    user: int = 0
    nice: int = 0
    system: int = 0
    idle: int = 0
    iowait: int = 0
    irq: int = 0
    softirq: int = 0
    steal: int = 0

    @property
    def total(self) -> int:
        return self.user + self.nice + self.system + self.idle + self.iowait + self.irq + self.softirq + self.steal

    @property
    def busy(self) -> int:
        """Time CPUs ran work; steal is excluded because it is time taken away from us, reported on its own."""
        return self.user + self.nice + self.system + self.irq + self.softirq


def parse_proc_stat(text: str) -> CpuTimes:
    """The aggregate ``cpu`` line of /proc/stat text; fields an old kernel lacks count as zero."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(x) for x in line.split()[1:9]]
            return CpuTimes(*values)
    raise ValueError("no aggregate 'cpu' line in /proc/stat text")


def _share(part: int, whole: int) -> float:
    """A counter delta over the total delta, clamped to [0, 1] (counters can step back on some kernels)."""
    return min(1.0, max(0.0, part / whole)) if whole > 0 else 0.0


def steal_share(before: CpuTimes, after: CpuTimes) -> float:
    """Fraction of all CPU time between two readings that the hypervisor gave to someone else."""
    return _share(after.steal - before.steal, after.total - before.total)


def iowait_share(before: CpuTimes, after: CpuTimes) -> float:
    """Fraction of all CPU time between two readings spent idle with I/O outstanding."""
    return _share(after.iowait - before.iowait, after.total - before.total)


def busy_cores(before: CpuTimes, after: CpuTimes, seconds: float, hz: int = USER_HZ) -> float:
    """Cores' worth of non-idle, non-stolen CPU time per second of the window, ours and everyone else's."""
    if seconds <= 0:
        return 0.0
    return max(0.0, (after.busy - before.busy) / hz / seconds)


def _freq_mhz() -> float | None:
    """Mean current CPU frequency; psutil returns None, 0 or raises where the kernel does not expose it."""
    try:
        freq = psutil.cpu_freq()
    except Exception:  # psutil raises assorted errors (OSError, NotImplementedError, RuntimeError) across platforms
        return None
    current = getattr(freq, "current", None)
    return float(current) if current and math.isfinite(current) else None


def _load_1m() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


class NoiseWindow:
    """Noise over one measured window: ``start()`` and ``stop()`` at its edges, or use it as a context manager.

    Unreadable sources give None values rather than errors: this runs inside training and must never stop it.
    """

    def __init__(self, stat_path: Path = PROC_STAT, read_freq: bool = True) -> None:
        self.stat_path = stat_path
        self.read_freq = read_freq
        self.result: dict[str, float | None] | None = None
        self._t0: float | None = None
        self._before: CpuTimes | None = None
        self._freq0: float | None = None

    def _times(self) -> CpuTimes | None:
        try:
            return parse_proc_stat(self.stat_path.read_text())
        except (OSError, ValueError):
            return None

    def start(self) -> NoiseWindow:
        """Take the opening readings; the clock is read last so the window covers only what follows."""
        self._freq0 = _freq_mhz() if self.read_freq else None
        self._before = self._times()
        self._t0 = time.monotonic()
        return self

    def stop(self) -> dict[str, float | None]:
        """Take the closing readings and return the window's noise (keys: KEYS)."""
        if self._t0 is None:
            raise RuntimeError("NoiseWindow.stop() called before start()")
        seconds = time.monotonic() - self._t0
        after = self._times()
        before = self._before
        steal: float | None = None
        busy: float | None = None
        iowait: float | None = None
        if before is not None and after is not None:
            steal, busy = steal_share(before, after), busy_cores(before, after, seconds)
            iowait = iowait_share(before, after)
        self.result = {
            "seconds": seconds,
            "steal_share": steal,
            "busy_cores": busy,
            "iowait_share": iowait,
            "load_avg_1m": _load_1m(),
            "freq_mhz_start": self._freq0,
            "freq_mhz_stop": _freq_mhz() if self.read_freq else None,
        }
        return self.result

    def __enter__(self) -> NoiseWindow:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def combine_windows(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell's noise from its measured windows.

    Shares and busy cores are means weighted by each window's seconds (ignoring windows where they are None);
    ``freq_mhz_start`` is the first window's and ``freq_mhz_stop`` the last's, so clock drift across the cell shows;
    ``load_avg_1m`` is the last window's (it is already a moving average); ``steal_share_max`` flags one bad window.
    """
    out: dict[str, Any] = {key: None for key in KEYS}
    out["seconds"] = sum(w.get("seconds") or 0.0 for w in windows)
    out["windows"] = len(windows)
    for key in ("steal_share", "busy_cores", "iowait_share"):
        pairs = [(w[key], w.get("seconds") or 0.0) for w in windows if w.get(key) is not None]
        weight = sum(s for _, s in pairs)
        if pairs:
            out[key] = sum(v * s for v, s in pairs) / weight if weight > 0 else sum(v for v, _ in pairs) / len(pairs)
    steals = [w["steal_share"] for w in windows if w.get("steal_share") is not None]
    out["steal_share_max"] = max(steals) if steals else None
    if windows:
        out["freq_mhz_start"] = windows[0].get("freq_mhz_start")
        out["freq_mhz_stop"] = windows[-1].get("freq_mhz_stop")
        out["load_avg_1m"] = windows[-1].get("load_avg_1m")
    return out

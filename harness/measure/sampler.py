"""The launcher's view of a running cell: a thread that samples the memory of the cell's whole process tree and
the CPU that other processes take, from outside the tree (no torch here)."""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from harness.measure.steps import p90


def _full_info(procs: list[psutil.Process]) -> dict[int, Any]:
    """One read of /proc/PID/smaps_rollup per process gives its USS and PSS together."""
    out: dict[int, Any] = {}
    for p in procs:
        with contextlib.suppress(psutil.Error):
            out[p.pid] = p.memory_full_info()
    return out


def _sum_over(procs: list[psutil.Process], read: Callable[[psutil.Process], int], peaks: dict[int, int]) -> int:
    """Sum a per-process reading over a tree, keeping each process's own peak; gone processes count zero."""
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            value = read(p)
            total += value
            peaks[p.pid] = max(peaks.get(p.pid, 0), value)
    return total


@dataclass
class TreeSampler:
    """Samples a process tree from outside it: peak RSS and USS of the whole tree, and foreign CPU load.

    Foreign load is the CPU time that processes outside the tree (and outside this sampler's own process) used,
    in cores, over each second: the signal that a measurement was disturbed. The trees of `beside` (a duet's
    partner, which runs at the same time on purpose) are not foreign; their memory is not the tree's either.
    """

    pid: int
    interval: float = 0.1
    uss_interval: float = 5.0
    sampler_cpu_seconds: float = 0.0
    peak_rss: int = 0
    peak_uss: int = 0
    peak_pss: int = 0
    samples: int = 0
    foreign_cores: list[float] = field(default_factory=list)
    foreign_epochs: list[float] = field(default_factory=list)  # wall-clock end of each foreign-load interval
    peak_rss_by_pid: dict[int, int] = field(default_factory=dict)
    peak_uss_by_pid: dict[int, int] = field(default_factory=dict)
    timeline: list[tuple[float, int]] = field(default_factory=list)
    # a memory budget the sampler enforces (where no cgroup can): crossing it calls `on_exceed` with the tree's RSS
    limit: int | None = None
    on_exceed: Callable[[int], None] | None = None
    exceeded_rss: int | None = None
    beside: list[int] = field(default_factory=list)  # pids whose trees run beside this one on purpose
    _me_start: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> TreeSampler:
        self._me_start = self._cpu_seconds([psutil.Process()])
        self._thread = threading.Thread(target=self._run, name="xeonft-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _tree(self, pid: int | None = None) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid if pid is None else pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def _beside_seconds(self) -> dict[int, float]:
        """CPU seconds of every live process of the `beside` trees. A member that has gone is dropped, as for the
        tree: its time now sits in its parent's children_* counters, the launcher's for a partner's root, which the
        launcher's own count takes in (kept at its last read, the second it used before it exited was foreign)."""
        live: dict[int, float] = {}
        for pid in list(self.beside):
            for p in self._tree(pid):
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    live[p.pid] = t.user + t.system + t.children_user + t.children_system
        return live

    @staticmethod
    def _cpu_seconds(procs: list[psutil.Process], reaped: bool = False) -> float:
        """CPU seconds of `procs`; with `reaped`, their reaped children's too (the launcher's: a duet partner's
        root, once its supervisor has waited for it)."""
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system + ((t.children_user + t.children_system) if reaped else 0.0)
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        """RSS every tick (reading /proc/PID/statm costs microseconds). USS walks every page mapping (about 40 ms
        of CPU for a 2 GB process), so it is read every `uss_interval` seconds and when RSS has grown 2% past
        the last read, at most once a second. The tree's members and the CPU accounting refresh once a second."""
        me = psutil.Process()
        t0 = time.monotonic()
        last_t, last_busy, last_tree, last_me = t0, self._busy(), 0.0, self._cpu_seconds([me], reaped=True)
        last_uss, rss_at_uss = -1e9, 0
        known: dict[int, float] = {}
        partner: dict[int, float] = {}
        last_partner = 0.0
        procs = self._tree()
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            rss = _sum_over(procs, lambda p: p.memory_info().rss, self.peak_rss_by_pid)
            self.peak_rss = max(self.peak_rss, rss)
            self.samples += 1
            if self.limit is not None and rss > self.limit and self.exceeded_rss is None:
                self.exceeded_rss = rss
                if self.on_exceed is not None:
                    self.on_exceed(rss)
            grown = rss > rss_at_uss * 1.02 and now - last_uss >= 1.0
            if grown or now - last_uss >= self.uss_interval:
                full = _full_info(procs)
                uss = sum(info.uss for info in full.values())
                for pid, info in full.items():
                    self.peak_uss_by_pid[pid] = max(self.peak_uss_by_pid.get(pid, 0), info.uss)
                # PSS counts a page shared by n processes of the tree as 1/n in each: the tree's sum is exact
                pss = sum(info.pss for info in full.values())
                self.peak_uss, self.peak_pss = max(self.peak_uss, uss), max(self.peak_pss, pss)
                last_uss, rss_at_uss = now, rss
            if now - last_t >= 1.0:
                procs = self._tree()
                # Each live member's own CPU plus that of its children already reaped (short-lived helpers
                # would otherwise count as foreign); a member that has gone is dropped, as its time now sits
                # in its parent's children_* counters.
                live: dict[int, float] = {}
                for p in procs:
                    with contextlib.suppress(psutil.Error):
                        t = p.cpu_times()
                        live[p.pid] = t.user + t.system + t.children_user + t.children_system
                known = live or known
                partner = self._beside_seconds() if self.beside else partner
                busy, tree, mine = self._busy(), sum(known.values()), self._cpu_seconds([me], reaped=True)
                together = sum(partner.values())
                foreign = (busy - last_busy) - (tree - last_tree) - (mine - last_me) - (together - last_partner)
                last_partner = together
                self.foreign_cores.append(max(0.0, foreign / (now - last_t)))
                self.foreign_epochs.append(time.time())
                self.timeline.append((round(now - t0, 2), rss))
                self.sampler_cpu_seconds = self._cpu_seconds([me]) - self._me_start
                last_t, last_busy, last_tree, last_me = now, busy, tree, mine

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)

    def summary(self, window: list[float] | None = None) -> dict[str, Any]:
        """Peaks over the whole cell; foreign load over `window` (wall-clock start and end of the measured steps)
        where given, so that a neighbour during model loading does not mark a clean measurement disturbed."""
        loads = sorted(self.foreign_cores)
        out: dict[str, Any] = {
            "peak_rss_bytes": self.peak_rss,
            "peak_uss_bytes": self.peak_uss,
            "peak_pss_bytes": self.peak_pss,
            "memory_samples": self.samples,
            "foreign_cpu_cores_mean": statistics.fmean(loads) if loads else 0.0,
            "foreign_cpu_cores_p90": p90(loads),
            "launcher_cpu_seconds": self.sampler_cpu_seconds,
            # the tree's RSS once a second (seconds since start, bytes), thinned to 600 points: growth over a run
            "rss_timeline": self.timeline[:: max(1, len(self.timeline) // 600)],
        }
        if window and len(window) == 2:
            # an interval ending inside the window, or the first one after it (it covers the window's end)
            inside = [c for c, t in zip(self.foreign_cores, self.foreign_epochs, strict=True)
                      if window[0] < t <= window[1] + 1.0]
            out["measured_foreign_cpu_cores_mean"] = statistics.fmean(inside) if inside else None
        return out

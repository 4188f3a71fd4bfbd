"""The OOM boundary: the largest batch that trains within a memory budget, found by doubling until a probe fails
and then bisecting between the largest batch that trained and the smallest that did not.

Each probe is a real cell in its own capped process (`memory_limit`), so a failed probe is an `oom` record and
never the host's problem. The logic here is pure: the caller runs the probes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Probe:
    """One probe's outcome: `ok` means it trained its steps within the budget."""

    batch: int
    ok: bool
    peak_bytes: int | None  # the tree's peak RSS (or where it was stopped)
    tokens_per_step: float | None  # mean non-padding tokens per optimizer step
    status: str
    reason: str | None = None
    seconds: float = 0.0  # the probe's wall time
    key: str | None = None
    tokens_per_second: float | None = None
    fixed_seconds: float | None = None  # its fixed cost (harness.sizing.project.fixed_seconds)


@dataclass(frozen=True)
class ProbeRow(Probe):
    """A probe as sizing.json lists it: and whether the memory fit used it (not held at the budget)."""

    in_fit: bool = False


def bounds(tried: dict[int, Probe]) -> tuple[int, int | None]:
    """(largest batch that trained below the smallest that failed, that smallest failure or None)."""
    failed = min((b for b, p in tried.items() if not p.ok), default=None)
    ok = max((b for b, p in tried.items() if p.ok and (failed is None or b < failed)), default=0)
    return ok, failed


def next_batch(tried: dict[int, Probe], max_batch: int) -> int | None:
    """The next batch to probe, or None when the boundary is found (or `max_batch` trained)."""
    ok, failed = bounds(tried)
    if failed is None:
        if ok >= max_batch:
            return None
        return min(max(1, ok * 2), max_batch)
    return None if failed - ok <= 1 else (ok + failed) // 2


def search(probe: Callable[[int], Probe], max_batch: int, affordable: Callable[[int], bool]) -> dict[int, Probe]:
    """Probe until the boundary is found, `max_batch` trained, or the next probe does not fit the time left."""
    tried: dict[int, Probe] = {}
    while (batch := next_batch(tried, max_batch)) is not None and affordable(batch):
        tried[batch] = probe(batch)
    return tried


def safe_batch(tried: dict[int, Probe], budget: int, margin: float) -> int:
    """The largest batch below the boundary whose measured peak left `margin` of the budget free (0: none)."""
    ok, _ = bounds(tried)
    return max((b for b, p in tried.items() if p.ok and b <= ok and p.peak_bytes is not None
                and p.peak_bytes <= budget * (1 - margin)), default=0)

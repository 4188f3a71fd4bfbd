"""Where a cell's wall time goes, and a sweep's: the harness's own efficiency, measured.

The worker clocks what only it sees (`WorkerClock`: loading, preparing, building, training, on CLOCK_MONOTONIC,
which every process on the machine shares); the launcher, which started the process and saw it end, turns that and
the cell's steps into `Phases`: disjoint spans that add up to the wall time it measured itself, the remainder
(start-up, teardown, the training loop's own bookkeeping) named as such, never lost. Pure Python, no torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import Field

from harness.measure.steps import Open, Step, measured_window

CacheUse = Literal["hit", "miss", "off"]

# The spans of a cell, in the order they happen; `measured` is the part a statistic uses.
PHASES: tuple[str, ...] = ("startup", "data_load", "data_prep", "model_load", "trainer_build", "warmup", "verbose",
                           "measured", "profiled", "eval", "save", "loop", "other")
LABELS = {"startup": "start-up", "data_load": "data loading", "data_prep": "data preparation",
          "model_load": "model loading", "trainer_build": "trainer building", "warmup": "warm-up",
          "verbose": "warm-up with oneDNN verbose", "measured": "measured steps", "profiled": "profiled step",
          "eval": "eval", "save": "checkpoint saves", "loop": "training loop", "other": "other"}


class WorkerClock(Open):
    """What the worker timed of its own cell, in seconds, and the CLOCK_MONOTONIC instants (`time.monotonic()`) at
    which its own part began (its imports done) and ended (its result built), for the launcher to place it."""

    began: float = Field(description="CLOCK_MONOTONIC when the cell's imports were done (start-up ends).")
    ended: float | None = Field(default=None, description="CLOCK_MONOTONIC when the cell's result was built.")
    data_load: float = Field(default=0.0, description="Reading and splitting the rows.")
    data_prep: float = Field(default=0.0, description="Tokenizing and packing them (or reading them from the "
                                                      "prepared-data cache).")
    model_load: float = Field(default=0.0, description="Loading the model and wrapping it with LoRA.")
    trainer_build: float = Field(default=0.0, description="Building the trainer, data preparation apart.")
    train: float = Field(default=0.0, description="trainer.train() as a whole: steps, evaluations, saves and the "
                                                  "loop's own work.")
    data_cache: CacheUse = Field(default="off", description="The prepared-data cache: hit (read), miss (prepared "
                                                            "and stored) or off.")
    verbose_step: int | None = Field(default=None, description="The step oneDNN's verbose log covered (None: no "
                                                               "probe ran).")
    verbose_parse: float = Field(default=0.0, description="Reading and summarizing the verbose log after its step "
                                                          "(outside the step's own time).")
    own_eval: float = Field(default=0.0, description="xeonft's own eval loss, both passes (before and after "
                                                     "trainer.train(), outside it): counted as evaluation.")


class Phases(Open):
    """A cell's wall time, as the launcher measured it, split into disjoint phases that add up to it."""

    wall: float = Field(description="The cell's wall time, launch to exit, as the launcher measured it.")
    startup: float = Field(default=0.0, description="Process start, interpreter and imports.")
    data_load: float = Field(default=0.0, description="Reading and splitting the rows.")
    data_prep: float = Field(default=0.0, description="Tokenizing and packing (or reading the prepared-data "
                                                      "cache).")
    model_load: float = Field(default=0.0, description="Loading the model, LoRA wrapping.")
    trainer_build: float = Field(default=0.0, description="Building the trainer, data preparation apart.")
    warmup: float = Field(default=0.0, description="The timing warm-up's steps without oneDNN's verbose log.")
    verbose: float = Field(default=0.0, description="The warm-up step under oneDNN's verbose log.")
    measured: float = Field(default=0.0, description="The measured steps: what throughput is taken over.")
    profiled: float = Field(default=0.0, description="The step under torch.profiler, after the measured ones.")
    eval: float = Field(default=0.0, description="Evaluations.")
    save: float = Field(default=0.0, description="Checkpoint saves.")
    loop: float = Field(default=0.0, description="trainer.train()'s own work outside steps, evaluations and saves "
                                                 "(its set-up, logging, its end).")
    other: float = Field(default=0.0, description="The rest of the wall time: building the result, teardown, exit, "
                                                  "and what the worker could not clock (a cell that failed).")
    data_cache: CacheUse | None = Field(default=None, description="The prepared-data cache's use in the cell.")

    def seconds(self) -> dict[str, float]:
        return {p: float(getattr(self, p)) for p in PHASES}

    @classmethod
    def of_cell(cls, wall: float, launched: float, clock: WorkerClock | None, steps: Sequence[Step],
                evals: Iterable[dict[str, float]], saves: Iterable[dict[str, float]] | None, timing_warmup: int,
                measured: int | None) -> Phases:
        """The phases of one cell from the worker's clock and steps, placed in the launcher's wall time
        (`launched`: CLOCK_MONOTONIC when it started the process). Without a clock (the cell failed) it is all
        `other`; the remainder never goes negative (a clock read before the launch is clamped)."""
        if clock is None:
            return cls(wall=wall, other=wall)
        window = measured_window(timing_warmup, measured)
        warm = steps[:timing_warmup]
        verbose_step = sum(s.seconds for s in warm if s.step == clock.verbose_step)
        verbose = verbose_step + clock.verbose_parse
        after = steps[window.stop:] if window.stop is not None else []
        spans = {
            "startup": min(max(0.0, clock.began - launched), wall),
            "data_load": clock.data_load, "data_prep": clock.data_prep, "model_load": clock.model_load,
            "trainer_build": clock.trainer_build,
            "warmup": sum(s.seconds for s in warm) - verbose_step, "verbose": verbose,
            "measured": sum(s.seconds for s in steps[window]), "profiled": sum(s.seconds for s in after),
            "eval": sum(float(e.get("seconds", 0.0)) for e in evals),
            "save": sum(float(s.get("seconds", 0.0)) for s in saves or []),
        }
        in_train = spans["warmup"] + verbose + spans["measured"] + spans["profiled"] + spans["eval"] + spans["save"]
        spans["loop"] = max(0.0, clock.train - in_train)
        spans["eval"] += clock.own_eval  # outside trainer.train(): after the loop is taken from it
        spans["other"] = max(0.0, wall - sum(spans.values()))
        return cls(wall=wall, data_cache=clock.data_cache, **spans)


class SweepClock(Open):
    """What a sweep spent outside its cells, in seconds."""

    lock_wait: float = Field(default=0.0, description="Waiting for the machine lock (another benchmark timing).")
    peak: float = Field(default=0.0, description="Measuring the GEMM peak before the cells.")


def totals(phases: Iterable[Phases]) -> dict[str, float]:
    """Each phase's seconds summed over cells, and `wall` their wall time."""
    out = dict.fromkeys(("wall", *PHASES), 0.0)
    for p in phases:
        out["wall"] += p.wall
        for name, s in p.seconds().items():
            out[name] += s
    return out


def shares(phases: Iterable[Phases]) -> dict[str, float]:
    """Each phase's share of the cells' summed wall time (they add up to 1, `other` taking the remainder)."""
    t = totals(phases)
    wall = t.pop("wall")
    return {k: v / wall for k, v in t.items()} if wall > 0 else {}


def share_line(phases: Sequence[Phases], sweep: SweepClock | None = None) -> str | None:
    """The one-line account: "measured steps: 61% of the cells' 2,254 s; warm-up 16%, eval 9%, ..." (the phases
    of 0.5% or more, largest first), and what the sweep spent outside the cells."""
    if not phases:
        return None
    wall = totals(phases)["wall"]
    got = shares(phases)
    if not got:
        return None
    rest = sorted(((k, v) for k, v in got.items() if k != "measured" and v >= 0.005), key=lambda kv: -kv[1])
    line = f"measured steps: {got['measured']:.0%} of the cells' {wall:,.0f} s"
    if rest:
        line += "; " + ", ".join(f"{LABELS[k]} {v:.0%}" for k, v in rest)
    spent = (("GEMM peak", sweep.peak), ("waiting for the machine", sweep.lock_wait)) if sweep else ()
    outside = [f"{what} {seconds:,.0f} s" for what, seconds in spent if seconds >= 0.5]  # a fraction is no wait
    if outside:
        line += "; outside the cells: " + ", ".join(outside)
    return line

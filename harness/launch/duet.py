"""Duet benchmarking (Bulej et al., ICPE 2020): two cells at once, each on its own half of the cores, so that what
the shared host does to one (a neighbour's burst, a frequency change, a cache warming) it does to both.

A `design: duet` matrix runs every other configuration beside its first one (the reference), once per round; the
halves swap from one round to the next (and between the configurations of a round), so neither half's own speed
leans on a verdict. Both cells wait for each other at a barrier after their timing warm-up, so their measured
steps start together; each cell's throughput is then taken over its measured steps that ran wholly inside the time
both were in their measured steps: where one finished sooner, its partner's later steps ran beside something else
(an evaluation, an idle half) and are left out. Only the ratio of the two means anything; a duet
cell's own tokens/s (half the cores, a busy neighbour) is not comparable with a solo sweep's.
"""

from __future__ import annotations

import random
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.base.errors import Unavailable
from harness.cell.protocol import DUET_VAR
from harness.config.matrix import RunOrder
from harness.config.spec import CellSpec
from harness.launch.lifeline import kill_tree
from harness.launch.topology import Placement
from harness.measure.host import cores
from harness.measure.steps import Step
from harness.results.records import CellRecord, DuetRun

MIN_STEPS = 2  # measured steps a side inside the overlap, for a duet figure


@dataclass(frozen=True)
class Duet:
    """Two cells to run at once: the reference on half `reference_half`, the candidate on the other."""

    number: int
    reference: CellSpec
    candidate: CellSpec
    reference_half: int


def halves() -> tuple[Placement, Placement]:
    """The usable physical cores split in two (one logical CPU each): the lower half and the upper half."""
    usable = cores()
    if len(usable) < 2:
        raise Unavailable(f"a duet needs at least 2 physical cores (one a side); this machine lets xeonft use "
                          f"{len(usable)}")
    half = len(usable) // 2
    return (Placement(cpus=tuple(c.cpus[0] for c in usable[:half])),
            Placement(cpus=tuple(c.cpus[0] for c in usable[half:2 * half])))


def _as_configuration(spec: CellSpec) -> CellSpec:
    return spec.model_copy(update={"repeat": 0})


def plan(cells: Sequence[CellSpec], order: RunOrder, seed: int) -> list[Duet]:
    """The duets of a duet matrix's cells (`harness.config.matrix`: the reference's first, `k` runs a round, then
    the others'), round by round; each round's candidates in an order drawn from (seed, round) when shuffled.
    Candidate j of round r stands beside the reference's run r*k + j; the reference takes half (r + j) mod 2."""
    if not cells:
        return []
    reference = _as_configuration(cells[0])
    refs = {c.repeat: c for c in cells if _as_configuration(c) == reference}
    others: list[CellSpec] = []
    for c in cells:
        if _as_configuration(c) != reference and _as_configuration(c) not in others:
            others.append(_as_configuration(c))
    by_round: dict[int, list[CellSpec]] = {}
    for c in cells:
        if _as_configuration(c) != reference:
            by_round.setdefault(c.repeat, []).append(c)
    k = len(others)
    duets: list[Duet] = []
    for r in sorted(by_round):
        todo = list(by_round[r])
        if order.shuffle:
            random.Random(f"{seed}:duet:{r}").shuffle(todo)
        for cand in todo:
            j = others.index(_as_configuration(cand))
            ref = refs.get(r * k + j) or reference.model_copy(update={"repeat": r * k + j})
            duets.append(Duet(number=len(duets), reference=ref, candidate=cand, reference_half=(r + j) % 2))
    return duets


def overlap(a: CellRecord, b: CellRecord) -> tuple[float | None, str | None]:
    """The wall seconds both cells were in their measured steps at once, or None and why not."""
    wa = a.result.measured_epoch if a.result is not None else None
    wb = b.result.measured_epoch if b.result is not None else None
    if not wa or not wb or len(wa) < 2 or len(wb) < 2:
        return None, "a cell of the duet has no measured steps"
    start, end = max(wa[0], wb[0]), min(wa[1], wb[1])
    if end <= start:
        return None, "the two cells' measured steps never ran at the same time"
    return end - start, None


INSIDE = 0.95  # the share of a step's seconds that must lie inside the overlap for it to count


def within(steps: Sequence[Step], start: float, end: float) -> list[Step]:
    """The steps that ran inside [start, end] (wall clock): at least INSIDE of each one's seconds. Not "wholly":
    each side's first measured step begins when the barrier lets it go, a few milliseconds before or after its
    partner's, so "wholly" dropped one side's first step by float jitter (a real duet of 25-second steps kept 1 of
    3); a step mostly outside still does not count."""
    out = []
    for s in steps:
        if s.ended is None or s.seconds <= 0:
            continue
        begun = s.ended - s.seconds
        if min(s.ended, end) - max(begun, start) >= INSIDE * s.seconds:
            out.append(s)
    return out


def part(record: CellRecord, partner: CellRecord, key_of_partner: str, duet: Duet, role: str) -> DuetRun:
    """This cell's duet figure: its throughput over its measured steps inside the overlap."""
    half = duet.reference_half if role == "reference" else 1 - duet.reference_half
    base = {"partner": key_of_partner, "role": role, "duet": duet.number, "half": half}
    if record.status not in ("ok", "disturbed") or partner.status not in ("ok", "disturbed"):
        return DuetRun(**base, note="a cell of the duet did not finish with a measurement")
    span, why = overlap(record, partner)
    if span is None:
        return DuetRun(**base, note=why)
    assert record.result is not None and partner.result is not None
    start = max(record.result.measured_epoch[0], partner.result.measured_epoch[0])  # type: ignore[index]
    steps = within(record.result.steps, start, start + span)
    seconds = sum(s.seconds for s in steps)
    if len(steps) < MIN_STEPS or seconds <= 0:
        return DuetRun(**base, overlap_seconds=span, steps=len(steps),
                       note=f"{len(steps)} measured step(s) inside the overlap; {MIN_STEPS} are needed")
    return DuetRun(**base, overlap_seconds=span, steps=len(steps),
                   tokens_per_second=sum(s.tokens for s in steps) / seconds)


Supervise = Callable[[CellSpec, Placement, list[int], Callable[[int], None], dict[str, str]], CellRecord]


def run_pair(duet: Duet, sides: tuple[Placement, Placement], supervise_one: Supervise) -> tuple[CellRecord, CellRecord]:
    """Both cells of a duet at once, each through `supervise_one(spec, placement, beside, on_start, env)` in a
    thread of its own; each one's `beside` gets the other's pid as it starts, and `env` names their barrier
    (`harness.cell.protocol.meet`: both start their measured steps together). A cell that ends leaves a mark
    there, so that a partner that failed early does not hold the other at the barrier. Ctrl-C (or any error
    here) kills both."""
    ref_place = sides[duet.reference_half]
    cand_place = sides[1 - duet.reference_half]
    ref_beside: list[int] = []
    cand_beside: list[int] = []
    pids: list[int] = []
    out: dict[str, CellRecord] = {}
    errors: list[BaseException] = []
    meeting = Path(tempfile.mkdtemp(prefix="xeonft-duet-"))

    def one(name: str, spec: CellSpec, where: Placement, beside: list[int], partner_beside: list[int]) -> None:
        def started(pid: int) -> None:
            pids.append(pid)
            partner_beside.append(pid)

        try:
            out[name] = supervise_one(spec, where, beside, started, {DUET_VAR: f"{meeting}:{name}:2"})
        except BaseException as err:  # handed to the main thread, which re-raises it
            errors.append(err)
        finally:
            (meeting / f"{name}.ended").write_text("", encoding="utf-8")

    threads = [threading.Thread(target=one, args=("reference", duet.reference, ref_place, ref_beside, cand_beside),
                                daemon=True),
               threading.Thread(target=one, args=("candidate", duet.candidate, cand_place, cand_beside, ref_beside),
                                daemon=True)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.5)
    except BaseException:
        for pid in pids:
            kill_tree(pid)
        raise
    finally:
        for f in meeting.iterdir():
            f.unlink()
        meeting.rmdir()
    if errors:
        raise errors[0]
    return out["reference"], out["candidate"]

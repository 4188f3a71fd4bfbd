"""The order cells run in within each round of a sweep: shuffled from a recorded seed, or as the matrix lists them.

A shared machine drifts through a sweep (the first round here ran 15-30% slower than later ones). Run in the same
order every round, the configuration listed first always meets the machine in the same state as the one listed
after it; shuffled, each round puts them in an order of its own, so that the drift falls on every configuration
alike and a paired verdict (two configurations' runs of one round) compares neighbours in time.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence

from harness.config.matrix import RunOrder
from harness.config.spec import CellSpec


def sweep_seed(order: RunOrder, recorded: int | None) -> int:
    """The seed of this sweep's order: the one recorded by the sweep it resumes, else the matrix's, else drawn."""
    if recorded is not None:
        return recorded
    return order.seed if order.seed is not None else secrets.randbelow(2**31)


def in_rounds(specs: Sequence[CellSpec], order: RunOrder, seed: int) -> list[CellSpec]:
    """The cells round by round (repeat 0 first), each round's in its own order drawn from (seed, round)."""
    rounds: dict[int, list[CellSpec]] = {}
    for spec in specs:
        rounds.setdefault(spec.repeat, []).append(spec)
    out: list[CellSpec] = []
    for r in sorted(rounds):
        cells = list(rounds[r])
        if order.shuffle:
            random.Random(f"{seed}:{r}").shuffle(cells)
        out += cells
    return out

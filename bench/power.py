"""Verdict rates of one sweep's design, by simulation from the spreads the sweep itself measured.

    .venv/bin/python bench/power.py results/power [--baseline replica=a] [--slowdown 10%] [--rounds 4,6,8]

For each configuration against the baseline (the report's, by default): its verdict and the test that gave it,
the spread between runs and within pairs of one round, and over simulated sweeps drawn from that spread how
often an A/A pair comes out unchanged, a slowdown of the given size comes out slower, and an A/A pair comes out
slower (a false alarm), paired rule and Welch alone (`harness.analysis.power`).
"""

from __future__ import annotations

import argparse
import sys

from harness.analysis.frames import cells_frame
from harness.analysis.power import measured_spread, simulate
from harness.analysis.summary import baseline, configurations, speedups
from harness.base.errors import XeonftError
from harness.results.store import ResultStore


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--baseline")
    parser.add_argument("--slowdown", default="10%")
    parser.add_argument("--rounds", default="")
    parser.add_argument("--threshold", type=float, default=0.05)
    parser.add_argument("--alpha", type=float, default=0.01)
    args = parser.parse_args(argv)
    slowdown = float(args.slowdown.rstrip("%")) / 100
    try:
        df = cells_frame(ResultStore(args.results))
        base_identity, note = baseline(df, args.baseline)
    except XeonftError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if base_identity is None:
        print(f"error: {note}", file=sys.stderr)
        return 2
    configs = speedups(configurations(df), base_identity, threshold=args.threshold, alpha=args.alpha)
    base = configs.set_index("identity").loc[base_identity]
    print(f"{note}: {base['tokens_per_s']:.1f} tok/s over {base['repeats']} runs")
    for _, row in configs.iterrows():
        if row["identity"] == base_identity:
            continue
        print(f"\n{row['variant']}: {row['speedup_verdict']} ({row['speedup_test']}): {row['speedup_reason']}")
        spread = measured_spread(base["rounds"], row["rounds"])
        if spread is None:
            print("  fewer than 3 rounds hold both: no spread measured")
            continue
        print(f"  spread over {spread.rounds} rounds: between runs {spread.between:.1%}, within a pair "
              f"{spread.within_pair:.1%} (the round shares {spread.shared:.1%}, each run's own {spread.own:.1%})")
        wanted = [int(r) for r in args.rounds.split(",") if r] or [spread.rounds]
        for rounds in wanted:
            r = simulate(spread, rounds, slowdown=slowdown, threshold=args.threshold, alpha=args.alpha)
            print(f"  simulated, {rounds} rounds: A/A unchanged {r.aa_unchanged:.0%}, {slowdown:.0%} slower seen "
                  f"{r.slow_detected:.0%}, false slower {r.aa_false_slower:.1%} (Welch alone: "
                  f"{r.welch_aa_unchanged:.0%}, {r.welch_slow_detected:.0%}, {r.welch_aa_false_slower:.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Ranks of a data-parallel cell combined into global figures: the one home of that rule, used by the launcher
(the ranks of one node) and by `merge` (the nodes of one cell)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from harness.measure.steps import steps_from_records, summarize_steps


def combine_ranks(ranks: list[dict[str, Any]], timing_warmup: int, measured: int | None = None) -> dict[str, Any]:
    """Global figures of a data-parallel cell from its ranks' own results.

    Every step is a global step: its tokens and sequences are summed over the ranks and its time is the slowest
    rank's (they wait for each other in the all-reduce). Throughput is then global tokens over that time, never an
    average of per-rank throughputs. The loss is rank 0's (the trainer logs the mean across ranks there).
    """
    by_rank = sorted(ranks, key=lambda r: r["rank"])
    n_steps = min(len(r["steps"]) for r in by_rank)
    steps = []
    for i in range(n_steps):
        per = [r["steps"][i] for r in by_rank]
        slowest = max(per, key=lambda s: s["seconds"])
        steps.append({**slowest, "tokens": sum(s["tokens"] for s in per),
                      "sequences": sum(s["sequences"] for s in per), "loss": per[0].get("loss"),
                      "allreduce_seconds": max(s.get("allreduce_seconds", 0.0) for s in per),
                      # every rank's peak so far, summed: what the ranks together have needed by this step
                      "hwm_bytes": sum(s["hwm_bytes"] for s in per) if all(s.get("hwm_bytes") for s in per)
                      else None})
    records = steps_from_records(steps)
    evals = by_rank[0].get("evals", [])
    # trl gathers its token count across ranks already: rank 0's is the global one
    trl_tokens = by_rank[0]["summary"].get("trl_num_tokens")
    summary = summarize_steps(records, timing_warmup, measured, evals=evals, trl_num_tokens=trl_tokens)
    return {"summary": summary, "steps": [asdict(s) for s in records], "evals": evals}

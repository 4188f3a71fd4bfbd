"""A cell's history: its runs grouped by library version, date or xeonft commit, one machine at a time, with the
run-level interval of each group and the change points between them (`steps.detect_steps`), each named with the
versions on either side and set beside the work of a step there (a speed change where the work changed too is
not a speed change alone)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from packaging.version import InvalidVersion, Version

from harness.analysis.compare import WORK_KEYS, work_change
from harness.base.errors import XeonftError
from harness.base.stats import summarize_runs
from harness.history.changepoints import detect_steps


@dataclass
class Series:
    identity: str
    machine: str
    cpu: str | None
    label: str
    by: str
    points: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)


def _order(by: str, row: dict[str, Any]) -> tuple[Any, str] | None:
    if by == "date":
        return (row["date"] or "", row["result_set"]), f"{(row['date'] or '')[:16]}"
    if by == "commit":
        commit = row["xeonft_commit"]
        return ((row["date"] or ""), commit or "?"), (commit or "unknown")[:10]
    version = (row["versions"] or {}).get(by)
    if version is None:
        return None
    try:
        return (Version(version), version), version
    except InvalidVersion:
        return (Version("0"), version), version


def _mean_work(rows: list[dict[str, Any]]) -> dict[str, float]:
    works = [r["work"] for r in rows if r.get("work")]
    return {k: statistics.fmean(w[k] for w in works) for k in WORK_KEYS if works and all(k in w for w in works)}


def _label(config: dict[str, Any], varying: set[str]) -> str:
    keys = [k for k in ("model", "precision", "batch_size", "seq_len", "attn_implementation", "backend")
            if k in config] + sorted(varying - {"model", "precision", "batch_size", "seq_len"})
    return ", ".join(f"{k}={config.get(k)}" for k in dict.fromkeys(keys))


def series(rows: list[dict[str, Any]], by: str, selector: dict[str, Any] | None = None,
           threshold: float = 0.05, alpha: float = 0.01) -> list[Series]:
    """One series per (cell identity, machine) matching the selector, with at least two points."""
    selector = selector or {}
    kept = [r for r in rows if all(str(r["config"].get(k)) == str(v) for k, v in selector.items())]
    if selector and rows and not kept:
        known = sorted({k for r in rows for k in r["config"]})
        bad = [k for k in selector if k not in known]
        raise XeonftError(f"--cell {selector}: no catalogued run matches"
                          + (f" (unknown key(s): {', '.join(bad)})" if bad else ""))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in kept:
        groups.setdefault((r["identity"], r["machine"]), []).append(r)
    configs = [g[0]["config"] for g in groups.values()]
    varying = {k for k in (configs[0] if configs else {}) if len({str(c.get(k)) for c in configs}) > 1}
    out = []
    for (ident, machine), members in groups.items():
        s = Series(ident, machine, members[0]["cpu"], _label(members[0]["config"], varying), by)
        buckets: dict[Any, dict[str, Any]] = {}
        for r in members:
            order = _order(by, r)
            if order is None:
                continue
            b = buckets.setdefault(order[0], {"x": order[1], "rows": []})
            b["rows"].append(r)
        for _, b in sorted(buckets.items(), key=lambda kv: kv[0]):
            ok = [r for r in b["rows"] if r["status"] == "ok" and r["tokens_per_second"]]
            if not ok:
                continue
            tps = [r["tokens_per_second"] for r in ok]
            summary = summarize_runs(tps)
            losses = [r["eval_loss"] for r in ok if r["eval_loss"] is not None]
            s.points.append({"x": b["x"], "runs": tps, "n": summary.n, "median": summary.median, "low": summary.low,
                             "high": summary.high, "eval_loss": statistics.median(losses) if losses else None,
                             "stacks": sorted({r["stack"] or "default" for r in ok}),
                             "faults": sorted({r["fault"] for r in ok if r["fault"] not in (None, "none")}),
                             "work": _mean_work(ok)})
        if len(s.points) < 2:
            continue
        for step in detect_steps([p["runs"] for p in s.points], threshold=threshold, alpha=alpha):
            before, after = s.points[step.index - 1], s.points[step.index]
            changed = work_change([before["work"]], [after["work"]]) if before["work"] and after["work"] else {}
            s.steps.append({"before": before["x"], "after": after["x"], "verdict": step.verdict,
                            "ratio": step.ratio, "low": step.low, "high": step.high, "p": step.p_value,
                            "work_changed": changed})
        out.append(s)
    return out


def describe_step(by: str, step: dict[str, Any]) -> str:
    change = f"{abs(step['ratio'] - 1):.1%} {step['verdict']}"
    interval = f" (95% interval {step['low']:.2f}-{step['high']:.2f}, p={step['p']:.2g})" if step["low"] else ""
    text = f"{by} {step['before']} -> {step['after']}: {change}{interval}"
    if step["work_changed"]:
        text += "; the work of a step changed too (" + ", ".join(
            f"{k.replace('_', ' ')} {a:.3g} -> {b:.3g}" for k, (a, b) in step["work_changed"].items()) + \
            "): speed and work both moved"
    return text

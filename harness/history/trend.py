"""A cell's history: its runs grouped by library version, date or xeonft commit, one machine at a time, with the
run-level interval of each group and the change points between them (`changepoints.detect_steps`), each named with
the versions on either side and set beside the work of a step there (a speed change where the work changed too is
not a speed change alone)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from packaging.version import InvalidVersion, Version

from harness.analysis.compare import WORK_KEYS, work_change
from harness.base.errors import XeonftError
from harness.base.stats import summarize_runs
from harness.config.identity import OUTSIDE_MATCH
from harness.history.catalog import CatalogRun
from harness.history.changepoints import detect_steps

# What a configuration's label always shows; after these, every other field in which the labelled differ.
SHOWN = ("model", "precision", "batch_size", "seq_len", "attn_implementation", "backend")


@dataclass(frozen=True)
class Point:
    """One position of a series (a version, a date or a commit): its runs and their run-level interval."""

    x: str
    runs: list[float]
    n: int
    median: float
    low: float | None
    high: float | None
    eval_loss: float | None
    stacks: list[str]
    faults: list[str]  # faults injected on purpose into its runs
    work: dict[str, float]  # the mean work of a measured step
    aside: tuple[str, ...] = ()  # runs at this version on other stacks, left out (a bisect's put-backs, say)


@dataclass(frozen=True)
class Change:
    """A change point between two positions of a series, with the run-level verdict that kept it."""

    before: str
    after: str
    verdict: str  # slower | faster
    ratio: float
    low: float | None
    high: float | None
    p: float | None
    work_changed: dict[str, tuple[float, float]]  # the work of a step, where it moved too


@dataclass
class Series:
    """One cell (identity across stacks) on one machine, by version, date or commit."""

    identity: str
    machine: str | None
    cpu: str | None
    label: str
    by: str
    points: list[Point] = field(default_factory=list)
    steps: list[Change] = field(default_factory=list)


def labels(configs: Mapping[str, Mapping[str, Any]], shown: Sequence[str] = SHOWN) -> dict[str, str]:
    """Identity -> `key=value, ...`: the `shown` fields, then every other field of the definition in which the
    configurations differ (never those outside their identity, such as an injected fault). Two that would still read
    alike (they differ only where the flat definition does not look) are told apart by their identity's start."""
    keys = {k for c in configs.values() for k in c if k not in OUTSIDE_MATCH}
    varying = {k for k in keys if len({str(c.get(k)) for c in configs.values()}) > 1}
    out = {ident: ", ".join(f"{k}={c.get(k)}" for k in [*(k for k in shown if k in c), *sorted(varying - set(shown))])
           for ident, c in configs.items()}
    seen = Counter(out.values())
    return {ident: text if seen[text] == 1 else f"{text} [{ident[:8]}]" for ident, text in out.items()}


def _order(by: str, row: CatalogRun) -> tuple[Any, str] | None:
    if by == "date":
        return (row.date or "", row.set_id), f"{(row.date or '')[:16]}"
    if by == "commit":
        return ((row.date or ""), row.xeonft_commit or "?"), (row.xeonft_commit or "unknown")[:10]
    version = row.versions.get(by)
    if version is None:
        return None
    try:
        return (Version(version), version), version
    except InvalidVersion:
        return (Version("0"), version), version


def _mean_work(rows: list[CatalogRun]) -> dict[str, float]:
    works = [r.work for r in rows if r.work]
    return {k: statistics.fmean(w[k] for w in works) for k in WORK_KEYS if works and all(k in w for w in works)}


def _one_stack(by: str, ok: list[CatalogRun]) -> tuple[list[CatalogRun], tuple[str, ...]]:
    """By a library: the runs at one of its versions on one stack (its other libraries' versions and its name):
    first the stack named for the release (`trl-0.19.0`, as a bisect names it), then the one with the most runs.
    The rest (a bisect's moved package put back, a stack with another transformers, a research stack that patches
    the library) are a different point, not more runs of this one, and are named instead of mixed in."""
    if by in ("date", "commit"):
        return ok, ()
    Key = tuple[tuple[tuple[str, str], ...], str]
    groups: dict[Key, list[CatalogRun]] = {}
    for r in ok:
        others = tuple(sorted((k, v) for k, v in r.versions.items() if k != by))
        groups.setdefault((others, r.stack or "default"), []).append(r)
    if len(groups) < 2:
        return ok, ()

    def rank(key: Key) -> tuple[bool, int, Key]:
        runs = groups[key]
        return any(r.stack == f"{by}-{r.versions.get(by)}" for r in runs), len(runs), key

    main = max(groups, key=rank)
    theirs = dict(main[0])

    def differs(key: Key) -> str:
        moved = ", ".join(f"{k} {v}" for k, v in key[0] if theirs.get(k) != v)
        return f"with {moved}" if moved else f"on stack {key[1]}"

    aside = [f"{len(groups[key])} run(s) {differs(key)}" for key in sorted(groups) if key != main]
    return groups[main], tuple(aside)


def _point(x: str, ok: list[CatalogRun], aside: tuple[str, ...] = ()) -> Point:
    tps = [float(r.tokens_per_second or 0) for r in ok]
    summary = summarize_runs(tps)
    losses = [r.eval_loss for r in ok if r.eval_loss is not None]
    return Point(x=x, runs=tps, n=summary.n, median=summary.median, low=summary.low, high=summary.high,
                 eval_loss=statistics.median(losses) if losses else None,
                 stacks=sorted({r.stack or "default" for r in ok}),
                 faults=sorted({r.fault for r in ok if r.fault not in (None, "none")}), work=_mean_work(ok),
                 aside=aside)


def series(rows: list[CatalogRun], by: str, selector: dict[str, Any] | None = None,
           threshold: float = 0.05, alpha: float = 0.01) -> list[Series]:
    """One series per (cell identity, machine) matching the selector, with at least two points."""
    selector = selector or {}
    kept = [r for r in rows if all(str(r.config.get(k)) == str(v) for k, v in selector.items())]
    if selector and rows and not kept:
        known = sorted({k for r in rows for k in r.config})
        bad = [k for k in selector if k not in known]
        raise XeonftError(f"--cell {selector}: no catalogued run matches"
                          + (f" (unknown key(s): {', '.join(bad)})" if bad else ""))
    groups: dict[tuple[str, str | None], list[CatalogRun]] = {}
    for r in kept:
        groups.setdefault((r.identity, r.machine), []).append(r)
    named = labels({ident: members[0].config for (ident, _), members in groups.items()})  # a cell, every machine
    out = []
    for (ident, machine), members in groups.items():
        s = Series(ident, machine, members[0].cpu, named[ident], by)
        buckets: dict[Any, tuple[str, list[CatalogRun]]] = {}
        for r in members:
            order = _order(by, r)
            if order is not None:
                buckets.setdefault(order[0], (order[1], []))[1].append(r)
        for _, (x, bucket) in sorted(buckets.items(), key=lambda kv: kv[0]):
            ok, aside = _one_stack(by, [r for r in bucket if r.measured])
            if ok:
                s.points.append(_point(x, ok, aside))
        if len(s.points) < 2:
            continue
        for step in detect_steps([p.runs for p in s.points], threshold=threshold, alpha=alpha):
            before, after = s.points[step.index - 1], s.points[step.index]
            changed = work_change([before.work], [after.work]) if before.work and after.work else {}
            s.steps.append(Change(before=before.x, after=after.x, verdict=step.verdict, ratio=step.ratio,
                                  low=step.low, high=step.high, p=step.p_value, work_changed=changed))
        out.append(s)
    return out


def describe_step(by: str, step: Change) -> str:
    change = f"{abs(step.ratio - 1):.1%} {step.verdict}"
    interval = f" (95% interval {step.low:.2f}-{step.high:.2f}, p={step.p:.2g})" if step.low else ""
    text = f"{by} {step.before} -> {step.after}: {change}{interval}"
    if step.work_changed:
        text += "; the work of a step changed too (" + ", ".join(
            f"{k.replace('_', ' ')} {a:.3g} -> {b:.3g}" for k, (a, b) in step.work_changed.items()) + \
            "): speed and work both moved"
    return text

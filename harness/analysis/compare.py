"""Two result sets -> matched configurations -> run-level statistics -> a verdict a CI job can act on.

Configurations are matched by their definition (`harness.config.identity.Configuration.counterpart`: not the
environment, not the repeat; a cell slowed on purpose matches its normal twin). Each run (repeat) gives one value, its
throughput (measured tokens over measured seconds); a configuration is `slower` only when its runs are slower beyond the
threshold *and* significantly so (Welch's t-test on log throughput, p < alpha), `unchanged` when the interval of the
ratio stays within the threshold, and `inconclusive` when the runs cannot tell (too few, or too noisy). Steps inside one
run are not independent: they are never pooled into a verdict. Loss trajectories are compared too: a drift beyond the
tolerance means the numbers changed, not just the speed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from harness.analysis.frames import configuration
from harness.base.errors import XeonftError
from harness.base.stats import decide
from harness.base.units import interval, num
from harness.results.store import ResultStore

# The verdicts that make a regression: slower beyond the threshold, or measured before and failing now.
REGRESSIONS = ("slower", "failed")


@dataclass
class CellRuns:
    label: str
    statuses: list[str] = field(default_factory=list)
    runs: list[float] = field(default_factory=list)  # one throughput per measured run
    losses: dict[int, list[float]] = field(default_factory=dict)
    eval_losses: list[float] = field(default_factory=list)
    disturbed: int = 0
    work: list[dict[str, float]] = field(default_factory=list)  # the work of a step, per measured run

    @property
    def measured(self) -> bool:
        return bool(self.runs)


@dataclass
class Comparison:
    cell: str
    verdict: str  # slower | faster | unchanged | inconclusive | failed | fixed
    base_median: float | None = None
    new_median: float | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    test: str | None = None  # which test gave the verdict ("welch": runs of two result sets are independent)
    n_base: int = 0  # runs
    n_new: int = 0
    loss_drift: float | None = None
    eval_loss_drift: float | None = None
    loss_changed: bool = False
    work_changed: dict[str, tuple[float, float]] = field(default_factory=dict)  # base -> new, beyond 2%
    note: str = ""


def collect(store: ResultStore) -> dict[str, CellRuns]:
    """Per configuration (matched by definition): the throughput of every measured run, per-step train losses
    and eval losses. A disturbed run's numbers are left out of the verdict and counted in a note."""
    out: dict[str, CellRuns] = {}
    for r in store.records():
        if r.match_key is None:
            continue
        cell = out.setdefault(configuration(r).counterpart, CellRuns(label=r.label()))
        cell.statuses.append(r.status)
        if r.status == "disturbed":
            cell.disturbed += 1
            continue
        if not r.measured or r.result is None:
            continue
        tps = r.result.summary.tokens_per_second
        if tps:
            cell.runs.append(float(tps))
        if (work := r.step_work()) is not None:
            cell.work.append(work)
        for st in r.result.steps:
            if st.loss is not None:
                cell.losses.setdefault(st.step, []).append(st.loss)
        if r.result.eval_loss is not None:
            cell.eval_losses.append(r.result.eval_loss)
    return out


def _loss_drift(base: CellRuns, new: CellRuns) -> tuple[float | None, float | None]:
    common = sorted(set(base.losses) & set(new.losses))
    train = None
    if common:
        diffs = [abs(float(np.mean(new.losses[s])) - float(np.mean(base.losses[s])))
                 / max(abs(float(np.mean(base.losses[s]))), 1e-8) for s in common]
        train = float(np.mean(diffs))
    evals = None
    if base.eval_losses and new.eval_losses:
        b, n = float(np.mean(base.eval_losses)), float(np.mean(new.eval_losses))
        evals = abs(n - b) / max(abs(b), 1e-8)
    return train, evals


WORK_KEYS = ("tokens_per_step", "rows_per_step", "documents_per_step", "padding_share", "attention_span")


def work_change(base: list[dict[str, float]], new: list[dict[str, float]],
                tolerance: float = 0.02) -> dict[str, tuple[float, float]]:
    """The measures of a step's work whose mean over runs moved by more than `tolerance` (relative)."""
    if not base or not new:
        return {}
    out = {}
    for k in WORK_KEYS:
        a = float(np.mean([w.get(k, 0.0) for w in base]))
        b = float(np.mean([w.get(k, 0.0) for w in new]))
        if abs(b - a) > tolerance * max(abs(a), 1e-9) and abs(b - a) > 1e-6:
            out[k] = (a, b)
    return out


def compare_cell(base: CellRuns, new: CellRuns, threshold: float, alpha: float, loss_tolerance: float) -> Comparison:
    c = Comparison(cell=new.label, verdict="inconclusive", n_base=len(base.runs), n_new=len(new.runs))
    notes = []
    if base.disturbed or new.disturbed:
        notes.append(f"{base.disturbed}/{new.disturbed} disturbed run(s) left out (base/new)")
    if base.measured and not new.measured:
        c.verdict = "failed"
        c.note = "; ".join([*notes, f"measured in base, {', '.join(sorted(set(new.statuses)))} in new"])
        return c
    if not base.measured and new.measured:
        c.verdict = "fixed"
        c.note = "; ".join([*notes, f"{', '.join(sorted(set(base.statuses)))} in base, measured in new"])
    if base.measured and new.measured:
        c.base_median, c.new_median = float(np.median(base.runs)), float(np.median(new.runs))
        v = decide(base.runs, new.runs, threshold=threshold, alpha=alpha)
        c.ratio, c.ci_low, c.ci_high, c.p_value, c.test = v.ratio, v.low, v.high, v.p_value, v.test
        c.verdict = v.verdict
        if v.verdict == "inconclusive":
            notes.append(v.reason)
    c.work_changed = work_change(base.work, new.work)
    if c.work_changed:
        notes.append("the work of a step changed too (" + ", ".join(
            f"{k.replace('_', ' ')} {a:.3g} -> {b:.3g}" for k, (a, b) in c.work_changed.items())
            + "): the speed change is not the library's speed alone")
    c.loss_drift, c.eval_loss_drift = _loss_drift(base, new)
    drifts = [d for d in (c.loss_drift, c.eval_loss_drift) if d is not None]
    c.loss_changed = bool(drifts) and max(drifts) > loss_tolerance
    c.note = "; ".join(filter(None, [c.note, *notes]))
    return c


@dataclass
class CompareResult:
    base: str
    new: str
    threshold: float
    alpha: float
    loss_tolerance: float
    cells: list[Comparison]
    only_in_base: list[str]
    only_in_new: list[str]

    @property
    def regressed(self) -> bool:
        return any(c.verdict in REGRESSIONS or c.loss_changed for c in self.cells)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "regressed": self.regressed}, indent=1)

    def to_markdown(self) -> str:
        inconclusive = sum(c.verdict == "inconclusive" for c in self.cells)
        lines = [f"# xeonft compare: {self.new} vs {self.base}", "",
                 f"Verdict: **{'REGRESSION' if self.regressed else 'no regression'}** "
                 f"(slower = more than {self.threshold:.0%} slower and significant over runs, Welch p < "
                 f"{self.alpha:g} on log throughput; loss drift tolerance {self.loss_tolerance:.1%})"
                 + (f"; {inconclusive} configuration(s) inconclusive: their runs cannot tell, add repeats"
                    if inconclusive else ""), "",
                 "| cell | verdict | base tok/s | new tok/s | ratio | 95% interval | p | runs base/new | loss drift |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for c in self.cells:
            verdict = c.verdict + (" + loss changed" if c.loss_changed else "")
            drift = max([d for d in (c.loss_drift, c.eval_loss_drift) if d is not None], default=None)
            lines.append(
                f"| {c.cell} | {verdict} | {num(c.base_median, '{:.1f}')} | {num(c.new_median, '{:.1f}')} | "
                f"{num(c.ratio, '{:.3f}')} | {interval(c.ci_low, c.ci_high, '{:.3f}')} | "
                f"{num(c.p_value, '{:.2g}')} | {c.n_base}/{c.n_new} | {num(drift, '{:.2%}')} |")
        for title, names in (("Only in base", self.only_in_base), ("Only in new", self.only_in_new)):
            if names:
                lines += ["", f"{title}: " + "; ".join(names)]
        notes = [f"- {c.cell}: {c.note}" for c in self.cells if c.note]
        if notes:
            lines += ["", "Notes:", *notes]
        return "\n".join(lines) + "\n"


def compare(base: str | Path, new: str | Path, threshold: float = 0.05, alpha: float = 0.01,
            loss_tolerance: float = 0.02) -> CompareResult:
    """Compare two result sets cell by cell."""
    if not 0 <= threshold < 1:  # as `decide` takes it: 0 calls any significant slowdown slower
        raise XeonftError(f"threshold must be at least 0 and below 1 (got {threshold})")
    stores = [ResultStore(p) for p in (base, new)]
    for s in stores:
        s.manifest()  # a clear error when a path is not a result set
    a, b = collect(stores[0]), collect(stores[1])
    common = [k for k in b if k in a]
    if not common:
        raise XeonftError(f"'{base}' and '{new}' have no cells with the same configuration")
    cells = [compare_cell(a[k], b[k], threshold, alpha, loss_tolerance) for k in common]
    return CompareResult(base=str(base), new=str(new), threshold=threshold, alpha=alpha,
                         loss_tolerance=loss_tolerance, cells=cells,
                         only_in_base=[a[k].label for k in a if k not in b],
                         only_in_new=[b[k].label for k in b if k not in a])


def parse_threshold(text: str) -> float:
    """'5%' or '0.05' -> 0.05."""
    try:
        return float(text.rstrip("%")) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise XeonftError(f"bad threshold '{text}': use a percentage like 5% or a fraction like 0.05") from None

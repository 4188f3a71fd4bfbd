"""Two result sets -> matched cells -> statistics -> a verdict a CI job can act on.

Cells are matched by their configuration (`match_key`: not the environment, not the repeat). For each pair the
per-step throughput samples of the measured steps (all repeats pooled) are compared with a Mann-Whitney U test
and a bootstrap confidence interval of the ratio of medians. A cell is `slower` only when it is slower beyond the
threshold *and* the difference is significant (p < alpha): noise alone does not fail a build. Loss trajectories
are compared too: a drift beyond the tolerance means the numbers changed, not just the speed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import XeonftError
from harness.results.store import ResultStore


@dataclass
class CellSamples:
    label: str
    status: str
    tokens_per_s: list[float] = field(default_factory=list)
    losses: dict[int, list[float]] = field(default_factory=dict)
    eval_losses: list[float] = field(default_factory=list)
    disturbed: bool = False


# Statuses whose measurements are used; a disturbed cell's numbers are kept and flagged in the notes.
MEASURED = ("ok", "disturbed")


@dataclass
class Comparison:
    cell: str
    verdict: str  # slower | faster | unchanged | failed | fixed | insufficient
    base_median: float | None = None
    new_median: float | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    n_base: int = 0
    n_new: int = 0
    loss_drift: float | None = None
    eval_loss_drift: float | None = None
    loss_changed: bool = False
    note: str = ""


def _label(record: dict[str, Any]) -> str:
    axes = record.get("axes") or {}
    return " ".join(f"{k}={v}" for k, v in axes.items()) or record.get("match_key", "?")


def collect(store: ResultStore) -> dict[str, CellSamples]:
    """Per matched cell: measured per-step tokens/s, per-step train losses and eval losses of every repeat."""
    out: dict[str, CellSamples] = {}
    for r in store.records():
        key = r.get("match_key")
        if key is None:
            continue
        cell = out.setdefault(key, CellSamples(label=_label(r), status=r["status"]))
        if r["status"] not in MEASURED:
            continue
        cell.status = "ok"  # at least one repeat measured (a disturbed one counts, and is noted)
        cell.disturbed = cell.disturbed or r["status"] == "disturbed"
        res = r.get("result") or {}
        warm = (res.get("summary") or {}).get("warmup_steps", 0)
        for st in (res.get("steps") or [])[warm:]:
            if st.get("seconds"):
                cell.tokens_per_s.append(st["tokens"] / st["seconds"])
        for st in res.get("steps") or []:
            if st.get("loss") is not None:
                cell.losses.setdefault(st["step"], []).append(st["loss"])
        if res.get("eval_loss") is not None:
            cell.eval_losses.append(res["eval_loss"])
    return out


def ratio_ci(base: np.ndarray, new: np.ndarray, seed: int = 0, resamples: int = 4000) -> tuple[float, float]:
    """95% percentile-bootstrap interval of median(new) / median(base)."""
    from scipy import stats

    def statistic(b: np.ndarray, n: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.median(n, axis=axis) / np.median(b, axis=axis)

    res = stats.bootstrap((base, new), statistic, n_resamples=resamples, method="percentile", vectorized=True,
                          rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _loss_drift(base: CellSamples, new: CellSamples) -> tuple[float | None, float | None]:
    common = sorted(set(base.losses) & set(new.losses))
    train = None
    if common:
        diffs = [abs(np.mean(new.losses[s]) - np.mean(base.losses[s])) / max(abs(np.mean(base.losses[s])), 1e-8)
                 for s in common]
        train = float(np.mean(diffs))
    evals = None
    if base.eval_losses and new.eval_losses:
        b, n = float(np.mean(base.eval_losses)), float(np.mean(new.eval_losses))
        evals = abs(n - b) / max(abs(b), 1e-8)
    return train, evals


def compare_cell(base: CellSamples, new: CellSamples, threshold: float, alpha: float,
                 loss_tolerance: float) -> Comparison:
    from scipy import stats

    c = Comparison(cell=new.label, verdict="unchanged", n_base=len(base.tokens_per_s), n_new=len(new.tokens_per_s))
    if base.disturbed or new.disturbed:
        c.note = "measured while other processes used the CPU (disturbed): treat with care"
    if base.status == "ok" and new.status != "ok":
        c.verdict, c.note = "failed", f"ok in base, {new.status} in new"
        return c
    if base.status != "ok" and new.status == "ok":
        c.verdict, c.note = "fixed", f"{base.status} in base, ok in new"
    if c.n_base < 2 or c.n_new < 2:
        if c.verdict != "fixed":
            c.verdict, c.note = "insufficient", "fewer than 2 measured steps on one side"
        return c
    b, n = np.asarray(base.tokens_per_s), np.asarray(new.tokens_per_s)
    c.base_median, c.new_median = float(np.median(b)), float(np.median(n))
    c.ratio = c.new_median / c.base_median
    c.ci_low, c.ci_high = ratio_ci(b, n)
    c.p_value = float(stats.mannwhitneyu(b, n, alternative="two-sided").pvalue)
    if c.p_value < alpha and c.ratio < 1 - threshold:
        c.verdict = "slower"
    elif c.p_value < alpha and c.ratio > 1 + threshold:
        c.verdict = "faster"
    elif c.p_value >= alpha and min(c.n_base, c.n_new) < 8:
        c.note = "; ".join(filter(None, [c.note, "few samples: only large, consistent changes reach significance"]))
    c.loss_drift, c.eval_loss_drift = _loss_drift(base, new)
    drifts = [d for d in (c.loss_drift, c.eval_loss_drift) if d is not None]
    c.loss_changed = bool(drifts) and max(drifts) > loss_tolerance
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
        return any(c.verdict in ("slower", "failed") or c.loss_changed for c in self.cells)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "regressed": self.regressed}, indent=1)

    def to_markdown(self) -> str:
        def f(v: float | None, pattern: str) -> str:
            return pattern.format(v) if v is not None else "-"

        lines = [f"# xeonft compare: {self.new} vs {self.base}", "",
                 f"Verdict: **{'REGRESSION' if self.regressed else 'no regression'}** "
                 f"(slower = more than {self.threshold:.0%} slower with Mann-Whitney p < {self.alpha:g}; "
                 f"loss drift tolerance {self.loss_tolerance:.1%})", "",
                 "| cell | verdict | base tok/s | new tok/s | ratio | 95% CI | p | n base/new | loss drift |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for c in self.cells:
            verdict = c.verdict + (" + loss changed" if c.loss_changed else "")
            drift = max([d for d in (c.loss_drift, c.eval_loss_drift) if d is not None], default=None)
            lines.append(
                f"| {c.cell} | {verdict} | {f(c.base_median, '{:.1f}')} | {f(c.new_median, '{:.1f}')} | "
                f"{f(c.ratio, '{:.3f}')} | {f(c.ci_low, '{:.3f}')}-{f(c.ci_high, '{:.3f}')} | "
                f"{f(c.p_value, '{:.2g}')} | {c.n_base}/{c.n_new} | {f(drift, '{:.2%}')} |")
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
    if not 0 < threshold < 1:
        raise XeonftError(f"threshold must be between 0 and 1 (got {threshold})")
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

"""Whether the calibration beside every cell (`harness.launch.calibrator`) is worth normalizing by, here: each
configuration's spread between runs raw and normalized, and over the result set a test of whether normalizing
lowers it.

A run's normalized throughput is its tokens/s over the calibration's GFLOP/s (the mean of the runs before and after
it, in the dtype of the cell's GEMMs), rescaled by the mean calibration of every calibrated cell of the set on the
same CPUs at the same threads and dtype, so it stays in tokens/s and two configurations normalized by one reference
compare as their raw figures do on an average machine.

Normalizing lowers the variance of log throughput x exactly when 2 cov(x, z) > var(z), z the log calibration: when
the calibration follows the cells' drift closely enough to pay for its own noise. Raw and normalized values come
from the same runs, so they are compared with the Pitman-Morgan test for two paired variances (the correlation of
their sum with their difference), on deviations from each configuration's own mean, pooled over configurations.
Verdicts stay on raw throughput; `normalized_runs` gives the normalized runs a verdict could use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from harness.base.stats import summarize_runs
from harness.base.units import pct
from harness.config.precision import precision_rule
from harness.results.records import CellRecord

ALPHA = 0.05
Outcome = Literal["lowers", "raises", "no measurable change", "cannot tell"]
REFERENCE = ("calibration_dtype", "calibration_threads", "calibration_cpus")


def calibration_columns(record: CellRecord) -> dict[str, Any]:
    """A cell's calibration as columns of the cells frame: GFLOP/s per dtype (mean of before and after), the
    figure of the dtype its GEMMs run in, its change over the cell, its cost in seconds, and its note."""
    cal = record.calibration
    if cal is None:
        return {"calibration_gflops": None, "calibration_s": None}
    dtype = precision_rule(record.config.get("precision", "bf16-autocast")).gemm
    if cal.mean and dtype not in cal.mean and "fp32" in cal.mean:  # a CPU without bf16 kernels: its emulated bf16
        dtype = "fp32"  # GEMMs run on the fp32 units, whose speed the fp32 reading follows
    before = cal.before.gflops.get(dtype) if cal.before else None
    after = cal.after.gflops.get(dtype) if cal.after else None
    return {"calibration_gflops": (cal.mean or {}).get(dtype), "calibration_dtype": dtype,
            **{f"calibration_{d}": v for d, v in (cal.mean or {}).items()},
            "calibration_change": after / before - 1 if before and after else None,
            "calibration_threads": cal.threads, "calibration_cpus": ",".join(map(str, cal.cpus)),
            "calibration_s": cal.seconds, "calibration_idle_cpu_s": cal.idle_cpu_seconds,
            "calibration_note": cal.note}


def _calibrated(df: pd.DataFrame) -> pd.DataFrame:
    """The ok cells with both a throughput and a calibration of their dtype."""
    if "calibration_gflops" not in df:
        return df.iloc[0:0]
    ok = df[(df["status"] == "ok") & df["tokens_per_s"].notna() & df["calibration_gflops"].notna()]
    return ok[(ok["tokens_per_s"] > 0) & (ok["calibration_gflops"] > 0)]


def normalized(df: pd.DataFrame) -> pd.Series:
    """Each calibrated ok cell's throughput normalized by its calibration and rescaled to tokens/s (NaN for the
    others), indexed as `df`."""
    out = pd.Series(np.nan, index=df.index, dtype=float)
    cal = _calibrated(df)
    if cal.empty:
        return out
    reference = cal.groupby(list(REFERENCE))["calibration_gflops"].transform("mean")
    out.loc[cal.index] = cal["tokens_per_s"] / cal["calibration_gflops"] * reference
    return out


def normalized_runs(df: pd.DataFrame) -> dict[str, list[float]]:
    """Configuration (identity) -> its calibrated runs' normalized throughput, in the frame's order: what a verdict
    could use in place of raw runs where normalizing helps."""
    values = normalized(df)
    keep = values.notna()
    return {str(ident): [float(v) for v in group] for ident, group in values[keep].groupby(df["identity"][keep],
                                                                                        sort=False)}


def spread_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration with at least two calibrated runs: the CV of tokens/s over those runs raw and
    normalized, the calibration's own CV, its mean change over a cell, and its cost per cell."""
    cal = _calibrated(df).assign(normalized=normalized(df))
    rows = []
    for _, g in cal.groupby("identity", sort=False):
        if len(g) < 2:
            continue
        first = g.iloc[0]
        rows.append({"variant": first["variant"], "batch_size": first["batch_size"], "runs": len(g),
                     "CV raw": summarize_runs(list(g["tokens_per_s"])).cv,
                     "CV normalized": summarize_runs(list(g["normalized"])).cv,
                     "calibration CV": summarize_runs(list(g["calibration_gflops"])).cv,
                     "calibration dtype": first["calibration_dtype"],
                     "change over a cell": g["calibration_change"].mean(),
                     "calibration s per cell": g["calibration_s"].mean()})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class CalibrationFinding:
    """Over a result set: does normalizing by the calibration lower the spread between runs, and what it cost."""

    cells: int  # cells with a calibration record
    failed: int  # of those, with a failed run (a note)
    seconds_per_cell: float | None
    share_of_wall: float | None  # its seconds over the calibrated cells' wall time
    configurations: int  # with at least two calibrated runs
    runs: int
    cv_raw: float | None  # pooled SD of log throughput within configurations: a pooled CV
    cv_normalized: float | None
    p_value: float | None  # Pitman-Morgan, two-sided
    outcome: Outcome

    @property
    def normalize(self) -> bool:
        """Whether a verdict should use the normalized runs here."""
        return self.outcome == "lowers"

    def sentence(self) -> str:
        cost = (f"the calibration took {self.seconds_per_cell:.2f} s per cell"
                + (f" ({pct(self.share_of_wall)} of the cells' wall time)" if self.share_of_wall is not None else "")
                + (f"; {self.failed} cell(s) with a failed calibration" if self.failed else ""))
        if self.outcome == "cannot tell":
            return (f"{cost}; too few calibrated runs to tell whether normalizing by it lowers the spread between "
                    "runs (a configuration needs two); verdicts stay on raw throughput")
        spread = (f"pooled CV {pct(self.cv_raw)} raw, {pct(self.cv_normalized)} normalized, over {self.runs} runs "
                  f"of {self.configurations} configuration(s), Pitman-Morgan p={self.p_value:.2g}")
        said = {"lowers": "normalizing by it lowers the spread between runs here",
                "raises": "normalizing by it raises the spread between runs here (it does not follow the cells' "
                          "drift)",
                "no measurable change": "normalizing by it does not measurably change the spread between runs here"}
        return f"{cost}; {said[self.outcome]} ({spread}); verdicts stay on raw throughput"


def pitman_morgan(x: list[np.ndarray], y: list[np.ndarray]) -> tuple[float, float, int]:
    """Paired variances of x and y, each given as groups (one a configuration) pooled after centring: the
    correlation r of x+y with x-y (positive: x varies more), its two-sided p, and the degrees of freedom."""
    u = np.concatenate([(a + b) - (a + b).mean() for a, b in zip(x, y, strict=True)])
    v = np.concatenate([(a - b) - (a - b).mean() for a, b in zip(x, y, strict=True)])
    dof = len(u) - len(x) - 1
    su, sv = float(np.sum(u * u)), float(np.sum(v * v))
    if dof < 1 or su == 0 or sv == 0:
        return 0.0, 1.0, dof
    r = float(np.sum(u * v) / math.sqrt(su * sv))
    if abs(r) >= 1:
        return r, 0.0, dof
    t = r * math.sqrt(dof / (1 - r * r))
    return r, float(2 * stats.t.sf(abs(t), dof)), dof


def finding(df: pd.DataFrame, alpha: float = ALPHA) -> CalibrationFinding | None:
    """The result set's finding; None when no cell has a calibration."""
    if "calibration_s" not in df or df["calibration_s"].isna().all():
        return None
    with_cal = df[df["calibration_s"].notna()]
    walls = with_cal["wall_s"].dropna().sum() if "wall_s" in with_cal else 0
    failed = int(with_cal["calibration_note"].notna().sum()) if "calibration_note" in with_cal else 0
    cal = _calibrated(df).assign(normalized=normalized(df))
    groups = [g for _, g in cal.groupby("identity", sort=False) if len(g) >= 2]
    raw = [np.log(g["tokens_per_s"].to_numpy(float)) for g in groups]
    norm = [np.log(g["normalized"].to_numpy(float)) for g in groups]
    runs = sum(len(g) for g in groups)
    found = CalibrationFinding(
        cells=len(with_cal), failed=failed, seconds_per_cell=float(with_cal["calibration_s"].mean()),
        share_of_wall=float(with_cal["calibration_s"].sum() / walls) if walls else None, configurations=len(groups),
        runs=runs, cv_raw=None, cv_normalized=None, p_value=None, outcome="cannot tell")
    dof = runs - len(groups)
    if dof < 2:
        return found

    def pooled(values: list[np.ndarray]) -> float:
        return math.sqrt(sum(float(np.sum((v - v.mean()) ** 2)) for v in values) / dof)

    r, p, _ = pitman_morgan(raw, norm)
    outcome: Outcome = "no measurable change" if p >= alpha else "lowers" if r > 0 else "raises"
    return replace(found, cv_raw=pooled(raw), cv_normalized=pooled(norm), p_value=p, outcome=outcome)

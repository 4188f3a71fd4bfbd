"""What the harness's own instrumentation costs, where the cells' time goes, and how throughput scales with
data-parallel ranks.

The first and the last are decided over runs: each fully instrumented run against its bare twin's runs
(`instrument: [full, bare]`), each multi-rank configuration's throughput per core against one rank's. Where the time
goes is summed over cells (`harness.measure.phases`).
"""

from __future__ import annotations

import pandas as pd

from harness.base.stats import decide
from harness.config.identity import MEASURED
from harness.measure.phases import LABELS, PHASES


def overhead_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Full vs bare twins: the ratio of their step times (bare run throughput over full run throughput, the same
    tokens per step), with a 95% interval over runs; plus the step tracker's own share of a step and the launcher's
    share of the cell's CPU, both measured directly."""
    if "instrument" not in df or df["instrument"].nunique() < 2:
        return pd.DataFrame()
    ok = df[(df["status"] == "ok") & df["tokens_per_s"].notna()]
    rows = []
    for _, group in ok.groupby("pair_key"):
        full, bare = (group[group["instrument"] == k] for k in ("full", "bare"))
        if full.empty or bare.empty:
            continue
        v = decide(list(full["tokens_per_s"]), list(bare["tokens_per_s"]), threshold=0.01, alpha=0.05)
        rows.append({"variant": full["variant"].iloc[0], "batch_size": full["batch_size"].iloc[0],
                     "runs full/bare": f"{len(full)}/{len(bare)}",
                     "step s full": float(full["step_s_p50"].median()),
                     "step s bare": float(bare["step_s_p50"].median()),
                     "overhead": v.ratio - 1,
                     "CI low": v.low - 1 if v.low is not None else None,
                     "CI high": v.high - 1 if v.high is not None else None, "p": v.p_value,
                     "tracker share": float((full["tracker_s_per_step"] / full["step_s_p50"]).median()),
                     "launcher CPU share": float((full["launcher_cpu_s"] / (full["wall_s"] * full["cores"])).median())})
    return pd.DataFrame(rows)


def scaling_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Cells of a sweep over ranks, with their efficiency against one rank of the same other settings."""
    ok = df[df["status"] == "ok"].copy()
    if ok.empty or "world_size" not in ok or ok["world_size"].nunique() < 2:
        return pd.DataFrame()
    axes = [a for a in df.attrs.get("axes", []) if a not in ("ranks", "nnodes", "node_rank")]
    ok["setting"] = ok.apply(lambda row: " / ".join(f"{a}={row.get(a)}" for a in axes) or "all", axis=1)
    ok["per_core"] = ok["tokens_per_s"] / ok["cores"].astype(float)
    single = ok[ok["world_size"] == 1].groupby("setting")["per_core"].median()
    ok = ok[ok["setting"].isin(single.index)]
    # tokens/s per core against one rank's tokens/s per core: 1.0 is perfect scaling, whether the ranks split one
    # machine's cores or each brings its own
    ok["efficiency"] = ok["per_core"] / ok["setting"].map(single)
    return ok


def flags(df: pd.DataFrame, cpu_has_amx: bool | None) -> pd.DataFrame:
    """Cells whose numbers stand but should not be trusted blindly. On a CPU without AMX a bf16 cell cannot run
    on AMX, and the report says so once at the top instead; on a CPU with AMX a bf16 cell that missed it is
    flagged, since something (an ISA cap, a library build) kept it off."""
    rows = []
    for _, r in df.iterrows():
        if cpu_has_amx is False:
            break
        if r["status"] in MEASURED and str(r.get("precision", "")).startswith("bf16") \
                and r.get("bf16_on_amx") is False:
            rows.append({"variant": r["variant"], "batch_size": r["batch_size"], "repeat": r["repeat"],
                         "flag": f"bf16 without AMX: GEMMs ran on {r.get('gemm_kernel') or 'no oneDNN kernel'}"})
    return pd.DataFrame(rows)


def phases_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Each configuration's wall time by phase, as shares of its cells' summed wall time (a row adds up to 100%),
    and a last row for every cell of the set; the phases no cell spent time in are left out."""
    cols = [f"phase_{p}_s" for p in PHASES]
    if not set(cols) <= set(df.columns):
        return pd.DataFrame()
    timed = df[df["phase_other_s"].notna() & (df["wall_s"] > 0)]
    if timed.empty:
        return pd.DataFrame()
    groups = [(f"{g['variant'].iloc[0]} batch {g['batch_size'].iloc[0]}", g) for _, g in
              timed.groupby("identity", sort=False)] + [("all cells", timed)]
    rows = []
    for name, g in groups:
        wall = float(g["wall_s"].sum())
        rows.append({"configuration": name, "cells": len(g), "wall s": wall,
                     **{LABELS[p]: float(g[f"phase_{p}_s"].sum()) / wall for p in PHASES}})
    out = pd.DataFrame(rows)
    spent = [LABELS[p] for p in PHASES if out[LABELS[p]].max() > 0]
    return out[["configuration", "cells", "wall s", *spent]]

"""Configurations of a result set, each summarised over its runs: the median and 95% interval of throughput across
repeats, their coefficient of variation, and a speedup against a baseline configuration with its own interval.

The run is the unit of replication: a repeat's throughput is its measured tokens over its measured seconds, and
every interval here is taken over those run values (`harness.base.stats`), never over pooled steps.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.base.errors import XeonftError
from harness.base.stats import decide, summarize_runs

# The paper's own cell: bf16=True (autocast), eager, per-device batch 4.
DEFAULT_BASELINE = {"precision": "bf16-autocast", "backend": "eager", "batch_size": 4}


def configurations(df: pd.DataFrame, target_half_width: float | None = None) -> pd.DataFrame:
    """One row per configuration (identity) with at least one measured run, fastest first."""
    ok = df[df["status"] == "ok"]
    rows = []
    for ident, g in ok.groupby("identity", sort=False):
        runs = [float(v) for v in g["tokens_per_s"] if pd.notna(v) and v > 0]
        if not runs:
            continue
        iv = summarize_runs(runs)
        first = g.iloc[0]
        rows.append({
            "identity": ident, "variant": first["variant"], "batch_size": first["batch_size"],
            "tokens_per_s": iv.median, "ci_low": iv.low, "ci_high": iv.high, "cv": iv.cv,
            "half_width": iv.half_width, "repeats": iv.n,
            "reached_target": None if target_half_width is None or iv.half_width is None
            else bool(iv.half_width <= target_half_width),
            "disturbed": int((df[(df["identity"] == ident)]["status"] == "disturbed").sum()),
            "sequences_per_s": g["sequences_per_s"].median(), "step_s_p50": g["step_s_p50"].median(),
            "peak_rss_gib": g["peak_rss_gib"].max(), "peak_uss_gib": g["peak_uss_gib"].max(),
            "eval_loss": g["eval_loss"].median(), "tokens_trained": g["tokens_trained"].median(),
            "precision": first["precision"], "backend": first["backend"], "gemm_kernel": first["gemm_kernel"],
            "mfu": g["mfu"].median(), "hfu": g["hfu"].median(), "compile_s": g["compile_s"].median(),
            "recompiles": g["recompiles"].max(), "runs": runs,
        })
    out = pd.DataFrame(rows)
    return out.sort_values("tokens_per_s", ascending=False, ignore_index=True) if not out.empty else out


def parse_selector(text: str | None) -> dict[str, Any]:
    """'precision=bf16-autocast,batch_size=4' -> {'precision': 'bf16-autocast', 'batch_size': 4}; no text is no
    selector (an empty selection): which default applies is the caller's to say."""
    if not text:
        return {}
    out: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise XeonftError(f"baseline selector '{text}': expected key=value[,key=value...]")
        value = value.strip()
        out[key.strip()] = int(value) if value.lstrip("-").isdigit() else value
    return out


def select(df: pd.DataFrame, selector: dict[str, Any], what: str = "baseline selector") -> list[str]:
    """The identities whose measured cells match every key=value of the selector."""
    unknown = [k for k in selector if k not in df.columns]
    if unknown:
        raise XeonftError(f"{what} names unknown column(s): {', '.join(unknown)}")
    mask = df["status"] == "ok"
    for k, v in selector.items():
        mask &= df[k].astype(str) == str(v)
    return list(dict.fromkeys(df[mask]["identity"]))


def baseline(df: pd.DataFrame, text: str | None) -> tuple[str | None, str]:
    """The one configuration a `--baseline` selector names, and a sentence about it. A selector that matches
    several configurations is refused (naming them) when the user gave it; the default one then shows none."""
    selector = parse_selector(text) or dict(DEFAULT_BASELINE)
    described = ", ".join(f"{k}={v}" for k, v in selector.items())
    found = select(df, selector)
    if len(found) == 1:
        return found[0], f"baseline: {described}"
    if not found:
        return None, f"baseline {described} not in this result set: no speedups shown"
    names = sorted(set(df[df["identity"].isin(found)]["variant"] + " batch " +
                       df[df["identity"].isin(found)]["batch_size"].astype(str)))
    if text:
        raise XeonftError(f"baseline selector '{text}' matches {len(found)} configurations ({'; '.join(names)}); "
                          "add keys until it names one")
    return None, (f"the default baseline ({described}) matches {len(found)} configurations; pass --baseline to "
                  "pick one: no speedups shown")


def speedups(configs: pd.DataFrame, base_identity: str | None, threshold: float = 0.05,
             alpha: float = 0.05) -> pd.DataFrame:
    """Each configuration's throughput against the baseline's, decided over runs: ratio, 95% interval, verdict."""
    out = configs.copy()
    for col in ("speedup", "speedup_low", "speedup_high", "speedup_verdict"):
        out[col] = None
    if base_identity is None or configs.empty or base_identity not in set(configs["identity"]):
        return out
    base_runs = configs.set_index("identity").loc[base_identity, "runs"]
    for i, row in out.iterrows():
        v = decide(base_runs, row["runs"], threshold=threshold, alpha=alpha)
        out.loc[i, ["speedup", "speedup_low", "speedup_high", "speedup_verdict"]] = [v.ratio, v.low, v.high,
                                                                                     v.verdict]
    return out


def headline(configs: pd.DataFrame, base_identity: str | None) -> str | None:
    """The fastest configuration against the baseline in one sentence, worded by its interval."""
    if configs.empty or base_identity is None or "speedup" not in configs or configs["speedup"].isna().all():
        return None
    best = configs.iloc[0]
    base = configs[configs["identity"] == base_identity].iloc[0]
    text = (f"fastest configuration: {best['variant']} batch {best['batch_size']}: {best['tokens_per_s']:.1f} tok/s "
            f"(median of {best['repeats']} runs")
    if best["ci_low"] is not None and pd.notna(best["ci_low"]):
        text += f", 95% interval {best['ci_low']:.1f}-{best['ci_high']:.1f}"
    text += ")"
    if best["identity"] == base_identity:
        text += ", which is the baseline"
    elif best["speedup_low"] is None or pd.isna(best["speedup_low"]):
        text += f"; {best['speedup']:.2f}x the baseline, too few runs for an interval: cannot tell"
    elif best["speedup_low"] <= 1.0 <= best["speedup_high"]:
        text += (f"; not distinguishable from the baseline ({best['speedup']:.2f}x, 95% interval "
                 f"{best['speedup_low']:.2f}-{best['speedup_high']:.2f} includes 1)")
    else:
        text += (f"; {best['speedup']:.2f}x the baseline (95% interval {best['speedup_low']:.2f}-"
                 f"{best['speedup_high']:.2f})")
    if pd.notna(best.get("eval_loss")) and pd.notna(base.get("eval_loss")) and best["identity"] != base_identity:
        if pd.notna(best["tokens_trained"]) and best["tokens_trained"] == base["tokens_trained"]:
            text += (f"; eval loss {best['eval_loss']:.4f} ({best['eval_loss'] / base['eval_loss'] - 1:+.2%} vs the "
                     "baseline after the same tokens)")
        else:
            text += "; eval loss not compared (the two trained different tokens)"
    if pd.notna(best.get("mfu")):
        text += f"; MFU {best['mfu']:.1%}"
    return text

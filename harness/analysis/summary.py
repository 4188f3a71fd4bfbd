"""Configurations of a result set, each summarised over its runs: the median and 95% interval of throughput across
repeats, their coefficient of variation, and a speedup against a baseline configuration with its own interval.

The run is the unit of replication: a repeat's throughput is its measured tokens over its measured seconds, and
every interval here is taken over those run values (`harness.base.stats`), never over pooled steps.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.base.errors import XeonftError
from harness.base.stats import decide_paired, decide_rounds, summarize_runs

# The paper's own cell: bf16=True (autocast), eager, per-device batch 4.
DEFAULT_BASELINE = {"precision": "bf16-autocast", "backend": "eager", "batch_size": 4}


def configurations(df: pd.DataFrame, target_half_width: float | None = None) -> pd.DataFrame:
    """One row per configuration (identity) with at least one measured run, fastest first."""
    ok = df[df["status"] == "ok"]
    rows = []
    for ident, g in ok.groupby("identity", sort=False):
        measured = [(int(r), float(v)) for r, v in zip(g["repeat"], g["tokens_per_s"], strict=True)
                    if pd.notna(v) and v > 0]
        runs = [v for _, v in measured]
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
            "precision": first["precision"], "backend": first["backend"],
            # the kernels are logged in a configuration's first run only: it stands for the others
            "gemm_kernel": next((k for k in df[df["identity"] == ident]["gemm_kernel"] if isinstance(k, str)), None),
            "base_weights": next((k for k in g["base_weights"] if isinstance(k, str)), None),
            "mfu": g["mfu"].median(), "hfu": g["hfu"].median(), "compile_s": g["compile_s"].median(),
            "recompiles": g["recompiles"].max(), "runs": runs, "rounds": dict(measured),
            "duets": _duets(df[df["identity"] == ident]),
        })
    out = pd.DataFrame(rows)
    return out.sort_values("tokens_per_s", ascending=False, ignore_index=True) if not out.empty else out


def _duets(cells: pd.DataFrame) -> dict[str, float]:
    """A configuration's duet figures, keyed by the duet: a reference's by its own run's key, a candidate's by its
    partner's (the reference run it stood beside), so that the two sides of one duet meet under one key."""
    if "duet_tokens_per_s" not in cells:
        return {}
    out: dict[str, float] = {}
    for _, c in cells[cells["status"].isin(["ok", "disturbed"]) & cells["duet_tokens_per_s"].notna()].iterrows():
        if c["status"] == "disturbed":
            continue  # a verdict leaves a disturbed run out, in a duet as in a solo sweep
        out[str(c["key"] if c["duet_role"] == "reference" else c["duet_partner"])] = float(c["duet_tokens_per_s"])
    return out


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


def _plain(df: pd.DataFrame, identities: list[str]) -> list[str]:
    """Of these configurations, the ones neither slowed on purpose nor a second replica."""
    rows = df[df["identity"].isin(identities)]
    fault = rows["inject_fault"].fillna("none") if "inject_fault" in rows else pd.Series("none", index=rows.index)
    replica = rows["replica"].fillna("a") if "replica" in rows else pd.Series("a", index=rows.index)
    return list(dict.fromkeys(rows[(fault == "none") & (replica == "a")]["identity"]))


def baseline(df: pd.DataFrame, text: str | None) -> tuple[str | None, str]:
    """The one configuration a `--baseline` selector names, and a sentence about it. A selector that matches
    several configurations is refused (naming them) when the user gave it; the default one then shows none."""
    if not text and "duet_role" in df and (df["duet_role"] == "reference").any():
        # a duet sweep's ratios are all against its reference: no other baseline has pairs
        refs = list(dict.fromkeys(df[df["duet_role"] == "reference"]["identity"]))
        if len(refs) == 1:
            return refs[0], "baseline: the duet's reference (the matrix's first configuration)"
    selector = parse_selector(text) or dict(DEFAULT_BASELINE)
    described = ", ".join(f"{k}={v}" for k, v in selector.items())
    found = select(df, selector)
    if len(found) > 1 and not text:  # an A/A or slowdown test's twins: the plain cell is the baseline
        plain = _plain(df, found)
        if len(plain) == 1:
            return plain[0], f"baseline: {described}, replica a, no injected fault"
    if len(found) == 1:
        return found[0], f"baseline: {described}"
    if not found:
        mine = df
        for k, v in selector.items():
            mine = mine[mine[k].astype(str) == str(v)]
        if len(mine):  # its cells are here but none measured, e.g. bf16 on a CPU that emulates it: unavailable
            why = mine["reason"].dropna()
            said = f" ({mine['status'].iloc[0]}: {str(why.iloc[0])[:90]}...)" if len(why) else ""
            return None, (f"baseline {described} has no measured run here{said}: no speedups shown; pass "
                          "--baseline to pick another")
        return None, f"baseline {described} not in this result set: no speedups shown"
    names = sorted(set(df[df["identity"].isin(found)]["variant"] + " batch " +
                       df[df["identity"].isin(found)]["batch_size"].astype(str)))
    if text:
        raise XeonftError(f"baseline selector '{text}' matches {len(found)} configurations ({'; '.join(names)}); "
                          "add keys until it names one")
    return None, (f"the default baseline ({described}) matches {len(found)} configurations; pass --baseline to "
                  "pick one: no speedups shown")


# how a verdict's test is named to a reader
TESTS = {"welch": "Welch's t-test over runs", "paired": "paired t-test over rounds",
         "duet": "paired t-test over duets (run at once, ratios only)", None: "no test"}
SPEEDUP_COLUMNS = ("speedup", "speedup_low", "speedup_high", "speedup_verdict", "speedup_test", "speedup_reason")


def speedups(configs: pd.DataFrame, base_identity: str | None, threshold: float = 0.05,
             alpha: float = 0.01) -> pd.DataFrame:
    """Each configuration's throughput against the baseline's, decided over runs: ratio, 95% interval, verdict and
    the test that gave it (runs of one sweep are paired by round where that helps: `decide_rounds`)."""
    out = configs.copy()
    for col in SPEEDUP_COLUMNS:
        out[col] = None
    if base_identity is None or configs.empty or base_identity not in set(configs["identity"]):
        return out
    base_rounds = configs.set_index("identity").loc[base_identity, "rounds"]
    base_duets = configs.set_index("identity").loc[base_identity, "duets"] if "duets" in configs else {}
    for i, row in out.iterrows():
        if row["identity"] == base_identity:
            out.loc[i, list(SPEEDUP_COLUMNS)] = [1.0, 1.0, 1.0, "baseline", None, "the baseline itself"]
            continue
        shared = sorted(set(base_duets) & set(row.get("duets") or {}))
        if base_duets:  # a duet sweep: only the ratios within duets are figures (`harness.launch.duet`)
            v = decide_paired([base_duets[k] for k in shared], [row["duets"][k] for k in shared],
                              threshold=threshold, alpha=alpha, test="duet")
        else:
            v = decide_rounds(base_rounds, row["rounds"], threshold=threshold, alpha=alpha)
        out.loc[i, list(SPEEDUP_COLUMNS)] = [v.ratio, v.low, v.high, v.verdict, v.test, v.reason]
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
    if "duets" in configs and any(bool(d) for d in configs["duets"]):
        text += " [duet figures: each cell on half the cores beside another; only the ratios compare]"
    if best["identity"] == base_identity:
        text += ", which is the baseline"
    elif pd.isna(best["speedup"]):  # e.g. a duet whose pairs gave no figure: no ratio at all, not "nanx"
        text += f"; no ratio to the baseline ({best.get('speedup_reason') or 'no pairs with a figure'}): cannot tell"
    elif best["speedup_low"] is None or pd.isna(best["speedup_low"]):
        text += f"; {best['speedup']:.2f}x the baseline, too few runs for an interval: cannot tell"
    elif best["speedup_low"] <= 1.0 <= best["speedup_high"]:
        text += (f"; not distinguishable from the baseline ({best['speedup']:.2f}x, 95% interval "
                 f"{best['speedup_low']:.2f}-{best['speedup_high']:.2f} includes 1; {TESTS.get(best['speedup_test'])})")
    else:
        text += (f"; {best['speedup']:.2f}x the baseline (95% interval {best['speedup_low']:.2f}-"
                 f"{best['speedup_high']:.2f}; {TESTS.get(best['speedup_test'])})")
    if pd.notna(best.get("eval_loss")) and pd.notna(base.get("eval_loss")) and best["identity"] != base_identity:
        if pd.notna(best["tokens_trained"]) and best["tokens_trained"] == base["tokens_trained"]:
            text += (f"; eval loss {best['eval_loss']:.4f} ({best['eval_loss'] / base['eval_loss'] - 1:+.2%} vs the "
                     "baseline after the same tokens)")
        else:
            text += "; eval loss not compared (the two trained different tokens)"
    if pd.notna(best.get("mfu")):
        text += f"; MFU {best['mfu']:.1%}"
    return text

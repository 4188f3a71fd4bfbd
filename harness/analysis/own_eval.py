"""Does a configuration train better, not only faster: xeonft's own eval loss (`harness.cell.common_eval`, one
definition under every library stack) per configuration, against the baseline's, run by run (Welch on logs)."""

from __future__ import annotations

import pandas as pd

from harness.base.stats import decide

LOSS_THRESHOLD = 0.01  # a 1% lower or higher loss: the eval loss moves by far less than throughput between runs
NOTE = ("xeonft's own eval loss: each eval row run alone through the trained model (no packing, no attention "
        "across documents), the mean cross-entropy of every token after the row's first; 'base' is the same with "
        "the adapters off. One definition under every library stack, unlike a trainer's own eval loss, so it says "
        "whether a configuration trains better per token. Verdict: Welch's t-test on the runs' log losses against "
        f"the baseline's, threshold {LOSS_THRESHOLD:.0%}, alpha 0.01.")


def _words(verdict: str) -> str:
    # decide() speaks of throughput (higher is better); for a loss, lower is better
    return {"slower": "lower loss (trains better)", "faster": "higher loss (trains worse)",
            "unchanged": f"the same (within {LOSS_THRESHOLD:.0%})", "inconclusive": "cannot tell"}.get(verdict, verdict)


def own_eval_table(df: pd.DataFrame, base_identity: str | None) -> pd.DataFrame:
    """One row per configuration with runs that measured it; empty when none did."""
    if "own_eval_loss" not in df or df["own_eval_loss"].isna().all():
        return pd.DataFrame()
    have = df[df["own_eval_loss"].notna()]
    base = have[have["identity"] == base_identity]["own_eval_loss"].tolist() if base_identity else []
    rows = []
    for ident, g in have.groupby("identity", sort=False):
        losses = g["own_eval_loss"].tolist()
        row = {"configuration": g["variant"].iloc[0], "runs": len(losses), "eval loss": g["own_eval_loss"].median(),
               "base loss": g["own_base_loss"].median(),
               "improvement": (g["own_base_loss"] - g["own_eval_loss"]).median(), "against the baseline": ""}
        if ident == base_identity:
            row["against the baseline"] = "(the baseline)"
        elif len(base) >= 2 and len(losses) >= 2:
            v = decide(base, losses, threshold=LOSS_THRESHOLD)
            row["against the baseline"] = f"{_words(v.verdict)}: x{v.ratio:.4f} (95% {v.low:.4f}-{v.high:.4f})"
        else:
            row["against the baseline"] = "cannot tell (fewer than 2 runs a side)"
        rows.append(row)
    return pd.DataFrame(rows)

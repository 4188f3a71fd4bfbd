"""Does a configuration train better, not only faster: xeonft's own eval loss (`harness.cell.common_eval`, one
definition under every library stack) per configuration, against the baseline's, run by run (Welch on logs)."""

from __future__ import annotations

import pandas as pd

from harness.base.stats import decide

LOSS_THRESHOLD = 0.01  # a 1% lower or higher loss: the eval loss moves by far less than throughput between runs
NOTE = ("xeonft's own eval loss: each eval row run alone through the trained model (no packing, no attention "
        "across documents), the mean cross-entropy of every token after the row's first; 'base' is the same before "
        "training. One definition under every library stack, unlike a trainer's own eval loss, so it says whether "
        "a configuration trains better per token, where both sides evaluated the same tokens (a stack whose "
        "tokenizer splits the rows differently did not: compare the improvements then). Verdict: Welch's t-test on "
        f"the runs' log losses against the baseline's, threshold {LOSS_THRESHOLD:.0%}, alpha 0.01.")


def _words(verdict: str) -> str:
    # decide() speaks of throughput (higher is better); for a loss, lower is better
    return {"slower": "lower loss (trains better)", "faster": "higher loss (trains worse)",
            "unchanged": f"the same (within {LOSS_THRESHOLD:.0%})", "inconclusive": "cannot tell"}.get(verdict, verdict)


def own_eval_table(df: pd.DataFrame, base_identity: str | None) -> pd.DataFrame:
    """One row per configuration with runs that measured it; empty when none did. A verdict needs the same eval
    tokens on both sides (a stack whose tokenizer splits the rows differently evaluated other tokens) and runs that
    differ (runs of one seed train alike: their loss is one value, not a sample)."""
    if "own_eval_loss" not in df or df["own_eval_loss"].isna().all():
        return pd.DataFrame()
    have = df[df["own_eval_loss"].notna()]
    if "own_tokens" not in have:
        have = have.assign(own_tokens=None)
    base_rows = have[have["identity"] == base_identity] if base_identity else have.iloc[0:0]
    base = base_rows["own_eval_loss"].tolist()
    base_tokens = set(base_rows["own_tokens"].dropna())
    rows = []
    for ident, g in have.groupby("identity", sort=False):
        losses = g["own_eval_loss"].tolist()
        row = {"configuration": g["variant"].iloc[0], "runs": len(losses), "eval loss": g["own_eval_loss"].median(),
               "base loss": g["own_base_loss"].median(),
               "improvement": (g["own_base_loss"] - g["own_eval_loss"]).median(),
               "improvement %": (1 - g["own_eval_loss"] / g["own_base_loss"]).median() * 100,
               "against the baseline": ""}
        tokens = set(g["own_tokens"].dropna())
        if ident == base_identity:
            row["against the baseline"] = "(the baseline)"
        elif tokens and base_tokens and tokens != base_tokens:
            row["against the baseline"] = ("not comparable: the eval rows tokenized differently (another tokenizer "
                                           "or its conversion); compare the improvements, each on its own base")
        elif len(base) >= 2 and len(losses) >= 2 and (len(set(base)) == 1 or len(set(losses)) == 1):
            row["against the baseline"] = ("one value a side: runs of one seed train alike; vary `seed` for an "
                                           "interval")
        elif len(base) >= 2 and len(losses) >= 2:
            v = decide(base, losses, threshold=LOSS_THRESHOLD)
            row["against the baseline"] = f"{_words(v.verdict)}: x{v.ratio:.4f} (95% {v.low:.4f}-{v.high:.4f})"
        else:
            row["against the baseline"] = "cannot tell (fewer than 2 runs a side)"
        rows.append(row)
    return pd.DataFrame(rows)

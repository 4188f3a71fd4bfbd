"""Does a configuration train better, not only faster: xeonft's own eval loss (`harness.cell.common_eval`, one
definition under every library stack) per configuration, against the baseline's, run by run (Welch on logs)."""

from __future__ import annotations

import pandas as pd

from harness.base.stats import decide

LOSS_THRESHOLD = 0.01  # a 1% lower or higher loss: the eval loss moves by far less than throughput between runs
NOTE = ("xeonft's own eval loss: each eval row run alone through the trained model (no packing, no attention "
        "across documents), the mean cross-entropy of every token after the row's first; 'base' is the same before "
        "training. One definition under every library stack, unlike a trainer's own eval loss, so it says whether "
        "a configuration trains better per token, where both sides evaluated the same tokens: a sweep over several "
        "stacks hands every cell one set of ids, made by xeonft's own environment's tokenizer ('eval ids'); a stack "
        "that tokenized the rows itself may have split them differently (compare the improvements then). Verdict: "
        "Welch's t-test on the log losses, one value per training seed (runs of one seed train alike), against the "
        f"baseline's, threshold {LOSS_THRESHOLD:.0%}, alpha 0.01.")


def _words(verdict: str) -> str:
    # decide() speaks of throughput (higher is better); for a loss, lower is better
    return {"slower": "lower loss (trains better)", "faster": "higher loss (trains worse)",
            "unchanged": f"the same (within {LOSS_THRESHOLD:.0%})", "inconclusive": "cannot tell"}.get(verdict, verdict)


def _label(variant: str) -> str:
    parts = [p for p in str(variant).split(" / ") if not p.startswith("seed=")]
    return " / ".join(parts) or "(one configuration)"


def _per_seed(g: pd.DataFrame) -> pd.DataFrame:
    """One value per training seed (the median of its runs): runs of one seed train alike, so the seed, not the
    run, is the unit of replication of a loss."""
    return g.groupby("seed", sort=True)[["own_eval_loss", "own_base_loss"]].median()


def own_eval_table(df: pd.DataFrame, base_identity: str | None) -> pd.DataFrame:
    """One row per configuration (its seeds together) with runs that measured it; empty when none did. A verdict
    needs the same eval tokens on both sides (a stack whose tokenizer splits the rows differently evaluated other
    tokens) and at least two seeds a side (runs of one seed train alike: their loss is one value, not a sample)."""
    if "own_eval_loss" not in df or df["own_eval_loss"].isna().all():
        return pd.DataFrame()
    have = df[df["own_eval_loss"].notna()]
    for column, default in (("own_tokens", None), ("seed", 0)):
        if column not in have:
            have = have.assign(**{column: default})
    if "seedless" not in have:
        have = have.assign(seedless=have["identity"])
    base_groups = set(have.loc[have["identity"] == base_identity, "seedless"]) if base_identity else set()
    base_rows = have[have["seedless"].isin(base_groups)]
    base = _per_seed(base_rows)["own_eval_loss"].tolist() if not base_rows.empty else []
    base_tokens = set(base_rows["own_tokens"].dropna())
    rows = []
    for group, g in have.groupby("seedless", sort=False):
        seeds = _per_seed(g)
        losses = seeds["own_eval_loss"].tolist()
        row = {"configuration": _label(g["variant"].iloc[0]), "seeds": len(seeds), "runs": len(g),
               "eval loss": float(seeds["own_eval_loss"].median()), "base loss": float(seeds["own_base_loss"].median()),
               "improvement": float((seeds["own_base_loss"] - seeds["own_eval_loss"]).median()),
               "improvement %": float((1 - seeds["own_eval_loss"] / seeds["own_base_loss"]).median() * 100),
               "eval ids": ("the sweep's reference" if "own_reference" in g and g["own_reference"].fillna(False).all()
                            else "its own tokenizer's"),
               "against the baseline": ""}
        tokens = set(g["own_tokens"].dropna())
        if not base_groups:
            row["against the baseline"] = "no baseline: name one (--baseline) for a verdict"
        elif group in base_groups:
            row["against the baseline"] = "(the baseline)"
        elif tokens and base_tokens and tokens != base_tokens:
            row["against the baseline"] = ("not comparable: the eval rows tokenized differently (another tokenizer "
                                           "or its conversion); compare the improvements, each on its own base")
        elif len(base) >= 2 and len(losses) >= 2:
            v = decide(base, losses, threshold=LOSS_THRESHOLD)
            span = f"95% {v.low:.4f}-{v.high:.4f}; " if v.low is not None and v.high is not None else ""
            row["against the baseline"] = f"{_words(v.verdict)}: x{v.ratio:.4f} ({span}{v.test}, one value per seed)"
        elif (len(losses) < 2 and len(g) >= 2) or (len(base) < 2 and len(base_rows) >= 2):
            row["against the baseline"] = ("one value a side: runs of one seed train alike; vary `seed` for an "
                                           "interval")
        else:
            row["against the baseline"] = "cannot tell (fewer than 2 seeds a side)"
        rows.append(row)
    return pd.DataFrame(rows)

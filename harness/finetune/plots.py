"""Plots of one run (the sweep report has its own)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def loss_plot(log_history: list[dict], path: Path, title: str) -> Path | None:
    """Train loss (noisy, every step) and eval loss (every eval) against the step; None when nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = pd.DataFrame(log_history)
    if df.empty or "step" not in df:
        return None
    frames = []
    if "loss" in df:
        frames.append(df.dropna(subset=["loss"])[["step", "loss"]].assign(split="train"))
    if "eval_loss" in df:
        frames.append(df.dropna(subset=["eval_loss"])[["step", "eval_loss"]].rename(columns={"eval_loss": "loss"})
                      .assign(split="eval"))
    if not frames:
        return None
    long = pd.concat(frames, ignore_index=True)
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sns.lineplot(data=long, x="step", y="loss", hue="split", style="split", markers=True, dashes=False, ax=ax)
    ax.set(title=title, xlabel="optimizer step", ylabel="cross-entropy loss (nats/token)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

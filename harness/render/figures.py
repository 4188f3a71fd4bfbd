"""The report's figures (seaborn PNGs). Each names its unit and what it leaves out; intervals are over runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.overhead import scaling_frame

Figures = dict[str, tuple[Path, str]]  # name -> (PNG path, caption)


def setup() -> Any:
    """pyplot on the Agg backend (no display needed) with the theme every xeonft figure uses; call it first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt


def save(fig: Any, path: Path) -> Path:
    """Write a figure as the PNG a page embeds (tight layout, 110 dpi) and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plots(df: pd.DataFrame, steps: pd.DataFrame, configs: pd.DataFrame, out: Path) -> Figures:
    plt = setup()
    figs: Figures = {}

    def keep(name: str, fig: Any, caption: str) -> None:
        figs[name] = (save(fig, out / f"{name}.png"), caption)

    ok = df[df["status"] == "ok"]
    if not ok.empty and not configs.empty:
        _throughput(plt, ok, configs, keep)
        _speedup(plt, configs, keep)
        _memory(plt, ok, keep)
    _breakdown(plt, ok, keep)
    _scaling(plt, df, keep)
    _loss_and_steps(plt, steps, keep)
    return figs


def _throughput(plt: Any, ok: pd.DataFrame, configs: pd.DataFrame, keep: Any) -> None:
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(8, 4.8))
    variants = list(dict.fromkeys(configs["variant"]))
    palette = dict(zip(variants, sns.color_palette(n_colors=len(variants)), strict=True))
    batches = sorted(configs["batch_size"].unique())
    for v in variants:
        c = configs[configs["variant"] == v].sort_values("batch_size")
        x = [batches.index(b) for b in c["batch_size"]]
        low = (c["tokens_per_s"] - c["ci_low"].astype(float).fillna(c["tokens_per_s"])).clip(lower=0)
        high = (c["ci_high"].astype(float).fillna(c["tokens_per_s"]) - c["tokens_per_s"]).clip(lower=0)
        ax.errorbar(x, c["tokens_per_s"], yerr=[low, high], marker="o", capsize=4, label=v, color=palette[v])
        runs = ok[ok["variant"] == v]
        ax.scatter([batches.index(b) for b in runs["batch_size"]], runs["tokens_per_s"], s=12, alpha=0.5,
                   color=palette[v])
    ax.set_xticks(range(len(batches)), [str(b) for b in batches])
    ax.set(xlabel="per-device batch size (packed sequences per step)", ylabel="non-padding tokens / s",
           title="Training throughput (median of runs, 95% interval; dots are runs)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")
    keep("throughput", fig, "Non-padding tokens per second over each run's measured steps (warm-up, profiled step "
                            "and eval excluded): the median of the runs with its 95% interval across runs.")


def _speedup(plt: Any, configs: pd.DataFrame, keep: Any) -> None:
    import seaborn as sns

    if "speedup" not in configs or configs["speedup"].isna().all():
        return
    pivot = configs.assign(speedup=configs["speedup"].astype(float)).pivot_table(
        index="variant", columns="batch_size", values="speedup")
    fig, ax = plt.subplots(figsize=(max(6.0, 2.5 + 1.2 * len(pivot.columns)), 1.6 + 0.5 * len(pivot.index)))
    sns.heatmap(pivot, annot=True, fmt=".2f", cmap="RdYlGn", center=1.0, cbar_kws={"label": "x baseline"}, ax=ax)
    ax.set(xlabel="batch size", ylabel="", title="Speedup over the baseline (ratio of run geometric means)")
    ax.tick_params(axis="y", rotation=0)
    keep("speedup", fig, "Each configuration's throughput over the baseline's, from their runs; the tables give "
                         "each ratio's 95% interval.")


def _memory(plt: Any, ok: pd.DataFrame, keep: Any) -> None:
    import seaborn as sns

    ok = ok.dropna(subset=["peak_rss_gib"])
    if ok.empty:  # no cell was watched (bare cells, or a set built by hand)
        return
    fig, ax = plt.subplots(figsize=(8, 4.5))
    dodge: float | bool = 0.25 if ok["variant"].nunique() > 1 else False  # seaborn divides by levels - 1
    sns.pointplot(data=ok, x="batch_size", y="peak_rss_gib", hue="variant", estimator="max", errorbar=None,
                  dodge=dodge, ax=ax)
    ax.set(xlabel="batch size", ylabel="peak RSS of the process tree (GiB)", title="Peak memory")
    ax.set_ylim(bottom=0)
    keep("memory", fig, "Peak resident memory of each cell's whole process tree, sampled at 10 Hz (max over runs).")


def _breakdown(plt: Any, ok: pd.DataFrame, keep: Any) -> None:
    shares = [c for c in ok.columns if c.startswith("time_")] if not ok.empty else []
    if not shares:
        return
    prof = ok.dropna(subset=shares).groupby(["variant", "batch_size"])[shares].median()
    if prof.empty:
        return
    prof.index = [f"{v} bs{b}" for v, b in prof.index]
    prof.columns = [c.removeprefix("time_") for c in prof.columns]
    fig, ax = plt.subplots(figsize=(9, 2.4 + 0.45 * len(prof)))
    (prof * 100).plot.barh(stacked=True, ax=ax, colormap="tab20c")
    ax.set(xlabel="% of the profiled step's operator self time", ylabel="",
           title="Where a training step's time goes (torch.profiler)")
    ax.legend(fontsize="small", ncol=6, loc="upper center", bbox_to_anchor=(0.5, -0.45))
    keep("breakdown", fig, "One extra step after the measured ones under torch.profiler: operator self time by "
                           "category (LoRA GEMMs count as GEMM). That step is never measured.")


def _scaling(plt: Any, df: pd.DataFrame, keep: Any) -> None:
    import seaborn as sns

    scaling = scaling_frame(df)
    if scaling.empty:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    sns.pointplot(data=scaling, x="world_size", y="tokens_per_s", hue="setting", estimator="median",
                  errorbar=("pi", 100), ax=left)
    left.set(xlabel="data-parallel ranks (all nodes)", ylabel="global non-padding tokens / s",
             title="Throughput against ranks")
    left.set_ylim(bottom=0)
    sns.pointplot(data=scaling, x="world_size", y="efficiency", hue="setting", estimator="median", errorbar=None,
                  legend=False, ax=right)
    right.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    right.set(xlabel="data-parallel ranks (all nodes)", ylabel="tokens/s per core, relative to 1 rank",
              title="Scaling efficiency (per core)")
    right.set_ylim(bottom=0)
    keep("scaling", fig, "Global tokens per second (all ranks' tokens over the step time), and tokens per second per "
                         "core against one rank of the same setting (1.0 = perfect scaling); bars span the runs.")


def _loss_and_steps(plt: Any, steps: pd.DataFrame, keep: Any) -> None:
    import seaborn as sns

    if steps.empty or "loss" not in steps:
        return
    train = steps.dropna(subset=["loss"])
    evals = steps.dropna(subset=["eval_loss"]) if "eval_loss" in steps else pd.DataFrame()
    if not train.empty:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        train = train.assign(cell=train["variant"] + " bs" + train["batch_size"].astype(str))
        sns.lineplot(data=train, x="step", y="loss", hue="cell", errorbar=None, ax=ax)
        if not evals.empty:
            evals = evals.assign(cell=evals["variant"] + " bs" + evals["batch_size"].astype(str))
            sns.scatterplot(data=evals, x="step", y="eval_loss", hue="cell", marker="X", s=90, legend=False, ax=ax)
        ax.set(xlabel="optimizer step", ylabel="loss (nats/token)", title="Train loss (lines) and eval loss (crosses)")
        ax.legend(fontsize="small", ncol=2)
        keep("loss", fig, "Per-step training loss of every configuration (mean of runs); crosses are eval loss.")
    measured = steps[(steps.get("measured") == True) & steps["seconds"].notna()]  # noqa: E712
    if not measured.empty:
        fig, ax = plt.subplots(figsize=(8, 0.9 + 0.45 * measured.groupby(["variant", "batch_size"]).ngroups))
        measured = measured.assign(cell=measured["variant"] + " bs" + measured["batch_size"].astype(str))
        sns.boxplot(data=measured, y="cell", x="seconds", color="#cfe2f3", fliersize=0, ax=ax)
        sns.stripplot(data=measured, y="cell", x="seconds", color="#1f4e79", size=3, ax=ax)
        ax.set(xlabel="step wall time (s)", ylabel="", title="Step-time distribution (measured steps)")
        keep("step_times", fig, "Wall time of every measured step (data + compute), all runs: for the shape of a run "
                                "only; steps of one run are not independent samples.")

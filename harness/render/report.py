"""A result set rendered for people: seaborn PNGs, a self-contained HTML page, Markdown, and a tidy CSV.

It reads only the store. Every figure names its unit; cells that failed, were unavailable or were disturbed are
listed with their reasons rather than dropped silently.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import XeonftError
from harness.measure.flops import cell_efficiency
from harness.results.store import ResultStore

GIB = 2**30
# The paper's own cell: bf16=True (autocast), eager, per-device batch 4.
DEFAULT_BASELINE = {"precision": "bf16-autocast", "backend": "eager", "batch_size": 4}
SPEC_COLUMNS = ("model", "precision", "backend", "batch_size", "gradient_accumulation_steps", "seq_len", "threads",
                "gradient_checkpointing", "attn_implementation", "optim", "packing", "lora_r")
LAUNCH_COLUMNS = ("pinning", "allocator", "env", "isa", "inject_fault", "ranks", "nnodes", "instrument")


def cells_frame(store: ResultStore) -> pd.DataFrame:
    """One row per cell record: its settings, status and headline numbers (the CSV users load in pandas)."""
    rows = []
    peak = store.manifest().get("peak_tflops")
    for r in store.records():
        spec = r.get("spec", {})
        cfg, launch = spec.get("config", {}), spec.get("launch", {})
        res = r.get("result") or {}
        s = res.get("summary") or {}
        mem = r.get("memory") or {}
        steps = res.get("steps") or []
        row: dict[str, Any] = {"key": r["key"], "match_key": r.get("match_key"), "repeat": r.get("repeat", 0),
                               "status": r["status"], "reason": r.get("reason")}
        row.update({c: cfg.get(c) for c in SPEC_COLUMNS})
        row.update({c: launch.get(c) for c in LAUNCH_COLUMNS})
        row["preset"] = spec.get("preset", "none")
        row["pair_key"] = _pair_key(spec)
        comp = res.get("compile") or {}
        row.update({
            "tokens_per_s": s.get("tokens_per_second"),
            "sequences_per_s": s.get("sequences_per_second"),
            "step_s_p50": s.get("step_seconds_p50"),
            "step_s_p90": s.get("step_seconds_p90"),
            "step_s_cv": s.get("step_seconds_cv"),
            "measured_steps": s.get("measured_steps"),
            "measured_tokens": s.get("measured_tokens"),
            "warmup_s": s.get("warmup_seconds"),
            "eval_s": s.get("eval_seconds"),
            "eval_loss": res.get("eval_loss"),
            "final_train_loss": next((st["loss"] for st in reversed(steps) if st.get("loss") is not None), None),
            "peak_rss_gib": mem.get("peak_rss_bytes", 0) / GIB if mem else None,
            "peak_uss_gib": mem.get("peak_uss_bytes", 0) / GIB if mem else None,
            "foreign_cpu_cores": mem.get("foreign_cpu_cores_mean"),
            "launcher_cpu_s": mem.get("launcher_cpu_seconds"),
            "model_tflops": (eff := cell_efficiency(r, peak))["tflops"],
            "mfu": eff["mfu"],
            "gemm_kernel": _top_gemm(res.get("onednn")),
            "amx_share": (res.get("onednn") or {}).get("amx_share"),
            "bf16_on_amx": (res.get("onednn") or {}).get("bf16_gemm_on_amx"),
            **{f"time_{k}": v for k, v in ((res.get("profile") or {}).get("share") or {}).items()},
            "world_size": res.get("world_size", 1),
            "cores": _cores(r),
            "allreduce_s": s.get("allreduce_seconds"),
            "tracker_s_per_step": s.get("tracker_seconds_per_step"),
            "compile_s": comp.get("compile_seconds"),
            "recompiles": comp.get("recompiles"),
            "graph_breaks": comp.get("graph_breaks"),
            "compile_cache_hits": comp.get("fx_graph_cache_hits"),
            "wall_s": r.get("wall_seconds"),
        })
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        raise XeonftError(f"result set '{store.root}' has no cells")
    axes = list(store.manifest().get("matrix", {}).get("axes", {}))
    df.attrs["axes"] = axes
    df["variant"] = df.apply(lambda row: variant_label(row, axes), axis=1)
    return df


def _pair_key(spec: dict[str, Any]) -> str | None:
    from pydantic import ValidationError

    from harness.config.matrix import CellSpec

    try:
        return CellSpec.model_validate(spec).pair_key()
    except ValidationError:  # a record from another xeonft version
        return None


def _top_gemm(onednn: dict[str, Any] | None) -> str | None:
    """The oneDNN GEMM kernel that took the most time in the probed step (it names the ISA)."""
    gemm = [k for k in (onednn or {}).get("kernels", []) if k["kind"] in ("matmul", "inner_product", "convolution")]
    return max(gemm, key=lambda k: k["ms"])["impl"] if gemm else None


def flags(df: pd.DataFrame) -> pd.DataFrame:
    """Cells whose numbers stand but should not be trusted blindly: bf16 without AMX, disturbed."""
    rows = []
    for _, r in df.iterrows():
        if r["status"] in ("ok", "disturbed") and str(r.get("precision", "")).startswith("bf16") \
                and r.get("bf16_on_amx") is False:
            rows.append({"variant": r["variant"], "batch_size": r["batch_size"], "repeat": r["repeat"],
                         "flag": f"bf16 without AMX: GEMMs ran on {r.get('gemm_kernel') or 'no oneDNN kernel'}"})
    return pd.DataFrame(rows)


def _cores(record: dict[str, Any]) -> int | None:
    """Physical cores the cell used, over all its ranks and nodes."""
    launch = record.get("launch") or {}
    world = (record.get("result") or {}).get("world_size", 1)
    if launch.get("rank_placements"):
        return len(launch["rank_placements"][0]["cpus"]) * world
    if launch.get("placement"):
        return len(launch["placement"]["cpus"])
    threads = (launch.get("env") or {}).get("OMP_NUM_THREADS")
    return int(threads) if threads and threads.isdigit() else None


def variant_label(row: Any, axes: list[str]) -> str:
    """A cell's name without its batch size (plots put batch size on the x axis)."""
    keys = [a for a in axes if a != "batch_size"] or ["precision", "backend"]

    def name(key: str) -> str:
        value = row.get(key)
        if key == "preset":
            return "recipe" if value == "none" else f"preset {value}"
        return str(value) if isinstance(value, str) else f"{key}={value}"

    return " / ".join(name(k) for k in keys)


def steps_frame(store: ResultStore, df: pd.DataFrame) -> pd.DataFrame:
    """One row per measured (and warm-up) step of every cell that ran: the series behind the distributions."""
    rows = []
    labels = dict(zip(df["key"], df["variant"], strict=True))
    for r in store.records():
        res = r.get("result") or {}
        warm = (res.get("summary") or {}).get("warmup_steps", 0)
        bs = (r.get("spec", {}).get("config", {})).get("batch_size")
        for i, st in enumerate(res.get("steps") or []):
            rows.append({"key": r["key"], "variant": labels.get(r["key"]), "batch_size": bs, "repeat": r.get("repeat"),
                         "step": st["step"], "seconds": st["seconds"], "tokens": st["tokens"], "loss": st.get("loss"),
                         "warmup": i < warm, "tokens_per_s": st["tokens"] / st["seconds"] if st["seconds"] else None})
        for ev in res.get("evals") or []:
            if "eval_loss" in ev:
                rows.append({"key": r["key"], "variant": labels.get(r["key"]), "batch_size": bs,
                             "repeat": r.get("repeat"), "step": ev["step"], "eval_loss": ev["eval_loss"]})
    return pd.DataFrame(rows)


def parse_selector(text: str | None) -> dict[str, Any]:
    """'precision=bf16-autocast,batch_size=4' -> {'precision': 'bf16-autocast', 'batch_size': 4}."""
    if not text:
        return dict(DEFAULT_BASELINE)
    out: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise XeonftError(f"baseline selector '{text}': expected key=value[,key=value...]")
        value = value.strip()
        out[key.strip()] = int(value) if value.lstrip("-").isdigit() else value
    return out


def baseline_rows(df: pd.DataFrame, selector: dict[str, Any]) -> pd.DataFrame:
    unknown = [k for k in selector if k not in df.columns]
    if unknown:
        raise XeonftError(f"baseline selector names unknown column(s): {', '.join(unknown)}")
    mask = (df["status"] == "ok")
    for k, v in selector.items():
        mask &= df[k].astype(str) == str(v)
    return df[mask]


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


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Repeats of the same cell folded: median and range of tokens/s, memory and losses."""
    ok = df[df["status"] == "ok"]
    if ok.empty:
        return pd.DataFrame()
    group = ["variant", "batch_size"]
    agg = ok.groupby(group, dropna=False).agg(
        tokens_per_s=("tokens_per_s", "median"), tokens_per_s_min=("tokens_per_s", "min"),
        tokens_per_s_max=("tokens_per_s", "max"), repeats=("tokens_per_s", "size"),
        sequences_per_s=("sequences_per_s", "median"), step_s_p50=("step_s_p50", "median"),
        peak_rss_gib=("peak_rss_gib", "max"), peak_uss_gib=("peak_uss_gib", "max"),
        eval_loss=("eval_loss", "median"), precision=("precision", "first"), backend=("backend", "first"),
        gemm_kernel=("gemm_kernel", "first"), mfu=("mfu", "median"), compile_s=("compile_s", "median"),
        recompiles=("recompiles", "max"),
    ).reset_index()
    return agg.sort_values("tokens_per_s", ascending=False, ignore_index=True)


def overhead_frame(df: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """What the harness's instrumentation costs: each fully instrumented cell against its bare twin of the same
    sweep (`instrument: [full, bare]`), as the ratio of median step times with a bootstrap 95% interval and a
    Mann-Whitney p; plus the step tracker's own time per step, which the bare cell still pays."""
    from scipy import stats

    from harness.analysis.compare import ratio_ci

    if "instrument" not in df or df["instrument"].nunique() < 2 or steps.empty or "warmup" not in steps:
        return pd.DataFrame()
    ok = df[df["status"] == "ok"]
    measured = steps[(steps["warmup"] == False) & steps["seconds"].notna()]  # noqa: E712
    rows = []
    for _, group in ok.groupby("pair_key"):
        full, bare = (group[group["instrument"] == k] for k in ("full", "bare"))
        if full.empty or bare.empty:
            continue
        f = measured[measured["key"].isin(full["key"])]["seconds"].to_numpy()
        b = measured[measured["key"].isin(bare["key"])]["seconds"].to_numpy()
        if len(f) < 2 or len(b) < 2:
            continue
        ratio = float(pd.Series(f).median() / pd.Series(b).median())
        low, high = ratio_ci(b, f)
        others = [a for a in df.attrs.get("axes", []) if a != "instrument"]
        rows.append({"variant": variant_label(full.iloc[0], others) if others else "(single cell)",
                     "batch_size": full["batch_size"].iloc[0],
                     "steps full/bare": f"{len(f)}/{len(b)}", "step s full": float(pd.Series(f).median()),
                     "step s bare": float(pd.Series(b).median()), "overhead": ratio - 1, "CI low": low - 1,
                     "CI high": high - 1, "p": float(stats.mannwhitneyu(f, b, alternative="two-sided").pvalue),
                     "tracker share": float((full["tracker_s_per_step"] / full["step_s_p50"]).median()),
                     "launcher CPU share": float((full["launcher_cpu_s"] / (full["wall_s"] * full["cores"])).median())})
    return pd.DataFrame(rows)


def headline(top: pd.DataFrame, base_loss: float | None) -> str | None:
    """The fastest cell against the baseline in one sentence: speedup, eval-loss difference, MFU."""
    if top.empty or "x baseline" not in top or top["x baseline"].isna().all():
        return None
    best = top.iloc[0]
    text = f"fastest cell: {best['variant']} batch {best['batch_size']}: {best['tok/s (median)']:.1f} tok/s, " \
           f"{best['x baseline']:.2f}x the baseline"
    if base_loss and pd.notna(best.get("eval loss")):
        text += f"; eval loss {best['eval loss']:.4f} ({(best['eval loss'] / base_loss - 1):+.2%} vs the " \
                "baseline after the same optimizer steps)"
    if pd.notna(best.get("MFU")):
        text += f"; MFU {best['MFU']:.1%}"
    return text


def _plots(df: pd.DataFrame, steps: pd.DataFrame, agg: pd.DataFrame, base_tps: float | None,
           out: Path) -> dict[str, tuple[Path, str]]:
    """The report's figures: name -> (PNG path, caption)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    figs: dict[str, tuple[Path, str]] = {}
    ok = df[df["status"] == "ok"]

    def save(name: str, fig: Any, caption: str) -> None:
        path = out / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        figs[name] = (path, caption)

    if not ok.empty:
        dodge: float | bool = 0.25 if ok["variant"].nunique() > 1 else False  # seaborn divides by levels - 1
        fig, ax = plt.subplots(figsize=(8, 4.8))
        sns.pointplot(data=ok, x="batch_size", y="tokens_per_s", hue="variant", estimator="median",
                      errorbar=("pi", 100), dodge=dodge, markers="o", ax=ax)
        ax.set(xlabel="per-device batch size (packed sequences per step)", ylabel="non-padding tokens / s",
               title="Training throughput (median of repeats; bars span min-max)")
        ax.set_ylim(bottom=0)
        save("throughput", fig, "Non-padding tokens per second over the measured steps (warm-up and eval excluded).")

        if base_tps and not agg.empty:
            pivot = agg.assign(speedup=agg["tokens_per_s"] / base_tps).pivot_table(
                index="variant", columns="batch_size", values="speedup")
            fig, ax = plt.subplots(figsize=(max(6.0, 2.5 + 1.2 * len(pivot.columns)), 1.6 + 0.5 * len(pivot.index)))
            sns.heatmap(pivot, annot=True, fmt=".2f", cmap="RdYlGn", center=1.0, cbar_kws={"label": "x baseline"},
                        ax=ax)
            ax.set(xlabel="batch size", ylabel="", title="Speedup over the baseline cell (tokens/s ratio)")
            ax.tick_params(axis="y", rotation=0)
            save("speedup", fig, "Median tokens/s of each cell divided by the baseline cell's median tokens/s.")

        fig, ax = plt.subplots(figsize=(8, 4.5))
        sns.pointplot(data=ok, x="batch_size", y="peak_rss_gib", hue="variant", estimator="max", errorbar=None,
                      dodge=dodge, ax=ax)
        ax.set(xlabel="batch size", ylabel="peak RSS of the process tree (GiB)", title="Peak memory")
        ax.set_ylim(bottom=0)
        save("memory", fig, "Peak resident memory of each cell's whole process tree, sampled at 10 Hz.")

    shares = [c for c in ok.columns if c.startswith("time_")] if not ok.empty else []
    if shares:
        prof = ok.dropna(subset=shares).groupby(["variant", "batch_size"])[shares].median()
        if not prof.empty:
            prof.index = [f"{v} bs{b}" for v, b in prof.index]
            prof.columns = [c.removeprefix("time_") for c in prof.columns]
            fig, ax = plt.subplots(figsize=(9, 2.4 + 0.45 * len(prof)))
            (prof * 100).plot.barh(stacked=True, ax=ax, colormap="tab20c")
            ax.set(xlabel="% of the profiled step's operator self time", ylabel="",
                   title="Where a training step's time goes (torch.profiler)")
            ax.legend(fontsize="small", ncol=6, loc="upper center", bbox_to_anchor=(0.5, -0.45))
            save("breakdown", fig, "One extra step after the measured ones under torch.profiler: operator self "
                                   "time by category (LoRA GEMMs count as GEMM).")

    scaling = scaling_frame(df)
    if not scaling.empty:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
        sns.pointplot(data=scaling, x="world_size", y="tokens_per_s", hue="setting", estimator="median",
                      errorbar=("pi", 100), ax=left)
        left.set(xlabel="data-parallel ranks (all nodes)", ylabel="global non-padding tokens / s",
                 title="Throughput against ranks")
        left.set_ylim(bottom=0)
        sns.pointplot(data=scaling, x="world_size", y="efficiency", hue="setting", estimator="median",
                      errorbar=None, legend=False, ax=right)
        right.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        right.set(xlabel="data-parallel ranks (all nodes)", ylabel="tokens/s per core, relative to 1 rank",
                  title="Scaling efficiency (per core)")
        right.set_ylim(bottom=0)
        save("scaling", fig, "Global tokens per second (all ranks' tokens over the step time), and tokens per "
                             "second per core against one rank of the same setting (1.0 = perfect scaling).")

    if not steps.empty and "loss" in steps:
        train = steps.dropna(subset=["loss"])
        evals = steps.dropna(subset=["eval_loss"]) if "eval_loss" in steps else pd.DataFrame()
        if not train.empty:
            fig, ax = plt.subplots(figsize=(8, 4.5))
            train = train.assign(cell=train["variant"] + " bs" + train["batch_size"].astype(str))
            sns.lineplot(data=train, x="step", y="loss", hue="cell", errorbar=None, ax=ax)
            if not evals.empty:
                evals = evals.assign(cell=evals["variant"] + " bs" + evals["batch_size"].astype(str))
                sns.scatterplot(data=evals, x="step", y="eval_loss", hue="cell", marker="X", s=90, legend=False,
                                ax=ax)
            ax.set(xlabel="optimizer step", ylabel="loss (nats/token)",
                   title="Train loss (lines) and eval loss (crosses)")
            ax.legend(fontsize="small", ncol=2)
            save("loss", fig, "Per-step training loss of every cell (mean of repeats); crosses are eval loss.")

        measured = steps[(steps.get("warmup") == False) & steps["seconds"].notna()]  # noqa: E712
        if not measured.empty:
            fig, ax = plt.subplots(figsize=(8, 0.9 + 0.45 * measured.groupby(["variant", "batch_size"]).ngroups))
            measured = measured.assign(cell=measured["variant"] + " bs" + measured["batch_size"].astype(str))
            sns.boxplot(data=measured, y="cell", x="seconds", color="#cfe2f3", fliersize=0, ax=ax)
            sns.stripplot(data=measured, y="cell", x="seconds", color="#1f4e79", size=3, ax=ax)
            ax.set(xlabel="step wall time (s)", ylabel="", title="Step-time distribution (measured steps)")
            save("step_times", fig, "Wall time of every measured step (data + compute), all repeats.")
    return figs


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def _md_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_none_\n"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]).replace("|", "\\|").replace("\n", " ") for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _top_table(agg: pd.DataFrame, base_tps: float | None, base_loss: float | None = None) -> pd.DataFrame:
    if agg.empty:
        return agg
    cols = ["variant", "batch_size", "tokens_per_s", "tokens_per_s_min", "tokens_per_s_max", "repeats",
            "sequences_per_s", "mfu", "peak_rss_gib", "eval_loss", "gemm_kernel"]
    if agg["compile_s"].notna().any():
        cols += ["compile_s", "recompiles"]
    top = agg[cols].copy()
    top.insert(3, "speedup", top["tokens_per_s"] / base_tps if base_tps else None)
    if base_loss:
        top.insert(top.columns.get_loc("eval_loss") + 1, "eval loss vs baseline", top["eval_loss"] / base_loss - 1)
    return top.rename(columns={"tokens_per_s": "tok/s (median)", "tokens_per_s_min": "min", "tokens_per_s_max": "max",
                               "sequences_per_s": "seq/s", "peak_rss_gib": "peak RSS GiB", "speedup": "x baseline",
                               "gemm_kernel": "oneDNN GEMM kernel", "mfu": "MFU", "eval_loss": "eval loss",
                               "compile_s": "compile s"})


def _fingerprint_rows(fp: dict[str, Any]) -> list[tuple[str, str]]:
    cpu, topo = fp.get("cpu", {}), fp.get("topology", {})
    flags = ", ".join(f for f, on in cpu.get("flags", {}).items() if on) or "-"
    libs = ", ".join(f"{k} {v}" for k, v in fp.get("libraries", {}).items() if v)
    build = fp.get("torch_build", {})
    return [
        ("CPU", f"{cpu.get('brand')} ({cpu.get('vendor')})"),
        ("AMX", "yes" if cpu.get("amx") else "no"),
        ("ISA flags", flags),
        ("topology", f"{topo.get('sockets')} socket(s), {topo.get('physical_cores')} cores, "
                     f"{topo.get('threads_per_core')} thread(s)/core, {topo.get('numa_nodes')} NUMA node(s)"),
        ("memory", f"{fp.get('memory_bytes', 0) / GIB:.1f} GiB"),
        ("OS", f"{fp.get('os', {}).get('platform')}"),
        ("Python", str(fp.get("python"))),
        ("libraries", libs),
        ("torch build", f"oneDNN {build.get('onednn')}, CPU capability {build.get('cpu_capability')}"),
        ("tools", ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in fp.get("tools", {}).items())),
    ]


def render(results: str | Path, out: str | Path | None = None, baseline: str | None = None) -> Path:
    """Write reports/<name>/ (index.html, report.md, cells.csv, PNGs) for a result set; return the folder."""
    store = ResultStore(results)
    manifest = store.manifest()
    name = manifest.get("name") or Path(results).name
    out_dir = Path(out) if out else Path("reports") / name
    out_dir.mkdir(parents=True, exist_ok=True)
    df = cells_frame(store)
    steps = steps_frame(store, df)
    agg = aggregate(df)
    selector = parse_selector(baseline)
    base = baseline_rows(df, selector)
    base_tps = float(base["tokens_per_s"].median()) if not base.empty else None
    base_loss = float(base["eval_loss"].median()) if not base.empty and base["eval_loss"].notna().any() else None
    base_note = (f"baseline: {', '.join(f'{k}={v}' for k, v in selector.items())} "
                 f"({base_tps:.1f} tok/s, median of {len(base)})" if base_tps else
                 f"baseline {selector} not in this result set: no speedups shown")
    df.to_csv(out_dir / "cells.csv", index=False)
    figs = _plots(df, steps, agg, base_tps, out_dir)
    top = _top_table(agg, base_tps, base_loss)
    overhead = overhead_frame(df, steps)
    problems = df[df["status"] != "ok"][["variant", "batch_size", "repeat", "status", "reason"]]
    flagged = flags(df)
    if not flagged.empty:
        problems = pd.concat([problems, flagged.rename(columns={"flag": "reason"}).assign(status="flagged")],
                             ignore_index=True)
    fp = manifest.get("fingerprint", {})
    peak = manifest.get("peak_tflops") or {}
    if peak:
        base_note += (f"; GEMM peak measured in this sweep: bf16 {peak.get('bf16', 0):.2f}, fp32 "
                      f"{peak.get('fp32', 0):.2f} TFLOP/s (MFU = model FLOPs/s over the peak of the cell's dtype)")
    meta = {"name": name, "created": manifest.get("created"), "cells": len(df),
            "ok": int((df["status"] == "ok").sum()), "baseline": base_note, "headline": headline(top, base_loss)}
    tables = {"top": top, "problems": problems, "overhead": overhead}
    (out_dir / "report.md").write_text(_markdown(meta, tables, fp, figs), encoding="utf-8")
    (out_dir / "index.html").write_text(_html(meta, tables, fp, figs), encoding="utf-8")
    (out_dir / "report.json").write_text(json.dumps({**meta, "top": top.to_dict(orient="records"),
                                                     "overhead": overhead.to_dict(orient="records")}, indent=1,
                                                    default=str), encoding="utf-8")
    return out_dir


OVERHEAD_NOTE = ("Each fully instrumented cell (tree sampler, oneDNN probe, progress) against its bare twin in the "
                 "same sweep: overhead = median step time full / bare - 1, with a bootstrap 95% interval and a "
                 "Mann-Whitney p; tracker share = the step tracker's own time per step, paid by both; launcher CPU "
                 "share = the CPU time the launcher (sampler and progress) used while the cell ran, over the cell's "
                 "wall time x its cores: what it can take from training, measured directly.")


def _markdown(meta: dict, tables: dict[str, pd.DataFrame], fp: dict, figs: dict) -> str:
    parts = [f"# xeonft report: {meta['name']}", "",
             f"{meta['ok']} of {meta['cells']} cells ok; {meta['baseline']}. Throughput is non-padding tokens "
             "trained on per second of measured steps (warm-up, compile and eval excluded).", ""]
    if meta.get("headline"):
        parts += [f"**{meta['headline'][0].upper()}{meta['headline'][1:]}.**", ""]
    parts += ["## Cells, fastest first", "", _md_table(tables["top"]),
              "## Cells without numbers (failed, out of memory, timed out, unavailable), disturbed or flagged", "",
              _md_table(tables["problems"])]
    if not tables["overhead"].empty:
        parts += ["## Instrumentation overhead", "", OVERHEAD_NOTE, "", _md_table(tables["overhead"])]
    parts += ["## Machine", "",
             _md_table(pd.DataFrame(_fingerprint_rows(fp), columns=["", "value"])), "## Figures", ""]
    for path, caption in figs.values():
        parts += [f"![{caption}]({path.name})", "", f"_{caption}_", ""]
    return "\n".join(parts)


def _html_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p><em>none</em></p>"
    return frame.map(_fmt).to_html(index=False, escape=True, border=0, classes="t")


def _html(meta: dict, tables: dict[str, pd.DataFrame], fp: dict, figs: dict) -> str:
    e = html.escape
    imgs = "".join(
        f'<figure><img alt="{e(caption)}" src="data:image/png;base64,'
        f'{base64.b64encode(path.read_bytes()).decode()}"><figcaption>{e(caption)}</figcaption></figure>'
        for path, caption in figs.values())
    machine = pd.DataFrame(_fingerprint_rows(fp), columns=["", "value"])
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table.t{border-collapse:collapse;font-size:14px;margin:1em 0}"
             "table.t td,table.t th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}"
             "table.t th{background:#f3f6f9}figure{margin:1.5em 0}img{max-width:100%}"
             "figcaption{color:#555;font-size:13px}.lead{font-size:15px;color:#333}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>xeonft report: {e(meta['name'])}</title>"
            f"<style>{style}</style></head><body>"
            f"<h1>xeonft report: {e(meta['name'])}</h1>"
            f"<p class='lead'>{meta['ok']} of {meta['cells']} cells ok; {e(meta['baseline'])}. Throughput is "
            "non-padding tokens trained on per second of measured steps (warm-up, compile and eval excluded).</p>"
            + (f"<p class='lead'><strong>{e(meta['headline'])}</strong></p>" if meta.get("headline") else "")
            + f"<h2>Cells, fastest first</h2>{_html_table(tables['top'])}"
            f"<h2>Cells without numbers, disturbed or flagged</h2>{_html_table(tables['problems'])}"
            + (f"<h2>Instrumentation overhead</h2><p>{e(OVERHEAD_NOTE)}</p>{_html_table(tables['overhead'])}"
               if not tables["overhead"].empty else "")
            + f"<h2>Figures</h2>{imgs}<h2>Machine</h2>{_html_table(machine)}</body></html>")

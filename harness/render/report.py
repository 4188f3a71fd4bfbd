"""A result set rendered for people: `reports/<name>/` with index.html (self-contained), report.md, cells.csv,
report.json and the PNGs. It reads only the store; every figure names its unit; cells that failed, were unavailable
or were disturbed are listed with their reasons rather than dropped silently."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.calibration import finding, spread_frame
from harness.analysis.frames import cells_frame, steps_frame
from harness.analysis.overhead import flags, overhead_frame, phases_frame
from harness.analysis.own_eval import own_eval_table
from harness.analysis.summary import baseline as pick_baseline
from harness.analysis.summary import configurations, headline, speedups
from harness.base.units import interval, missing, num, pct
from harness.measure.kind import bf16_note
from harness.measure.phases import share_line
from harness.render.figures import plots
from harness.render.pages import markdown, page
from harness.results.records import Manifest
from harness.results.store import ResultStore

TOP_COLUMNS = {"variant": "variant", "batch_size": "batch_size", "tokens_per_s": "tok/s (median)",
               "interval": "95% interval", "cv": "CV", "repeats": "runs", "speedup": "x baseline",
               "speedup_interval": "x 95% interval", "speedup_verdict": "verdict vs baseline",
               "speedup_test": "test", "sequences_per_s": "seq/s", "mfu": "MFU", "hfu": "HFU",
               "peak_rss_gib": "peak RSS GiB", "eval_loss": "eval loss", "eval_vs_base": "eval loss vs baseline",
               "gemm_kernel": "oneDNN GEMM kernel", "base_weights": "quantized base", "compile_s": "compile s",
               "recompiles": "recompiles",
               "reached_target": "target reached"}


@dataclass(frozen=True)
class Overhead:
    """One configuration's instrumentation overhead: full against bare twins (`analysis.overhead`)."""

    variant: str
    batch_size: int
    overhead: float
    ci_low: float | None
    ci_high: float | None
    p: float | None
    tracker_share: float
    launcher_cpu_share: float

    def line(self) -> str:
        ci = (f"95% interval {pct(self.ci_low, signed=True)} to {pct(self.ci_high, signed=True)}, "
              f"p={num(self.p, '{:.2g}')}")
        return (f"instrumentation overhead, {self.variant} batch {self.batch_size}: {self.overhead:+.2%} ({ci}); "
                f"step tracker {pct(self.tracker_share)} of a step, launcher {pct(self.launcher_cpu_share)} of the "
                "cell's CPU")


@dataclass(frozen=True)
class Report:
    """What `render` wrote, and what a reader needs first: the baseline, the headline, the notes, the overhead."""

    folder: Path
    baseline: str
    headline: str | None
    notes: tuple[str, ...]
    overhead: tuple[Overhead, ...]
    calibration: str | None = None  # the calibration's finding and cost, in a sentence

    def summary_lines(self) -> list[str]:
        """The few lines `xeonft report` prints, ending with the files to open."""
        return [self.baseline, *([self.headline] if self.headline else []), *(f"note: {n}" for n in self.notes),
                *(o.line() for o in self.overhead), *([f"calibration: {self.calibration}"] if self.calibration else []),
                f"report: {self.folder / 'index.html'}",
                f"        {self.folder / 'report.md'}", f"        {self.folder / 'cells.csv'}"]


def _overhead(frame: pd.DataFrame) -> tuple[Overhead, ...]:
    def known(v: Any) -> float | None:
        return None if missing(v) else float(v)

    return tuple(Overhead(variant=str(r["variant"]), batch_size=int(r["batch_size"]), overhead=float(r["overhead"]),
                          ci_low=known(r["CI low"]), ci_high=known(r["CI high"]), p=known(r["p"]),
                          tracker_share=float(r["tracker share"]), launcher_cpu_share=float(r["launcher CPU share"]))
                 for r in frame.to_dict(orient="records"))


def top_table(configs: pd.DataFrame, base_identity: str | None) -> pd.DataFrame:
    """The configurations table: run-level median, interval and CV; speedup with its interval; efficiency."""
    if configs.empty:
        return configs
    t = configs.copy()
    t["interval"] = [interval(lo, hi) for lo, hi in zip(t["ci_low"], t["ci_high"], strict=True)]
    t["speedup_interval"] = [interval(lo, hi, "{:.2f}") for lo, hi in zip(t["speedup_low"], t["speedup_high"],
                                                                           strict=True)]
    base = t[t["identity"] == base_identity]
    if not base.empty and pd.notna(base["eval_loss"].iloc[0]):
        same_tokens = t["tokens_trained"] == base["tokens_trained"].iloc[0]
        t["eval_vs_base"] = (t["eval_loss"] / base["eval_loss"].iloc[0] - 1).where(same_tokens)
    else:
        t["eval_vs_base"] = None
    cols = [c for c in TOP_COLUMNS if c in t]
    if t["compile_s"].isna().all():
        cols = [c for c in cols if c not in ("compile_s", "recompiles")]
    if t["reached_target"].isna().all():
        cols.remove("reached_target")
    if t["hfu"].isna().all():
        cols.remove("hfu")
    if "base_weights" in cols and t["base_weights"].isna().all():
        cols.remove("base_weights")
    for col in ("cv", "mfu", "hfu"):  # shares read as percentages
        t[col] = [pct(v) for v in t[col]]
    t["eval_vs_base"] = [pct(v, signed=True) for v in t["eval_vs_base"]]
    t["reached_target"] = [None if v is None or v != v else ("yes" if v else "no") for v in t["reached_target"]]
    return t[cols].rename(columns=TOP_COLUMNS)


def notes(manifest: Manifest, df: pd.DataFrame, configs: pd.DataFrame, auto: dict[str, Any] | None) -> list[str]:
    """What a reader must know before reading the numbers, each said once."""
    out = []
    fp = manifest.fingerprint
    bf16 = df["precision"].astype(str).str.startswith("bf16").any()
    if fp.cpu and fp.cpu.get("amx") is False and bf16:
        out.append(bf16_note(fp.torch_build.get("bf16_kernels", True)))
    out += manifest.system_warnings or []
    if auto and not configs.empty:
        short = configs[configs["reached_target"] == False]  # noqa: E712
        target = auto.get("target", 0)
        out.append(f"repeats: auto (target: 95% interval within ±{target:.0%} of the median): "
                   f"{len(configs) - len(short)} of {len(configs)} configurations reached it"
                   + (f"; not reached: {'; '.join(short['variant'] + ' batch ' + short['batch_size'].astype(str))}"
                      if not short.empty else ""))
    few = configs[configs["repeats"] < 2] if not configs.empty else configs
    if not few.empty:
        out.append(f"{len(few)} configuration(s) have a single run: no interval, and no verdict can rest on them")
    return out


def phases_table(df: pd.DataFrame) -> pd.DataFrame:
    """Where each configuration's cell time went, the shares as percentages."""
    frame = phases_frame(df)
    if frame.empty:
        return frame
    for col in frame.columns[3:]:
        frame[col] = [pct(v) for v in frame[col]]
    frame["wall s"] = [f"{v:,.0f}" for v in frame["wall s"]]
    return frame


def render(results: str | Path, out: str | Path | None = None, baseline: str | None = None) -> Report:
    """Write reports/<name>/ for a result set; return its folder and its first lines."""
    store = ResultStore(results)
    manifest = store.manifest()
    name = manifest.name or Path(results).name
    out_dir = Path(out) if out else Path("reports") / name
    out_dir.mkdir(parents=True, exist_ok=True)
    df = cells_frame(store)
    steps = steps_frame(store, df)
    auto = manifest.repeats_auto
    target = auto.get("target") if auto else None
    base_identity, base_note = pick_baseline(df, baseline)
    configs = speedups(configurations(df, target_half_width=target), base_identity)
    if base_identity is not None and not configs.empty:
        base = configs[configs["identity"] == base_identity].iloc[0]
        base_note += f" ({base['tokens_per_s']:.1f} tok/s, median of {base['repeats']} runs)"
    peak = manifest.peak_tflops or {}
    if peak:
        base_note += ("; MFU = model FLOPs/s over the GEMM peak of the cell's dtype, measured at the cell's own core "
                      "count (HFU adds checkpoint recomputation and masked attention)")
    df.to_csv(out_dir / "cells.csv", index=False)
    figs = plots(df, steps, configs, out_dir)
    top = top_table(configs, base_identity)
    problems = df[df["status"] != "ok"][["variant", "batch_size", "repeat", "status", "reason"]]
    flagged = flags(df, manifest.fingerprint.cpu.get("amx") if manifest.fingerprint.cpu else None)
    if not flagged.empty:
        problems = pd.concat([problems, flagged.rename(columns={"flag": "reason"}).assign(status="flagged")],
                             ignore_index=True)
    first, said = headline(configs, base_identity), notes(manifest, df, configs, auto)
    spent = share_line([r.phases for r in store.records(warn=False) if r.phases is not None], manifest.sweep_clock)
    if spent:
        said.append(spent)
    calibrated = finding(df)
    sentence = calibrated.sentence() if calibrated else None
    meta = {"name": name, "created": manifest.created, "cells": len(df), "ok": int((df["status"] == "ok").sum()),
            "baseline": base_note, "headline": first, "notes": said, "calibration": sentence}
    tables = {"top": top, "problems": problems, "overhead": overhead_frame(df), "phases": phases_table(df),
              "calibration": _spread(df), "own_eval": own_eval_table(df, base_identity)}
    fp = manifest.fingerprint.model_dump(mode="json")
    (out_dir / "report.md").write_text(markdown(meta, tables, fp, figs), encoding="utf-8")
    (out_dir / "index.html").write_text(page(meta, tables, fp, figs), encoding="utf-8")
    configs_json = configs.drop(columns=["runs", "rounds"]).to_dict(orient="records") if not configs.empty else []
    (out_dir / "report.json").write_text(json.dumps({
        **meta, "top": top.to_dict(orient="records"), "configurations": configs_json,
        "overhead": tables["overhead"].to_dict(orient="records"),
        "phases": phases_frame(df).to_dict(orient="records"),
        "own_eval": tables["own_eval"].to_dict(orient="records"),
        "calibration": {"sentence": sentence, **asdict(calibrated),
                        "configurations": spread_frame(df).to_dict(orient="records")} if calibrated else None},
        indent=1, default=str), encoding="utf-8")
    return Report(folder=out_dir, baseline=base_note, headline=first, notes=tuple(said),
                  overhead=_overhead(tables["overhead"]), calibration=sentence)


def _spread(df: pd.DataFrame) -> pd.DataFrame:
    """The calibration's table: shares as percentages."""
    t = spread_frame(df)
    for col in ("CV raw", "CV normalized", "calibration CV"):
        if col in t:
            t[col] = [pct(v) for v in t[col]]
    if "change over a cell" in t:
        t["change over a cell"] = [pct(v, signed=True) for v in t["change over a cell"]]
    return t

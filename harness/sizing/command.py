"""The `xeonft size` command: flags to a SizeRequest, the sizing, the report, the optional validation, and the
answer printed in a few lines."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from harness.base.errors import XeonftError
from harness.base.units import GIB, parse_bytes, parse_duration
from harness.config.finetune import load_config
from harness.launch.console import console

JOB_FLAGS = ("model", "tokenizer", "dataset", "precision", "seq_len", "train_size", "eval_size", "eval_steps",
             "save_steps", "backend", "attn_implementation", "num_train_epochs", "gradient_checkpointing",
             "trust_remote_code")


def _margin(text: str) -> float:
    from harness.analysis.compare import parse_threshold

    value = parse_threshold(text)
    if not 0 <= value < 1:
        raise XeonftError(f"--margin must be in [0%, 100%), not {text}")
    return value


def _placements(text: str) -> tuple[tuple[int, int], ...]:
    out = []
    for item in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", item)
        if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
            raise XeonftError(f"--placements: expected THREADSxRANKS items like 2x1,1x2, not {item!r}")
        out.append((int(match.group(1)), int(match.group(2))))
    return tuple(out)


def request(args: argparse.Namespace) -> tuple[Any, Path]:
    from harness.sizing.job import draw_rows
    from harness.sizing.size import SizeRequest

    try:
        memory = parse_bytes(args.memory_limit)
        budget = parse_duration(args.budget)
    except ValueError as err:
        raise XeonftError(str(err)) from None
    overrides = {k: getattr(args, k) for k in JOB_FLAGS if getattr(args, k, None) is not None}
    cfg = load_config(args.config, preset=args.preset, **overrides)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(cfg.model).name if "/" in cfg.model else cfg.model).strip("-")
    out = Path(args.out or Path("results") / f"size-{slug}")
    extra: dict[str, Any] = {}
    if args.rows:
        if args.rows < 2:
            raise XeonftError("--rows needs at least 2 rows (a train and an eval row)")
        drawn = draw_rows(cfg.dataset, args.rows, out / f"rows-{args.rows}.json", seed=cfg.seed)
        extra = {"rows_drawn": args.rows, "rows_from": cfg.dataset}
        cfg = cfg.model_copy(update={"dataset": str(drawn)})
    try:
        cores = tuple(int(c) for c in args.cores.split(",")) if args.cores else ()
    except ValueError:
        raise XeonftError(f"--cores: expected core counts like 32,64, not {args.cores!r}") from None
    chosen = _placements(args.placements) if args.placements else ()
    if args.runs < 1:
        raise XeonftError("--runs must be at least 1")
    if args.soak_steps < 0:
        raise XeonftError("--soak-steps must be 0 (no soak) or more")
    if args.batch_size is not None and args.batch_size < 1:
        raise XeonftError("--batch-size must be at least 1")
    req = SizeRequest(cfg=cfg, memory=memory, budget_s=budget, margin=_margin(args.margin),
                      batch=args.batch_size, cores=cores, price_per_hour=args.price_per_hour,
                      name=out.name, extra=extra, placements=chosen, max_repeats=args.runs,
                      soak_max=args.soak_steps)
    return req, out


def run_size(args: argparse.Namespace) -> int:
    from harness.render.sizing import render_sizing
    from harness.sizing.size import size
    from harness.sizing.validate import validate

    req, out = request(args)
    report = Path(args.report_out or Path("reports") / out.name)
    findings = size(req, out)
    if args.validate is not None and findings.get("recommendation"):
        render_sizing(findings, report)  # the sizing's report first: the validation may take hours
        findings = validate(out, args.validate)
    render_sizing(findings, report)
    for line in summary_lines(findings):
        console.print(line)
    console.print(f"report: {report / 'index.html'}\n        {report / 'report.md'}\n        {out / 'sizing.json'}")
    return 0


def _hm(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def summary_lines(f: dict[str, Any]) -> list[str]:
    """The answer in words: the boundary, the recommendation with its interval, the validation if run."""
    lines = []
    b = f.get("boundary") or {}
    if b.get("largest_ok"):
        fail = f", batch {b['smallest_failed']} did not" if b.get("smallest_failed") else \
            " (the largest tried; the boundary is above it)"
        lines.append(f"boundary: batch {b['largest_ok']} trains within "
                     f"{f['request']['memory_bytes'] / GIB:.2f} GiB{fail}")
        if b.get("fastest_safe_batch") and b["fastest_safe_batch"] != b.get("safe_batch"):
            lines.append(f"  batch {b['fastest_safe_batch']} trained more than 15% faster than batch "
                         f"{b['safe_batch']} (the largest within the margin) in the probes: the placements run it")
    rec = f.get("recommendation")
    if not rec:
        lines.append(f.get("verdict") or "no recommendation: no placement trained")
        return lines
    interval = (f" (95% prediction interval {_hm(rec['projected_low'])} to {_hm(rec['projected_high'])})"
                if rec.get("projected_low") else " (one run: no interval, cannot tell how far off)")
    lines.append(f"recommendation: batch {rec['batch_per_rank']} per rank, {rec['placement']}, provision "
                 f"{rec['provision_gib']} GiB; the job ({rec['steps']} steps) takes {_hm(rec['projected_seconds'])}"
                 f"{interval}")
    if rec.get("projected_peak_bytes"):
        high = rec.get("projected_peak_high_bytes")
        lines.append(f"  peak memory: {rec['projected_peak_bytes'] / GIB:.2f} GiB"
                     + (f" (up to {high / GIB:.2f} GiB if it keeps growing as the soak's later half did)"
                        if high and high > 1.01 * rec["projected_peak_bytes"] else "")
                     + f", from the {rec.get('peak_from') or 'short runs (no soak: growth over the job not included)'}")
    if rec.get("indistinguishable_from"):
        lines.append(f"  cannot tell apart from: {', '.join(rec['indistinguishable_from'])}")
    if rec.get("cost") is not None:
        lines.append(f"  cost: {rec['cost']:.2f} at the given price per hour")
    for e in f.get("extrapolations") or []:
        lines.append(f"  at {e['cores']} cores: {_hm(e['seconds'])}" + (" (extrapolated: " + e["from"] + ")"
                                                                            if e["extrapolation"] else ""))
    v = f.get("validation")
    if v:
        memory = (f"peak memory projected {(v['projected_peak_bytes'] or 0) / GIB:.2f} GiB, actual "
                  f"{(v['actual_peak_bytes'] or 0) / GIB:.2f} GiB ({(v['memory_error'] or 0):+.1%})")
        if v.get("projected_peak_high_bytes") and v.get("actual_peak_bytes"):
            memory += (", inside the projected range" if v["actual_peak_bytes"] <= v["projected_peak_high_bytes"]
                       else f", above the projected range's top ({v['projected_peak_high_bytes'] / GIB:.2f} GiB)")
        g = v.get("memory_growth")
        if g and g["rss_last_minute"] > 1.1 * g["rss_after_first_minute"]:
            memory += (f"; memory grew during the run, {g['rss_after_first_minute'] / GIB:.2f} -> "
                       f"{g['rss_last_minute'] / GIB:.2f} GiB ({g['bytes_per_step'] / 2**20:+.1f} MiB per step)")
        if v["time_error"] is None:
            lines.append(f"validation ({v['steps']} steps, {v['fraction']:.0%} of the job) did not finish: "
                         f"{v['status']}, {v['reason']}; {memory}")
        else:
            inside = "inside" if v["inside_interval"] else "outside"
            lines.append(f"validation ({v['steps']} steps, {v['fraction']:.0%} of the job, {v['status']}): projected "
                         f"{_hm(v['projected_seconds'])}, actual {_hm(v['actual_seconds'])} "
                         f"({v['time_error']:+.1%}, {inside} the interval); {memory}")
    return lines

"""`xeonft size`: flags to a SizeRequest, the sizing, the report, the optional validation, and the answer printed
in a few lines. It writes its result folder (cells reused by a later run there) and its report; nothing else."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from harness.base.errors import XeonftError
from harness.base.units import parse_bytes, parse_duration
from harness.commands.base import Command
from harness.commands.flags import field_flags, field_overrides, recipe_flags
from harness.config.finetune import load_config
from harness.launch.console import console
from harness.sizing.request import SizeRequest

JOB_FLAGS = ("model", "tokenizer", "dataset", "precision", "seq_len", "train_size", "eval_size", "eval_steps",
             "save_steps", "backend", "attn_implementation", "num_train_epochs", "gradient_checkpointing",
             "quant", "lora_init", "trust_remote_code")


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


def request(args: argparse.Namespace) -> tuple[SizeRequest, Path]:
    from harness.sizing.job import draw_rows

    try:
        memory = parse_bytes(args.memory_limit)
        budget = parse_duration(args.budget)
    except ValueError as err:
        raise XeonftError(str(err)) from None
    cfg = load_config(args.config, preset=args.preset, **field_overrides(args, JOB_FLAGS))
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(cfg.model).name if "/" in cfg.model else cfg.model).strip("-")
    out = Path(args.out or Path("results") / f"size-{slug}")
    rows_from = None
    if args.rows:
        if args.rows < 2:
            raise XeonftError("--rows needs at least 2 rows (a train and an eval row)")
        drawn = draw_rows(cfg.dataset, args.rows, out / f"rows-{args.rows}.json", seed=cfg.seed)
        rows_from = cfg.dataset
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
                      name=out.name, rows_drawn=args.rows if rows_from else None, rows_from=rows_from,
                      placements=chosen, max_repeats=args.runs,
                      soak_max=args.soak_steps)
    return req, out


class Size(Command):
    name = "size"
    help = ("what a fine-tune needs here: the largest batch a memory budget allows, throughput over placements, the "
            "job's projected time and cost")

    @classmethod
    def setup_arguments(cls, p: argparse.ArgumentParser) -> None:
        p.add_argument("--memory-limit", required=True, help="memory budget for one run's process tree, e.g. 6GiB")
        p.add_argument("--budget", default="20m", help="wall time for probes and placements (default 20m)")
        p.add_argument("--margin", default="10%", help="share of the memory budget to leave free (default 10%%)")
        recipe_flags(p, config_default="recipe")
        field_flags(p, JOB_FLAGS)
        p.add_argument("--batch-size", type=int, help="size this batch (per rank) instead of searching the boundary")
        p.add_argument("--runs", type=int, default=3, help="runs of each placement at most, as the budget allows (3)")
        p.add_argument("--soak-steps", type=int, default=200,
                   help="most steps of the soak run that measures memory growth over the job (200; 0: none)")
        p.add_argument("--placements", help="only these placements, as THREADSxRANKS, e.g. 2x1,1x2 (default: all)")
        p.add_argument("--rows", type=int, help="model a dataset of N rows drawn from --dataset (with replacement)")
        p.add_argument("--cores", help="also project the job at these core counts, e.g. 32,64: extrapolated by "
                                       "Amdahl's law, fitted over the placements' core counts (two or more)")
        p.add_argument("--price-per-hour", type=float, help="what an hour of the machine costs, for the job's cost")
        p.add_argument("--validate", nargs="?", type=float, const=1.0, metavar="FRACTION",
                   help="then run the job (or FRACTION of its steps) and compare projected with actual")
        p.add_argument("--out",
                       help="result folder (default: results/size-<model>); a later run there reuses its cells")
        p.add_argument("--report-out", help="report folder (default: reports/<result folder name>)")

    @classmethod
    def run(cls, args: argparse.Namespace) -> int:
        return run_size(args)


def run_size(args: argparse.Namespace) -> int:
    from harness.launch.emulation import refuse_job
    from harness.render.sizing import render_sizing, summary_lines
    from harness.sizing.size import size
    from harness.sizing.validate import validate

    req, out = request(args)
    refuse_job(req.cfg.precision, "size")
    report = Path(args.report_out or Path("reports") / out.name)
    findings = size(req, out)
    if args.validate is not None and findings.recommendation:
        render_sizing(findings, report)  # the sizing's report first: the validation may take hours
        findings = validate(out, args.validate)
    render_sizing(findings, report)
    for line in summary_lines(findings):
        console.print(line)
    console.print(f"report: {report / 'index.html'}\n        {report / 'report.md'}\n        {out / 'sizing.json'}")
    return 0



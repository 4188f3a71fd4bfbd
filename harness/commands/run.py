"""`xeonft run`: a matrix's cells, each in its own process, into a result set; then the set joins the catalog beside
it (`results/catalog.sqlite` for `results/<set>`), so `xeonft history` sees every sweep."""

from __future__ import annotations

import argparse

from harness.commands.base import Command
from harness.commands.flags import trust_remote_code_flag


class Run(Command):
    name = "run"
    help = ("run a matrix of cells, each in its own process, into a result set; adds the result set to the catalog "
            "beside it (catalog.sqlite in the result set's parent folder)")

    @classmethod
    def setup_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("matrix", help="matrix YAML file (see bench/matrices/)")
        parser.add_argument("--out", help="result set folder (default: results/<matrix name>)")
        parser.add_argument("--resume", action="store_true",
                            help="continue a result set, skipping cells already done")
        parser.add_argument("--retry-failed", action="store_true",
                            help="with --resume, also re-run failed/oom/timeout cells")
        parser.add_argument("--node-rank", type=int, help="this machine's rank in a multi-node matrix (nnodes > 1)")
        parser.add_argument("--dry-run", action="store_true", help="list the cells, their keys, what --resume "
                            "would skip, and an estimated time; run nothing")
        trust_remote_code_flag(parser, "allow the cells' models to run their own code (a matrix or preset never can)")
        parser.add_argument("--create-envs", action="store_true",
                            help="build the library stacks the matrix names (axis `stack`) before any cell runs")
        parser.add_argument("--allow-torch-stacks", action="store_true",
                            help="with --create-envs, also build stacks that pin torch (each downloads a torch build "
                            "of its own: from PyPI on Linux x86_64 the CUDA build, 6.3 GB for torch 2.8.0)")
        parser.add_argument("--memory-limit", help="a memory budget for every cell's process tree, e.g. 6GiB (cells "
                            "over it end as oom; a matrix's own memory_limit is overridden)")
        parser.add_argument("--no-wait", dest="wait", action="store_false",
                            help="refuse, rather than wait, when another benchmark is timing on this machine")

    @classmethod
    def run(cls, args: argparse.Namespace) -> int:
        from pathlib import Path

        from harness.config.matrix import load_matrix
        from harness.launch.console import console

        matrix = load_matrix(args.matrix, trust_remote_code=bool(args.trust_remote_code))
        if args.node_rank is not None:
            matrix = matrix.for_node(args.node_rank)
        if args.memory_limit:  # before the plan: a set limit is part of each cell's key
            matrix = matrix.with_memory_limit(args.memory_limit)
        if args.dry_run:
            from harness.launch.plan import plan

            out = Path(args.out or Path("results") / matrix.name)
            console.print(plan(matrix, out, args.resume, args.retry_failed))
            return 0
        from harness.history import catalog
        from harness.launch.sweep import run_sweep

        store = run_sweep(matrix, out=args.out, resume=args.resume, retry_failed=args.retry_failed, wait=args.wait,
                          create_envs=args.create_envs, allow_torch_stacks=args.allow_torch_stacks)
        warning = catalog.add_after_run(store.root, catalog.default_path(store.root.parent))
        if warning:
            console.print(f"[yellow]warning:[/] {warning}")
        return 0

"""`xeonft run`: a matrix's cells, each in its own process, into a result set; then the set joins the catalog beside
it (`results/catalog.sqlite` for `results/<set>`), so `xeonft history` sees every sweep. With `--executor`, the
whole matrix on each of several machines, one submitit job per machine (`harness.fleet`)."""

from __future__ import annotations

import argparse

from harness.base.errors import XeonftError
from harness.commands.base import Command
from harness.commands.flags import trust_remote_code_flag


class Run(Command):
    name = "run"
    help = ("run a matrix of cells, each in its own process, into a result set; adds the result set to the catalog "
            "beside it (catalog.sqlite in the result set's parent folder); with --executor, on each of several "
            "machines")

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
        parser.add_argument("--catalog", help="the catalog to add the result set(s) to: an SQLite file or a "
                            "postgresql://USER@HOST/DATABASE URL (default: catalog.sqlite in the result set's parent "
                            "folder); with --executor, a shared one every machine adds its own set to")
        fleet = parser.add_argument_group(
            "fleet", "the whole matrix on each of several machines, one submitit job per machine, each into "
            "<out>/<matrix name>@<host> (--out is then the folder of the sets, default results). Slurm needs a "
            "filesystem shared by every node (the out folder, the matrix, this xeonft checkout and its venv at the "
            "same paths); exit 3 when any machine's job failed, the others' results kept")
        fleet.add_argument("--executor", choices=["local", "slurm"],
                           help="run through submitit: `local` one job on this machine, `slurm` one job per target, "
                           "each taking its whole node (exclusive, all its CPUs and memory)")
        fleet.add_argument("--partition", help="with --executor slurm: one job per partition, comma-separated")
        fleet.add_argument("--nodelist", help="with --executor slurm: one job per node, pinned (node1,node2 or "
                           "node[1-3]); with --partition, through those partitions")
        fleet.add_argument("--timeout", type=int, help="with --executor: minutes a machine's job may take "
                           "(default 180)")

    @classmethod
    def run(cls, args: argparse.Namespace) -> int:
        from pathlib import Path

        from harness.config.matrix import load_matrix
        from harness.history.catalog_db import CatalogLocation
        from harness.launch.console import console

        where = CatalogLocation.parse(args.catalog) if args.catalog else None  # a wrong URL: before any cell runs
        if args.executor:
            return cls.fleet(args)
        if args.partition or args.nodelist or args.timeout is not None:
            raise XeonftError("--partition, --nodelist and --timeout are for a fleet: they need --executor")
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
        warning = catalog.add_after_run(store.root, where or catalog.default_path(store.root.parent))
        if warning:
            console.print(f"[yellow]warning:[/] {warning}")
        return 0

    @classmethod
    def fleet(cls, args: argparse.Namespace) -> int:
        """The whole matrix on each target machine; exit 3 (a Failure) when any machine's job failed."""
        from harness.fleet.fleet import run_fleet

        for flag, given in (("--dry-run", args.dry_run), ("--node-rank", args.node_rank is not None)):
            if given:
                raise XeonftError(f"{flag} is for a sweep on this machine: it does not go with --executor")
        run_fleet(args.matrix, args.executor, out=args.out, partition=args.partition, nodelist=args.nodelist,
                  timeout_min=args.timeout, shared_catalog=args.catalog, memory_limit=args.memory_limit,
                  resume=args.resume, retry_failed=args.retry_failed, wait=args.wait, create_envs=args.create_envs,
                  allow_torch_stacks=args.allow_torch_stacks, trust_remote_code=bool(args.trust_remote_code))
        return 0

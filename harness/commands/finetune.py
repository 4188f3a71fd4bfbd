"""`xeonft finetune`: the recipe run once, in-process. Its flags are the recipe's fields (`flags.field_flags`)."""

from __future__ import annotations

import argparse

from harness.commands.base import Command
from harness.commands.flags import field_flags, field_overrides, recipe_flags


class Finetune(Command):
    name = "finetune"
    help = ("run the recipe once (offline defaults: SmolLM2-135M on Alpaca demo rows); writes its run folder "
            "(adapters, loss log and plot, generations)")

    @classmethod
    def setup_arguments(cls, parser: argparse.ArgumentParser) -> None:
        recipe_flags(parser)
        field_flags(parser)
        parser.add_argument("--out", help="run folder (default: results/runs/<time>-<hash>)")

    @classmethod
    def run(cls, args: argparse.Namespace) -> int:
        from harness.config.finetune import load_config
        from harness.finetune import run_finetune
        from harness.launch.emulation import refuse_job

        cfg = load_config(args.config, preset=args.preset, **field_overrides(args))
        refuse_job(cfg.precision, "finetune")
        run_finetune(cfg, out=args.out)
        return 0

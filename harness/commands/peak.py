"""`xeonft peak`: the GEMM throughput of this machine, for large squares and a model's own GEMM shapes."""

from __future__ import annotations

import argparse

from harness.commands.base import Command


class Peak(Command):
    name = "peak"
    help = "GEMM throughput here: large squares and a model's own GEMM shapes"

    @classmethod
    def setup_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--size", type=int, default=2048, help="square size (default 2048)")
        parser.add_argument("--shape", default="llama-3.2-1b", help="model shape whose GEMMs to time")
        parser.add_argument("--tokens", type=int, default=2048, help="rows of the model GEMMs (tokens per step)")

    @classmethod
    def run(cls, args: argparse.Namespace) -> int:
        from harness.measure.peak import peak_table

        print(peak_table(args.size, args.shape, args.tokens))
        return 0

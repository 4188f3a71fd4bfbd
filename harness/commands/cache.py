"""`xeonft cache`: what the cache holds, and pruning compiled graphs and half-built environments."""

from __future__ import annotations

import argparse

from harness.commands.base import Command


class Cache(Command):
    name = "cache"
    help = "what the cache holds; prune compiled graphs and half-built environments"

    @classmethod
    def setup_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("action", choices=["show", "prune"])

    @classmethod
    def run(cls, args: argparse.Namespace) -> int:
        from harness.launch import cache

        if args.action == "prune":
            print(f"freed {cache.prune() / 2**20:.0f} MiB")
        for name, size in cache.usage():
            print(f"{size / 2**20:10.0f} MiB  {name}")
        return 0

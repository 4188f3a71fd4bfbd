"""Research only (docs/measurements.md, stop 33): when trl.trainer.sft_trainer is imported, replace the
`entropy_from_logits` it imported (trl 0.22.0, PR #3940: a log-softmax over every logit of every step, for a logged
metric) by zeros of the same shape, so a stack with this package measures trl 0.22.0 without that pass. Nothing is
imported until trl's trainer is: a .pth line runs this at every interpreter start."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

TARGET = "trl.trainer.sft_trainer"


def _zeros(logits, chunk_size=1):  # type: ignore[no-untyped-def]
    return logits.new_zeros(logits.shape[:-1])


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return self.inner.create_module(spec)

    def exec_module(self, module):  # type: ignore[no-untyped-def]
        self.inner.exec_module(module)
        if hasattr(module, "entropy_from_logits"):
            module.entropy_from_logits = _zeros
            print("xeonft-trl-no-entropy: trl's SFT entropy pass replaced by zeros", file=sys.stderr)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


sys.meta_path.insert(0, _Finder())

"""Research only (docs/measurements.md, stop 34): trl 1.16.0's fused LM head (`trl.kernels.chunked_logprob`) runs
its backward GEMMs in fp32 on every device but CUDA (`_addmm_fp32`: `acc.addmm_(a.float(), b.float())`), and on an AMX
CPU an fp32 GEMM is about 6.7x slower than a bf16 one. When that module is imported, replace `_addmm_fp32` by a bf16
GEMM whose product is accumulated into the fp32 buffer (`torch.addmm(..., out_dtype=torch.float32)` where torch takes
it on the CPU, else the product rounded to bf16 and added), so a stack with this package measures trl 1.16.0 without
that upcast. Nothing is imported until trl's kernels are: a .pth line runs this at every interpreter start."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

TARGET = "trl.kernels.chunked_logprob"


def _addmm_bf16(acc, a, b):  # type: ignore[no-untyped-def]
    import torch

    if a.dtype not in (torch.bfloat16, torch.float16):
        acc.addmm_(a.float(), b.float())
        return
    try:
        torch.addmm(acc, a, b.to(a.dtype), out_dtype=torch.float32, out=acc)
    except (TypeError, RuntimeError):
        acc.add_(torch.mm(a, b.to(a.dtype)))


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return self.inner.create_module(spec)

    def exec_module(self, module):  # type: ignore[no-untyped-def]
        self.inner.exec_module(module)
        if hasattr(module, "_addmm_fp32"):
            module._addmm_fp32 = _addmm_bf16
            print("xeonft-trl-bf16-head: trl's fused LM head backward GEMMs in bf16", file=sys.stderr)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


sys.meta_path.insert(0, _Finder())

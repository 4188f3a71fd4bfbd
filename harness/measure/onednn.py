"""Proof of which oneDNN kernels ran: verbose output captured for one training step, parsed into ISA shares.

oneDNN logs every primitive it executes when verbose is on (`onednn_verbose,...,exec,cpu,matmul,
brg_matmul:avx512_core_amx,...,<ms>`). Kernel names carry the ISA; on Sapphire Rapids and later an AMX kernel's
name contains `amx` (`avx512_core_amx`, or `avx10_1_512_amx`). Verbose logging slows the step it covers, so the
harness turns it on for the last warm-up step, never for a measured one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import tempfile
from collections.abc import Iterator
from typing import Any

GEMM_KINDS = ("matmul", "inner_product", "convolution")


@contextlib.contextmanager
def capture_verbose() -> Iterator[list[str]]:
    """Collect oneDNN's verbose lines for the duration of the block (they go to fd 1, so it is redirected)."""
    import torch

    lines: list[str] = []
    libc = ctypes.CDLL(None)
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+") as sink:
        libc.fflush(None)
        os.dup2(sink.fileno(), 1)
        torch._C._verbose.mkldnn_set_verbose(1)
        try:
            yield lines
        finally:
            torch._C._verbose.mkldnn_set_verbose(0)
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            lines.extend(ln.rstrip("\n") for ln in sink if ln.startswith(("onednn_verbose", "dnnl_verbose")))


def summarize(lines: list[str]) -> dict[str, Any]:
    """Kernels by name with counts and time; the share of GEMM-like time spent in AMX kernels."""
    kernels: dict[str, dict[str, Any]] = {}
    detected = None
    for line in lines:
        fields = line.split(",")
        if "info" in fields[:3] and any(f.startswith("isa:") for f in fields):
            detected = next(f for f in fields if f.startswith("isa:")).removeprefix("isa:")
            continue
        if "exec" not in fields:
            continue
        i = fields.index("exec")
        try:
            kind, impl, ms = fields[i + 2], fields[i + 3], float(fields[-1])
        except (IndexError, ValueError):
            continue
        # oneDNN >= 3 writes `src:bf16:...`, 2.x and DNNL 1.x (the seed-2025 stack, IPEX's own builds) `src_bf16:...`
        src = re.search(r"\bsrc[:_]([a-z0-9]+?):", line)
        name = f"{kind}:{impl}"
        k = kernels.setdefault(name, {"kind": kind, "impl": impl, "src_dtype": src.group(1) if src else None,
                                      "count": 0, "ms": 0.0})
        k["count"] += 1
        k["ms"] += ms
    gemm = [k for k in kernels.values() if k["kind"] in GEMM_KINDS]
    gemm_ms = sum(k["ms"] for k in gemm)
    amx_ms = sum(k["ms"] for k in gemm if "amx" in k["impl"])
    bf16 = [k for k in gemm if k["src_dtype"] == "bf16"]
    return {
        "detected_isa": detected,
        "kernels": sorted(kernels.values(), key=lambda k: -k["ms"]),
        "gemm_ms": gemm_ms,
        "amx_ms": amx_ms,
        "amx_share": amx_ms / gemm_ms if gemm_ms else 0.0,
        "bf16_gemm_calls": sum(k["count"] for k in bf16),
        "bf16_gemm_on_amx": any("amx" in k["impl"] for k in bf16),
    }


def top_gemm(onednn: dict[str, Any] | None) -> str | None:
    """The oneDNN GEMM kernel that took the most time in the probed step (its name names the ISA)."""
    gemm = [k for k in (onednn or {}).get("kernels", []) if k["kind"] in GEMM_KINDS]
    return max(gemm, key=lambda k: k["ms"])["impl"] if gemm else None

"""The limit: GEMM throughput of this machine, per dtype, on large squares and on a model's own GEMM shapes."""

from __future__ import annotations

import time
from typing import Any

from harness.measure.shapes import SHAPES, kv_width

DTYPES = ("bf16", "fp32")


def bf16_kernels() -> bool:
    """Whether torch has bf16 GEMM kernels on this CPU (oneDNN's, which need AVX-512 or AVX-NE-CONVERT). Without
    them torch emulates bf16 GEMMs: about 1 GFLOP/s on one core of a 2-core AVX2 EPYC, against 30-70 in fp32."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the probe: its oneDNN is what decides
        return torch.backends.mkldnn.is_available() and torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def gemm_dtypes() -> tuple[str, ...]:
    """The dtypes whose GEMMs this CPU runs natively: fp32 always, bf16 only with `bf16_kernels()`."""
    return DTYPES if bf16_kernels() else ("fp32",)


def operands(m: int, k: int, n: int, dtype: str, seed: int | None = None) -> tuple[Any, Any]:
    """Random (m x k) and (k x n) torch tensors of `dtype` (bf16 | fp32); the same ones for the same `seed`."""
    import torch

    dt = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return torch.randn(m, k, generator=gen, dtype=dt), torch.randn(k, n, generator=gen, dtype=dt)


def gemm_tflops(m: int, k: int, n: int, dtype: str, min_seconds: float = 0.5) -> float:
    """TFLOP/s of (m x k) @ (k x n) with torch, best of repeated timings after a warm-up."""
    import torch

    a, b = operands(m, k, n, dtype)
    for _ in range(2):
        torch.mm(a, b)
    best, spent = float("inf"), 0.0
    while spent < min_seconds:
        t0 = time.perf_counter()
        torch.mm(a, b)
        dt_s = time.perf_counter() - t0
        best, spent = min(best, dt_s), spent + dt_s
    return 2 * m * k * n / best / 1e12


def model_shapes(model: dict[str, Any], tokens: int) -> dict[str, tuple[int, int, int]]:
    """The forward GEMMs of one Llama block (and the LM head) for `tokens` rows."""
    h, inter, vocab, kv = model["hidden_size"], model["intermediate_size"], model["vocab_size"], kv_width(model)
    return {"qo_proj": (tokens, h, h), "kv_proj": (tokens, h, kv), "up_gate_proj": (tokens, h, inter),
            "down_proj": (tokens, inter, h), "lm_head": (tokens, h, vocab)}


def measure_peak(size: int = 2048, min_seconds: float = 0.5) -> dict[str, float]:
    """Square-GEMM TFLOP/s per dtype: the peak that MFU is measured against. On a CPU without bf16 kernels the bf16
    peak is the fp32 one, not measured: an emulated bf16 GEMM is fp32 FMAs after conversions, so fp32's rate bounds
    it, and timing the emulation at 2048^3 takes about 20 s a GEMM for a figure that is no ceiling at all."""
    out = {dt: gemm_tflops(size, size, size, dt, min_seconds) for dt in gemm_dtypes()}
    out.setdefault("bf16", out["fp32"])
    return {dt: out[dt] for dt in DTYPES}


def peak_table(size: int, shape: str, tokens: int) -> str:
    """`xeonft peak`'s table: TFLOP/s per dtype of a square GEMM and of a model shape's own GEMMs."""
    from harness.base.errors import XeonftError

    if shape not in SHAPES or SHAPES[shape]["vocab_size"] is None:
        raise XeonftError(f"unknown shape '{shape}': choose one of {', '.join(s for s in SHAPES if s != 'tiny')}")
    shapes = {f"square {size}": (size, size, size),
              **{f"{shape} {k}": v for k, v in model_shapes(SHAPES[shape], tokens).items()}}
    native = gemm_dtypes()
    lines = [f"{'GEMM':32} {'m x k x n':>22} " + " ".join(f"{d + ' TFLOP/s':>13}" for d in DTYPES)]
    for name, (m, k, n) in shapes.items():
        cols = " ".join(f"{gemm_tflops(m, k, n, d):13.3f}" if d in native else f"{'emulated':>13}" for d in DTYPES)
        lines.append(f"{name:32} {f'{m}x{k}x{n}':>22} {cols}")
    if "bf16" not in native:
        lines.append("bf16: this CPU has no bf16 GEMM kernels (oneDNN's need AVX-512 or AVX-NE-CONVERT); torch "
                     "emulates them far below the fp32 figures, which bound them")
    return "\n".join(lines)

"""bf16 cells on a CPU without bf16 GEMM kernels (an AVX2 CPU: no AVX-512, no AMX), where torch emulates every bf16
GEMM: about 1 GFLOP/s a core against 30-70 in fp32 on a 2-core AVX2 EPYC, so one step of the default model at batch 4
would take about ten minutes (by its FLOP count). Such a cell is recorded `unavailable` at once, saying why, unless
the matrix asks for it (`emulated_bf16: true`) or, where the matrix is silent, `XEONFT_EMULATED_BF16=1` does (the
tests set it: their tiny models' bf16 steps take milliseconds even emulated). Emulated bf16 figures say nothing
about a Xeon's bf16."""

from __future__ import annotations

import os

from harness.base.errors import XeonftError
from harness.config.precision import precision_rule
from harness.config.spec import CellSpec

EMULATED_VAR = "XEONFT_EMULATED_BF16"
WHY = ("this CPU has no bf16 GEMM kernels (no AVX-512, no AMX), so torch would emulate every bf16 GEMM, tens of times "
       "slower than fp32 (about 1 against 30-70 GFLOP/s a core on an AVX2 EPYC)")


def allowed(matrix_says: bool | None) -> bool:
    """Whether emulated bf16 cells run: the matrix's `emulated_bf16`, else the environment's switch."""
    return matrix_says if matrix_says is not None else os.environ.get(EMULATED_VAR) == "1"


def refusal(spec: CellSpec, bf16_kernels: bool, allow: bool) -> str | None:
    """Why this cell is not run here (its reason as `unavailable`), or None when it runs."""
    precision = spec.config.precision
    if bf16_kernels or allow or precision_rule(precision).gemm != "bf16":
        return None
    return (f"precision {precision}: {WHY}, and its figures would say nothing about a Xeon's bf16; set "
            "emulated_bf16: true in the matrix to measure it anyway")


def refuse_job(precision: str, what: str) -> None:
    """For a command that runs one job on this machine (`size`, `finetune`): XeonftError, before anything runs, when
    its GEMMs would be emulated bf16 here and XEONFT_EMULATED_BF16=1 does not ask for it."""
    from harness.measure.fingerprint import torch_build

    if precision_rule(precision).gemm != "bf16" or allowed(None) or torch_build().get("bf16_kernels", True):
        return
    raise XeonftError(f"{what}: precision {precision}: {WHY}: pass --precision fp32, or set "
                      f"{EMULATED_VAR}=1 to run it anyway")

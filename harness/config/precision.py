"""What each `precision` means, stated once: the dtype the frozen base weights are stored in, whether the forward
runs under CPU autocast, the LoRA adapters' dtype and the dtype the GEMMs run in.

The recipe builds its model and Trainer from it (`harness.cell.recipe`), the sizing's memory breakdown counts
bytes with it (`harness.sizing.fit`) and a cell's MFU is measured against the GEMM peak of its `gemm` dtype
(`harness.analysis.efficiency`): a precision added here is added to all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from harness.base.errors import XeonftError

DType = Literal["bf16", "fp32"]  # also the keys of a GEMM peak (`xeonft peak`, a record's `peak`)
BYTES: dict[DType, int] = {"bf16": 2, "fp32": 4}


@dataclass(frozen=True)
class PrecisionRule:
    """One precision's dtypes."""

    weights: DType  # the frozen base weights, as loaded and stored
    autocast: bool  # the Trainer's bf16=True: the forward under CPU autocast to bf16
    gemm: DType  # the base GEMMs' dtype (activations are kept in it): what ipex.optimize is told, MFU's peak
    adapters: DType = "fp32"  # LoRA weights (peft keeps them in fp32), so their gradients and AdamW's moments too

    @property
    def weight_bytes(self) -> int:
        return BYTES[self.weights]

    @property
    def activation_bytes(self) -> int:
        return BYTES[self.gemm]

    @property
    def adapter_bytes(self) -> int:
        """Bytes a LoRA parameter holds in training: its weight, its gradient and AdamW's two moments."""
        return 4 * BYTES[self.adapters]


RULES: dict[str, PrecisionRule] = {
    "fp32": PrecisionRule(weights="fp32", autocast=False, gemm="fp32"),
    # fp32 weights, bf16 compute: the recipe's bf16=True
    "bf16-autocast": PrecisionRule(weights="fp32", autocast=True, gemm="bf16"),
    # bf16 base weights, no autocast: the base GEMMs run in bf16, LoRA's own GEMMs in fp32
    "bf16": PrecisionRule(weights="bf16", autocast=False, gemm="bf16"),
    # bf16 base weights, fp32 adapter master weights, every GEMM in bf16 under autocast
    "bf16-mixed": PrecisionRule(weights="bf16", autocast=True, gemm="bf16"),
}
AUTOCAST: tuple[str, ...] = tuple(name for name, rule in RULES.items() if rule.autocast)


def precision_rule(precision: str) -> PrecisionRule:
    try:
        return RULES[precision]
    except KeyError:
        raise XeonftError(f"unknown precision {precision!r}: one of {', '.join(RULES)}") from None


def torch_dtype(dtype: DType) -> Any:
    """The torch dtype of a DType name (torch is imported here only when asked)."""
    import torch

    return {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]

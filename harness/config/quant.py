"""What each `quant` means, stated once: which library holds the frozen base's decoder linears, in which format, and
how many bytes a weight takes there.

The cell quantizes with it (`harness.cell.quant`), the sizing's memory breakdown counts the base's bytes with it
(`harness.sizing.fit`), and the report names the library and format a cell ran. Quantization changes what a weight
is stored in, never the FLOPs of a step: every GEMM still runs in the precision's compute dtype on a weight
dequantized for it, so MFU is counted against the same peak as the unquantized cell.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.base.errors import XeonftError

BLOCK = 64  # bitsandbytes' 4-bit block: one absmax per 64 weights
NESTED_BLOCK = 256  # double quantization: the absmaxes in 8 bits, one fp32 scale per 256 of them


@dataclass(frozen=True)
class QuantRule:
    """One quantized format of the frozen base's linear weights."""

    library: str  # the import that does it (and whose version the fingerprint records)
    format: str  # the library's own name for the format
    weight_bytes: float  # bytes per weight, scales included (what sizing counts)


RULES: dict[str, QuantRule] = {
    # LLM.int8's weights: one int8 per weight and one fp32 scale per output row (left out: a row holds thousands)
    "int8": QuantRule(library="bitsandbytes", format="int8 (LLM.int8 weights)", weight_bytes=1.0),
    # 4-bit NormalFloat with double quantization (the QLoRA paper's): half a byte, plus an 8-bit absmax per 64
    # weights and an fp32 scale per 256 absmaxes
    "nf4": QuantRule(library="bitsandbytes", format="nf4, double-quantized",
                     weight_bytes=0.5 + (1 + 4 / NESTED_BLOCK) / BLOCK),
    "fp4": QuantRule(library="bitsandbytes", format="fp4, double-quantized",
                     weight_bytes=0.5 + (1 + 4 / NESTED_BLOCK) / BLOCK),
}


def quant_rule(quant: str) -> QuantRule | None:
    """The rule of a quantized format; None for `none` (the weights as the precision stores them)."""
    if quant == "none":
        return None
    try:
        return RULES[quant]
    except KeyError:
        raise XeonftError(f"unknown quant {quant!r}: one of none, {', '.join(RULES)}") from None

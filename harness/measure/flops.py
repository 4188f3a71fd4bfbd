"""Analytic FLOPs of a LoRA training step on a Llama, and what fraction of the machine's peak it reaches (MFU).

Per trained token, with frozen base weights (no weight gradients for them):
- base linears (attention and MLP projections, the LM head), N_lin weights: forward 2 N_lin, backward 2 N_lin
  (gradients of the activations only);
- LoRA adapters on every linear of the blocks ("all-linear"), N_lora weights: forward 2, backward 4 (activations
  and the adapters' own weights);
- attention scores and values: 4 h ctx per layer forward, twice that backward, where ctx is the mean causal
  context of a token (half its document's length).
Not counted: recomputation by gradient checkpointing (that would be hardware FLOPs, not model FLOPs), norms,
activations, the optimizer. MFU is these model FLOPs per second over the measured GEMM peak of the same dtype.
"""

from __future__ import annotations

from typing import Any

from harness.measure.shapes import SHAPE_KEYS, block_linears


def per_token_flops(model: dict[str, Any], lora_r: int, mean_document_tokens: float) -> float | None:
    """Model FLOPs to train on one token; None when the model's shape is not known."""
    if any(model.get(k) is None for k in SHAPE_KEYS):
        return None
    h, layers, vocab = model["hidden_size"], model["num_hidden_layers"], model["vocab_size"]
    linears = list(block_linears(model).values())
    n_lin = layers * sum(i * o for i, o in linears) + vocab * h
    n_lora = layers * lora_r * sum(i + o for i, o in linears)
    attention = layers * 4 * h * (mean_document_tokens / 2)
    return 4 * n_lin + 6 * n_lora + 3 * attention


def cell_efficiency(record: dict[str, Any], peak: dict[str, float] | None) -> dict[str, float | None]:
    """Achieved model TFLOP/s of a cell's measured steps, and its MFU against the sweep's measured peak."""
    res = record.get("result") or {}
    s = res.get("summary") or {}
    cfg = (record.get("spec") or {}).get("config") or {}
    tps, seqs = s.get("tokens_per_second"), s.get("measured_sequences")
    if not tps or not s.get("measured_tokens") or not seqs:
        return {"tflops": None, "mfu": None}
    flops = per_token_flops(res.get("model") or {}, cfg.get("lora_r", 8), s["measured_tokens"] / seqs)
    if flops is None:
        return {"tflops": None, "mfu": None}
    tflops = flops * tps / 1e12
    dtype = "fp32" if cfg.get("precision") == "fp32" else "bf16"
    top = (peak or {}).get(dtype)
    return {"tflops": tflops, "mfu": tflops / top if top else None}

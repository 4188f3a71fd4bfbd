"""Analytic FLOPs of a LoRA training step on a Llama, and what fraction of the machine's peak it reaches.

Per trained token, with frozen base weights (no weight gradients for them):
- base linears (attention and MLP projections, the LM head), N_lin weights: forward 2 N_lin, backward 2 N_lin
  (gradients of the activations only);
- LoRA adapters on the targeted linears of the blocks (`lora_target_modules`; "all-linear" is all seven, never
  the LM head), N_lora weights: forward 2, backward 4 (activations and the adapters' own weights);
- attention scores and values: 4 h ctx per layer forward, twice that backward, where ctx is a token's mean causal
  context. A packed row holds several documents and each attends only within itself (trl's padding-free packing),
  so over documents of lengths L_i the mean context is sum L_i^2 / (2 sum L_i), not half the mean length.

MFU counts these model FLOPs only. HFU (hardware FLOPs utilisation) adds what the machine really computes on top:
the forward pass again when gradient checkpointing recomputes it, and attention over a whole packed row where a
masked kernel (`sdpa`, `eager`) computes every masked-out score. Norms, activations and the optimizer are not
counted in either. Both are against the GEMM peak of the cell's dtype measured at the cell's own core count.
Architectures the formula does not describe get no figure ("n/a"), never a wrong one.
"""

from __future__ import annotations

from typing import Any

from harness.measure.shapes import SHAPE_KEYS, block_linears

# Decoder-only models whose blocks are exactly Llama's (q k v o, gated MLP, RMSNorm, RoPE): the formula holds.
LLAMA_LIKE = ("LlamaForCausalLM", "MistralForCausalLM")
ALL_LINEAR = "all-linear"


def lora_targets(target_modules: str | list[str] | tuple[str, ...]) -> list[str]:
    names = list(block_linears({"hidden_size": 1, "intermediate_size": 1, "num_attention_heads": 1}))
    if target_modules == ALL_LINEAR:
        return names
    wanted = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    return [n for n in names if any(w == n or w.endswith(f".{n}") for w in wanted)]


def lora_parameters(model: dict[str, Any], lora_r: int,
                    target_modules: str | list[str] | tuple[str, ...] = ALL_LINEAR) -> int:
    """The LoRA weights of the model's blocks: r x (in + out) for each targeted linear of each block (A is
    r x in, B is out x r); peft's count of `lora_` parameters."""
    targets = lora_targets(target_modules)
    linears = block_linears(model)
    return model["num_hidden_layers"] * lora_r * sum(i + o for name, (i, o) in linears.items() if name in targets)


def per_token_flops(model: dict[str, Any], lora_r: int, mean_context: float,
                    target_modules: str | list[str] | tuple[str, ...] = ALL_LINEAR) -> float | None:
    """Model FLOPs to train on one token whose mean causal context is `mean_context` tokens; None when the
    model's shape or architecture is not one the formula describes."""
    if any(model.get(k) is None for k in SHAPE_KEYS):
        return None
    if model.get("architecture") not in (None, *LLAMA_LIKE):
        return None
    h, layers, vocab = model["hidden_size"], model["num_hidden_layers"], model["vocab_size"]
    linears = block_linears(model)
    n_lin = layers * sum(i * o for i, o in linears.values()) + vocab * h
    attention = layers * 4 * h * mean_context
    return 4 * n_lin + 6 * lora_parameters(model, lora_r, target_modules) + 3 * attention


def recompute_flops(model: dict[str, Any], lora_r: int, mean_context: float,
                    target_modules: str | list[str] | tuple[str, ...] = ALL_LINEAR) -> float:
    """The forward pass of the blocks once more per token (what gradient checkpointing recomputes)."""
    h, layers = model["hidden_size"], model["num_hidden_layers"]
    linears = block_linears(model)
    n_block = layers * sum(i * o for i, o in linears.values())
    return 2 * n_block + 2 * lora_parameters(model, lora_r, target_modules) + layers * 4 * h * mean_context


def mean_context(summary: dict[str, Any]) -> float | None:
    """Mean causal context of a measured token: sum L^2 / (2 sum L) over the documents, where the steps recorded
    their documents' squared lengths; else half the mean document length (every document assumed equally long)."""
    tokens, seqs, squares = (summary.get(k) for k in ("measured_tokens", "measured_sequences", "measured_doc_sq"))
    if not tokens or not seqs:
        return None
    return squares / (2 * tokens) if squares else tokens / seqs / 2

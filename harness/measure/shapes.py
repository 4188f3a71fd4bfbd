"""Llama shapes: the one home of a model's dimensions and of the linear layers they imply.

The synthetic models (`synthetic:<shape>`), the FLOPs formula and the GEMM peak's model shapes all read them here.
"""

from __future__ import annotations

from typing import Any

# Real architectures (from the models' published configs), without their weights.
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, vocab_size=None, tie_word_embeddings=True, rope_theta=10000.0),
    "smollm2-135m": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True, rope_theta=100000.0),
    "llama-3.2-1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                         intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True, rope_theta=500000.0),
    "llama-3.2-3b": dict(hidden_size=3072, num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8,
                         intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True, rope_theta=500000.0),
    "llama-3.1-8b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                         intermediate_size=14336, vocab_size=128256, tie_word_embeddings=False, rope_theta=500000.0),
}

SHAPE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")


def kv_width(model: dict[str, Any]) -> int:
    """Width of the key and value projections (grouped-query attention: fewer KV heads than query heads)."""
    heads = model["num_attention_heads"]
    return int(model["hidden_size"] // heads * (model.get("num_key_value_heads") or heads))


def block_linears(model: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(in, out) features of each linear layer of one decoder block."""
    h, inter, kv = model["hidden_size"], model["intermediate_size"], kv_width(model)
    return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
            "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}

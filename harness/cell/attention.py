"""Per-document attention for padding-free packed rows, on CPU.

trl's padding-free packing flattens a batch into one row of several documents. With `sdpa`, transformers builds a
block-diagonal mask over the whole row, and the CPU kernels compute every masked-out score too: attention costs grow
with the square of the row (batch size x seq_len), not of each document. The varlen kernels that skip them
(flash-attention) are GPU-only. `varlen` here runs causal SDPA once per document, from the `cu_seq_lens_q`
boundaries the collator already computes, with no mask at all; the result is the same attention.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch

NAME = "xeonft_varlen"
IMPLEMENTATIONS = {"sdpa": "sdpa", "eager": "eager", "varlen": NAME}


def varlen_sdpa(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: q/k/v are (batch, heads, length, head_dim); returns
    (batch, length, heads, head_dim)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.pop("cu_seq_lens_q", None)
    for name in ("cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx", "position_ids"):
        kwargs.pop(name, None)
    if bounds is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        # not a packed row (one unpacked sequence, decoding with a cache): plain SDPA decides
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    return _per_document(module, query, key, value, bounds, dropout, scaling, kwargs), None


@torch.compiler.disable
def _per_document(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bounds: torch.Tensor,
                  dropout: float, scaling: float | None, kwargs: dict[str, Any]) -> torch.Tensor:
    """Kept out of torch.compile: the loop's length is the number of documents, which changes every batch; traced,
    it would be unrolled and recompiled for each new count. Compiled layers run it eagerly between two graphs."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    outs = []
    for start, end in itertools.pairwise(bounds.tolist()):
        if end > start:
            out, _ = sdpa_attention_forward(module, query[:, :, start:end], key[:, :, start:end],
                                            value[:, :, start:end], None, dropout=dropout, scaling=scaling,
                                            is_causal=True, **kwargs)
            outs.append(out)
    return torch.cat(outs, dim=1)


def use_attention(model: Any, implementation: str) -> None:
    """Switch a loaded model's attention; `varlen` is registered with transformers first (it needs transformers 5,
    whose masks skip implementations they do not know, so no row-sized mask is built either)."""
    from harness.errors import Unavailable

    name = IMPLEMENTATIONS[implementation]
    if implementation == "varlen":
        import transformers

        if int(transformers.__version__.split(".")[0]) < 5:
            raise Unavailable(f"attn_implementation varlen needs transformers >= 5 (this environment has "
                              f"{transformers.__version__})")
        from transformers import AttentionInterface

        AttentionInterface.register(NAME, varlen_sdpa)
    if getattr(model.config, "_attn_implementation", None) == name:
        return
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(name)
    else:
        model.config._attn_implementation = name

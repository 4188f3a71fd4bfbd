"""Per-document attention for padding-free packed rows, on CPU.

trl's padding-free packing flattens a batch into one row of several documents. With `sdpa`, transformers builds a
block-diagonal mask over the whole row, and the CPU kernels compute every masked-out score too: attention costs grow
with the square of the row (batch size x seq_len), not of each document. The varlen kernels that skip them
(flash-attention) are GPU-only. `varlen` here runs causal SDPA once per document, from the `cu_seq_lens_q`
boundaries the collator already computes, with no mask at all; the result is the same attention. `docbatch` runs
the same attention loop-free, as one batched causal SDPA over the documents padded to the longest: it adds the
padding's work but keeps a compiled decoder layer in one graph. Neither flex_attention (no backward on CPU) nor
nested tensors (no causal SDPA on CPU) could, on torch 2.13: bench/test_micro.py measures the two that can.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch

NAME = "xeonft_varlen"
DOCBATCH = "xeonft_docbatch"
IMPLEMENTATIONS = {"sdpa": "sdpa", "eager": "eager", "varlen": NAME, "docbatch": DOCBATCH}


def varlen_sdpa(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: q/k/v are (batch, heads, length, head_dim); returns
    (batch, length, heads, head_dim)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds, _ = _packed_row(query, key, kwargs)
    if bounds is None:  # not a packed row (one unpacked sequence, decoding with a cache): plain SDPA decides
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    return _per_document(module, query, key, value, bounds, dropout, scaling, kwargs), None


def _packed_row(query: torch.Tensor, key: torch.Tensor, kwargs: dict[str, Any]) -> tuple[torch.Tensor | None,
                                                                                          int | None]:
    """Pops the collator's packed-row keys from `kwargs` (SDPA takes none of them): the row's document boundaries
    and longest document, or (None, None) where this is no packed row of one batch without a cache."""
    bounds, longest = kwargs.pop("cu_seq_lens_q", None), kwargs.pop("max_length_q", None)
    for name in ("cu_seq_lens_k", "max_length_k", "seq_idx", "position_ids"):
        kwargs.pop(name, None)
    if bounds is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        return None, None
    return bounds, longest


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


def docbatch_sdpa(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                  is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature, loop-free: a packed row's documents are scattered into a
    [documents, longest] batch, each document from position 0, and run through one batched causal SDPA. Causality
    alone keeps each document apart: a real query at position p sees keys 0..p of its own document, all real;
    padded queries are computed and dropped. Every shape is a tensor size or the collator's `max_length_q`, so a
    compiled layer traces it whole, with symbolic sizes: no break, no recompile as documents change."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds, longest = _packed_row(query, key, kwargs)
    if bounds is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    if longest is None:
        longest = int((bounds[1:] - bounds[:-1]).max())
    length = query.shape[2]
    tokens = torch.arange(length, device=query.device)
    document = torch.searchsorted(bounds[1:].to(tokens.dtype), tokens, right=True)
    slot = document * longest + tokens - bounds[:-1].to(tokens.dtype)[document]  # row-major in [documents, longest]
    documents = bounds.shape[0] - 1

    def batch(x: torch.Tensor) -> torch.Tensor:  # (1, heads, length, dim) -> (documents, heads, longest, dim)
        flat = x[0].transpose(0, 1)
        out = flat.new_zeros(documents * longest, flat.shape[1], flat.shape[2]).index_put((slot,), flat)
        return out.view(documents, longest, flat.shape[1], flat.shape[2]).transpose(1, 2)

    out, _ = sdpa_attention_forward(module, batch(query), batch(key), batch(value), None, dropout=dropout,
                                    scaling=scaling, is_causal=True, **kwargs)  # (documents, longest, heads, dim)
    return out.reshape(documents * longest, *out.shape[2:]).index_select(0, slot)[None], None


def use_attention(model: Any, implementation: str) -> None:
    """Switch a loaded model's attention; `varlen` and `docbatch` are registered with transformers first (they need
    transformers 5, whose masks skip implementations they do not know, so no row-sized mask is built either)."""
    from harness.base.errors import Unavailable

    name = IMPLEMENTATIONS[implementation]
    if implementation in ("varlen", "docbatch"):
        import transformers

        if int(transformers.__version__.split(".")[0]) < 5:
            raise Unavailable(f"attn_implementation {implementation} needs transformers >= 5 (this environment has "
                              f"{transformers.__version__})")
        from transformers import AttentionInterface

        AttentionInterface.register(NAME, varlen_sdpa)
        AttentionInterface.register(DOCBATCH, docbatch_sdpa)
    if getattr(model.config, "_attn_implementation", None) == name:
        return
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(name)
    else:
        model.config._attn_implementation = name

"""Selective activation checkpointing: keep what the GEMMs and attention produced, recompute the rest.

Full checkpointing (the recipe's) saves a decoder layer's input and reruns its whole forward in the backward pass: a
second set of GEMMs, about a third more compute. Selective checkpointing keeps the matmul and attention outputs and
reruns only the cheap element-wise ops between them (norms, rotary, SiLU and its product, autocast's copies), so no
GEMM runs twice. torch does it per op; under `compile-layers` the policy goes into the compiled graph with the layer
(it needs a layer that compiles whole: `attn_implementation docbatch`, not varlen).

Measured here, it buys less than the idea promises: the GEMM outputs it must keep (the MLP's gate and up above all)
are most of a Llama layer's activations, and Inductor's partitioner already recomputes the element-wise ops of a
compiled layer: about 10% of a layer's transient memory eager, 9-22% compiled (bench/test_micro.py).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

_ATEN = torch.ops.aten
SAVED = frozenset({
    _ATEN.mm.default, _ATEN.addmm.default, _ATEN.bmm.default, _ATEN.baddbmm.default,
    _ATEN._scaled_dot_product_flash_attention_for_cpu.default,
    _ATEN._scaled_dot_product_efficient_attention.default,
    _ATEN._scaled_dot_product_flash_attention.default,
})


def _policy(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> Any:
    from torch.utils.checkpoint import CheckpointPolicy

    return CheckpointPolicy.MUST_SAVE if op in SAVED else CheckpointPolicy.PREFER_RECOMPUTE


def _contexts() -> Any:
    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    return create_selective_checkpoint_contexts(_policy)


def _checkpointed(forward: Any, *args: Any, **kwargs: Any) -> Any:
    from torch.utils.checkpoint import checkpoint

    if not torch.is_grad_enabled():  # evaluation: nothing is saved, nothing to recompute
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, context_fn=_contexts, **kwargs)


def use_selective_checkpointing(model: Any) -> int:
    """Wrap each decoder layer's forward in a selective checkpoint (before any compiling, so the compiled graph
    holds it). Returns the number of layers wrapped."""
    from harness.base.errors import XeonftError
    from harness.cell.models import decoder_layers

    layers = decoder_layers(model)
    if layers is None:
        raise XeonftError(f"gradient_checkpointing selective: no decoder layers (a ModuleList named '...layers') "
                          f"in {type(model).__name__}")
    for layer in layers:
        layer.forward = functools.partial(_checkpointed, layer.forward)
    return len(layers)

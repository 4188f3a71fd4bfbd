"""Selective checkpointing trains what no checkpointing trains, recomputing element-wise ops and no GEMM."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from harness.cell.checkpointing import use_selective_checkpointing


class _Ops(TorchDispatchMode):
    """Counts the aten ops that run."""

    def __init__(self) -> None:
        super().__init__()
        self.count: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.count[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


def _model():
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.config.use_cache = False
    return model


def _backward_ops(model) -> tuple[Counter[str], dict[str, torch.Tensor]]:
    ids = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(3))
    loss = model(input_ids=ids, labels=ids).loss
    with _Ops() as ops:
        loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return ops.count, grads


def test_selective_checkpointing_recomputes_element_wise_ops_only():
    model = _model()
    plain_ops, plain_grads = _backward_ops(model)
    assert use_selective_checkpointing(model) == 2
    ops, grads = _backward_ops(model)
    assert grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    assert plain_ops["silu"] == 0 and ops["silu"] == 2  # each layer's activation rerun in the backward pass
    assert ops["mm"] == plain_ops["mm"]  # no GEMM rerun: their outputs were kept
    model.eval()
    with torch.no_grad(), _Ops() as evaluation:  # evaluation checkpoints nothing and runs each op once
        model(input_ids=torch.zeros(1, 8, dtype=torch.long))
    assert evaluation.count["silu"] == 2


def test_selective_checkpointing_is_a_config_and_flag_value():
    from harness.base.errors import XeonftError
    from harness.cli import build_parser
    from harness.config import load_config

    assert load_config(gradient_checkpointing="selective").gradient_checkpointing == "selective"
    with pytest.raises(XeonftError, match="gradient_checkpointing"):
        load_config(gradient_checkpointing="some")
    with pytest.raises(XeonftError, match=r"^overrides: gradient_checkpointing selective .* docbatch") as err:
        load_config(gradient_checkpointing="selective", backend="compile-layers", attn_implementation="varlen")
    assert "\n" not in str(err.value) and "{" not in str(err.value)
    parse = build_parser().parse_args
    assert parse(["finetune", "--gradient-checkpointing", "selective"]).gradient_checkpointing == "selective"
    assert parse(["finetune", "--gradient-checkpointing"]).gradient_checkpointing is True
    assert parse(["finetune", "--no-gradient-checkpointing"]).gradient_checkpointing is False
    assert parse(["finetune"]).gradient_checkpointing is None

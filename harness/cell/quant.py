"""A quantized frozen base (`quant: int8 | nf4 | fp4`): the decoder's linear layers held by bitsandbytes.

bitsandbytes trains on the CPU by dequantizing each frozen weight to the compute dtype for every GEMM, forward and
backward (`MatMul4Bit`, `MatMul8bitFp`): what it saves is memory, what it costs is the dequantization. A checkpoint
is quantized as transformers loads it (`quantization_config`, layer by layer); a synthetic shape is built a decoder
layer at a time and quantized as it goes (`quantize_linears`, from `harness.cell.models.synthetic_model`), so neither
holds the whole dense base at once.

One trap is closed here for every quantized model (`keep_training_layout`): on a CPU with AVX-512 BF16, a 4-bit
layer's first forward in eval mode without gradients repacks its weight into an inference layout, after which the
layer runs `gemv_4bit`, which has no backward: training resumed after an evaluation would pass no gradient through
that layer, silently (reproduced: docs/research/qlora-cpu.md).
"""

from __future__ import annotations

import types
from typing import Any

import torch

from harness.base.errors import Unavailable
from harness.config.quant import RULES


def bitsandbytes() -> Any:
    """The library, imported quietly (offline it logs that it cannot fetch its Hub inference kernel, which training
    does not use), or Unavailable naming what is missing."""
    import logging

    quiet = logging.getLogger("bitsandbytes")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        import bitsandbytes as bnb
    except ImportError as err:
        raise Unavailable(f"quant needs bitsandbytes, which this environment cannot import ({err}); xeonft's own "
                          "environment pins it (envs/current.txt)") from None
    finally:
        quiet.setLevel(level)
    return bnb


def quantization_config(quant: str, compute: torch.dtype) -> Any:
    """transformers' quantization config for `from_pretrained`: the decoder linears only (transformers leaves the
    LM head and the embeddings as they are), 4-bit with double quantization and the compute dtype set (its default
    is fp32: slow and silent)."""
    from transformers import BitsAndBytesConfig

    bitsandbytes()
    if quant == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant, bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute)


def quantize_linear(linear: torch.nn.Linear, quant: str, compute: torch.dtype) -> torch.nn.Module:
    """The bitsandbytes layer holding `linear`'s weight in `quant` (quantized as it moves to the CPU)."""
    bnb = bitsandbytes()
    bias = linear.bias is not None
    weight = linear.weight.data
    layer: torch.nn.Module
    # made on the meta device: the layer's own dense weight would be allocated and initialised only to be replaced
    if quant == "int8":
        layer = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=bias, has_fp16_weights=False,
                                    device="meta")
        layer.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    else:
        layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=bias, compute_dtype=compute,
                                  quant_type=quant, compress_statistics=True, device="meta")
        layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type=quant, compress_statistics=True,
                                         module=layer)
    if bias:
        layer.bias = torch.nn.Parameter(linear.bias.data, requires_grad=False)
    return layer.to("cpu")


def quantize_linears(module: torch.nn.Module, quant: str, compute: torch.dtype) -> int:
    """Every plain `nn.Linear` below `module` replaced by its quantized layer, in place; how many were."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, quantize_linear(child, quant, compute))
                count += 1
    return count


def _dequantized(cb: torch.Tensor, scb: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """LLM.int8's weight in `dtype`: the int8 rows times their absmax over 127 (bitsandbytes' own formula)."""
    return cb.to(dtype).mul_(scb.unsqueeze(1).mul(1.0 / 127.0))


class _FrozenInt8Matmul(torch.autograd.Function):
    """x @ W.T for a frozen LLM.int8 weight, with the input's gradient only: what bitsandbytes' `MatMul8bitFp`
    computes on the CPU, without its hold on the input. `MatMul8bitFp` keeps the input on `ctx.A`, outside
    autograd's saved tensors, where gradient checkpointing cannot drop it (and a frozen weight needs no input in
    the backward): every int8 layer's input stayed alive through the forward, about as many bytes as int8 saves
    on the 1B shape's weights at batch 4 x 512. This saves only the int8 weight and its row scales."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, cb: torch.Tensor, scb: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(cb, scb)
        return torch.nn.functional.linear(x, _dequantized(cb, scb, x.dtype), bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        cb, scb = ctx.saved_tensors
        return grad @ _dequantized(cb, scb, grad.dtype), None, None, None


def _frozen_int8_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    """An int8 layer's forward in training and evaluation alike: the dequantized weight's GEMM (`_FrozenInt8Matmul`),
    not bitsandbytes' int8 inference path, so an evaluation computes what training computes."""
    if self.weight.CB is not None:
        self.init_8bit_state()  # bitsandbytes moves the int8 rows and scales to the layer's state at first use
    bias = None if self.bias is None else self.bias.to(x.dtype)
    return _FrozenInt8Matmul.apply(x, self.state.CB, self.state.SCB, bias)


def keep_training_layout(model: torch.nn.Module) -> int:
    """Keep every quantized layer fit for training: a 4-bit layer in its training layout (an evaluation must not
    repack its weight into the layout that has no backward, see the module's docstring), an int8 layer on
    `_FrozenInt8Matmul`. Returns how many layers it set."""
    bnb = bitsandbytes()
    count = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            count += 1
        elif isinstance(module, bnb.nn.Linear8bitLt):
            module.forward = types.MethodType(_frozen_int8_forward, module)
            count += 1
    return count


def quantized_layers(model: torch.nn.Module) -> list[Any]:
    """The model's bitsandbytes linear layers."""
    bnb = bitsandbytes()
    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit | bnb.nn.Linear8bitLt)]


def stored_bytes(layer: Any) -> int:
    """Bytes a quantized layer holds: its packed weight and its scales (absmaxes, nested statistics, row scales)."""
    total = layer.weight.data.numel() * layer.weight.data.element_size()
    state = getattr(layer.weight, "quant_state", None)
    if state is not None:  # 4-bit: the absmaxes, and with double quantization their own state
        for tensor in (state.absmax, getattr(getattr(state, "state2", None), "absmax", None)):
            if tensor is not None:
                total += tensor.numel() * tensor.element_size()
    scales = getattr(layer.weight, "SCB", None)
    if scales is not None:
        total += scales.numel() * scales.element_size()
    return total


def describe(model: torch.nn.Module, quant: str) -> dict[str, Any]:
    """What the fingerprint records of a quantized base: library, version, format, layers, and bytes held."""
    from importlib.metadata import version

    rule = RULES[quant]
    layers = quantized_layers(model)
    weights = sum(layer.in_features * layer.out_features for layer in layers)
    held = sum(stored_bytes(layer) for layer in layers)
    packed = sum(layer.weight.numel() for layer in layers)
    return {"quant": quant, "library": rule.library, "version": version(rule.library), "format": rule.format,
            "layers": len(layers), "weights": weights, "stored_bytes": held,
            "bytes_per_weight": held / weights if weights else None, "packed_elements": packed}


def restore_adapters(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """The trainable (LoRA) weights back in `dtype`: trl casts them to bf16 when it sees a quantized model, where
    xeonft keeps them (and AdamW's moments) as the precision says. Returns how many it cast."""
    count = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != dtype:
            param.data = param.data.to(dtype)
            count += 1
    return count

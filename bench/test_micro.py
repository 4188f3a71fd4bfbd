"""Microbenchmarks (pytest-benchmark): GEMM per dtype, one LoRA training step per precision, the attention of one
packed row (masked sdpa vs per-document varlen vs loop-free docbatch), compiled decoder layers per attention and
checkpointing, and the LM head with the loss (trl's tiles vs the fused chunks).

    .venv/bin/python -m pytest bench/ --benchmark-only --benchmark-autosave        # record
    .venv/bin/python -m pytest bench/ --benchmark-only --benchmark-compare         # against the last record

Compare runs made on the same machine, idle; read ratios, not absolute times. A quick check that every benchmark
still runs, timing nothing: `.venv/bin/python -m pytest bench/test_micro.py --benchmark-disable -x -q`.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from harness.cell.models import SHAPES, synthetic_model
from harness.cell.recipe import AUTOCAST, lora_config, model_dtype
from harness.config import load_config

pytestmark = pytest.mark.benchmark(min_rounds=3, warmup=True)


def _per_second(benchmark: Any, key: str, work: float, stat: str = "mean") -> None:
    """Record `work` (FLOPs, tokens) per second of the rounds' `stat` time in extra_info. Under
    --benchmark-disable each test runs its function once and nothing is timed (benchmark.stats is None): the quick
    check that every benchmark still runs records nothing."""
    if benchmark.stats is not None:
        benchmark.extra_info[key] = work / getattr(benchmark.stats.stats, stat)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_gemm_1024(benchmark, dtype):
    a, b = torch.randn(1024, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
    benchmark(torch.mm, a, b)
    _per_second(benchmark, "tflops", 2 * 1024**3 / 1e12, stat="min")


class _Vocab:
    """Just enough of a tokenizer for synthetic_model."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 2

    def __len__(self) -> int:
        return SHAPES["smollm2-135m"]["vocab_size"]


@pytest.mark.parametrize("precision", ["fp32", "bf16-autocast", "bf16", "bf16-mixed"])
def test_lora_step_smollm2_shape(benchmark, precision):
    """One forward + backward + AdamW step of LoRA on the SmolLM2-135M shape, 1 x 256 tokens."""
    from peft import get_peft_model

    cfg = load_config(precision=precision)
    model = get_peft_model(synthetic_model("smollm2-135m", _Vocab(), model_dtype(cfg)), lora_config(cfg))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, 49152, (1, 256))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision in AUTOCAST):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()

    benchmark.pedantic(step, rounds=3, warmup_rounds=1)
    _per_second(benchmark, "tokens_per_s", 256)


LENGTHS = [90, 240, 130, 310, 60, 200, 170, 280, 110, 150, 190, 118]  # 12 documents, 2048 tokens: batch 4 x 512


def _packed_row() -> tuple[torch.Tensor, torch.Tensor]:
    """The packed row's positions (each document from 0) and its document boundaries, as trl's collator gives them."""
    lengths = torch.tensor(LENGTHS)
    pos = torch.cat([torch.arange(int(n)) for n in lengths])[None]
    return pos, torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)]).to(torch.int32)


@pytest.mark.parametrize("implementation", ["sdpa", "varlen", "docbatch"])
def test_packed_row_attention(benchmark, implementation):
    """Forward + backward of one SmolLM2-135M-shaped attention layer over a packed row of 2048 tokens holding 12
    documents, as trl's padding-free batch 4 x 512 gives it, eager: sdpa computes the whole row under a block mask,
    varlen each document alone, docbatch the documents padded to the longest in one batch."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaAttention, LlamaRotaryEmbedding

    from harness.cell.attention import use_attention

    shape = SHAPES["smollm2-135m"]
    config = LlamaConfig(**{**shape, "vocab_size": 100}, max_position_embeddings=4096)
    use_attention(type("M", (), {"config": config})(), implementation)
    layer = LlamaAttention(config, layer_idx=0).to(torch.bfloat16)
    layer.requires_grad_(False)
    pos, cu = _packed_row()
    mask = None
    if implementation == "sdpa":
        doc = torch.repeat_interleave(torch.arange(len(LENGTHS)), torch.tensor(LENGTHS))
        mask = ((doc[:, None] == doc[None, :]) & torch.ones(2048, 2048, dtype=torch.bool).tril())[None, None]
    x = torch.randn(1, 2048, shape["hidden_size"], dtype=torch.bfloat16, requires_grad=True)
    cos_sin = LlamaRotaryEmbedding(config)(x, pos)

    def step() -> None:
        out, _ = layer(x, position_embeddings=cos_sin, attention_mask=mask, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                       max_length_q=max(LENGTHS), max_length_k=max(LENGTHS))
        out.sum().backward()

    benchmark.pedantic(step, rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("checkpointing", ["none", "selective"])
@pytest.mark.parametrize("implementation", ["varlen", "docbatch"])
def test_compiled_decoder_layers(benchmark, implementation, checkpointing):
    """Forward + backward of two Llama-3.2-1B-shaped decoder layers, bf16, each compiled as the fast preset does
    (`compile-layers`), over the packed row above: varlen's loop runs eagerly between two graphs per layer, docbatch
    compiles whole; selective checkpointing recomputes the element-wise ops in the backward pass. extra_info has the
    graph breaks and the transient memory of one call (what the backward pass kept, mostly)."""
    from torch._dynamo.utils import counters
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

    from harness.cell.attention import use_attention
    from harness.cell.checkpointing import use_selective_checkpointing
    from harness.cell.recipe import compile_layers

    config = LlamaConfig(**{**SHAPES["llama-3.2-1b"], "vocab_size": 100}, max_position_embeddings=4096)
    use_attention(type("M", (), {"config": config})(), implementation)
    torch.manual_seed(0)
    stack = torch.nn.Module()  # what the cell wraps and compiles: a ModuleList named layers
    stack.layers = torch.nn.ModuleList(
        LlamaDecoderLayer(config, layer_idx=i).to(torch.bfloat16).requires_grad_(False) for i in range(2))
    layers = list(stack.layers)
    torch._dynamo.reset()
    counters.clear()
    for layer in layers:
        layer.self_attn.q_proj.weight.requires_grad_(True)  # a trainable weight in each layer, as LoRA's would be
    if checkpointing == "selective":
        use_selective_checkpointing(stack)
    compile_layers(stack)
    pos, cu = _packed_row()
    x = torch.randn(1, 2048, config.hidden_size, dtype=torch.bfloat16, requires_grad=True)
    cos_sin = LlamaRotaryEmbedding(config)(x, pos)

    def step() -> None:
        h = x
        for layer in layers:
            h = layer(h, position_embeddings=cos_sin, attention_mask=None, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                      max_length_q=max(LENGTHS), max_length_k=max(LENGTHS))
        h.float().pow(2).mean().backward()

    step()  # compile outside the measured rounds
    benchmark.extra_info["graph_breaks"] = sum(counters["graph_break"].values())
    benchmark.extra_info["transient_bytes"] = _peak_rss_above(step)
    benchmark.pedantic(step, rounds=3, warmup_rounds=1)
    _per_second(benchmark, "tokens_per_s", 2048)
    torch._dynamo.reset()


def _peak_rss_above(fn: object) -> int:
    """Bytes the process's peak RSS rose above its RSS before `fn` ran (VmHWM reset through clear_refs, after glibc
    hands its free pages back): the transient memory of one call, as the kernel counted it."""
    import ctypes

    import psutil

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # else memory freed by earlier calls hides this one's
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return -1
    before = psutil.Process().memory_info().rss
    fn()  # type: ignore[operator]
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    return hwm - before


@pytest.mark.parametrize("implementation", ["trl", "fused"])
@pytest.mark.parametrize("shape", ["smollm2-135m", "llama-3.2-1b"])
def test_lm_head_and_loss(benchmark, implementation, shape):
    """Forward + backward of the LM head and the loss over 2,048 tokens (batch 4 x 512), bf16 weights, as SFTTrainer
    computes them: trl's tiled log-probabilities against harness/cell/head.py's fused chunks. extra_info has the
    transient memory of one call (peak RSS above the RSS before it)."""
    from trl.kernels import ChunkedLogProbFunction

    from harness.cell.head import FusedLogProb

    fn = {"trl": ChunkedLogProbFunction, "fused": FusedLogProb}[implementation]
    hidden, vocab = SHAPES[shape]["hidden_size"], SHAPES[shape]["vocab_size"]
    torch.manual_seed(0)
    weight = (torch.randn(vocab, hidden) * hidden**-0.5).to(torch.bfloat16)
    x = torch.randn(2048, hidden, dtype=torch.bfloat16, requires_grad=True)
    targets = torch.randint(0, vocab, (2048,))

    def step() -> None:
        x.grad = None
        logp, *_ = fn.apply(x, weight, None, targets, 1.0, 32768, None, 1.0, ("entropy", "is_top1"))
        (-logp.mean()).backward()

    step()  # compile (fused) outside the measured rounds
    benchmark.extra_info["transient_bytes"] = _peak_rss_above(step)
    benchmark.pedantic(step, rounds=3, warmup_rounds=1)
    _per_second(benchmark, "tokens_per_s", 2048)


def _frozen_linear(quant: str, out_features: int, in_features: int) -> Any:
    """A frozen linear of the given shape with bf16 compute: dense bf16, or its weight held by bitsandbytes
    (harness.cell.quant, as a quantized cell holds it) or by torchao's NF4Tensor (a measured alternative, when
    torchao is installed; xeonft does not depend on it)."""
    torch.manual_seed(0)
    dense = torch.nn.Linear(in_features, out_features, bias=False, dtype=torch.bfloat16).requires_grad_(False)
    if quant == "bf16":
        return dense
    if quant == "torchao-nf4":
        to_nf4 = pytest.importorskip("torchao.quantization").to_nf4
        weight = to_nf4(dense.weight.data)
        return lambda x: torch.nn.functional.linear(x, weight)
    from harness.cell.quant import keep_training_layout, quantize_linear

    layer = quantize_linear(dense, quant, torch.bfloat16)
    keep_training_layout(layer)
    return layer


@pytest.mark.parametrize("quant", ["bf16", "nf4", "int8", "torchao-nf4"])
@pytest.mark.parametrize("shape", [(2048, 2048), (8192, 2048), (14336, 4096)], ids=["1b-qo", "1b-up", "8b-up"])
def test_frozen_linear_forward_backward(benchmark, quant, shape):
    """A frozen base linear's forward and its input-gradient backward (the only backward a frozen base has), 2,048
    bf16 tokens: what a quantized base's dequantization costs against the dense GEMMs (1B shape's q/o and up
    projections, 8B's up projection). extra_info has the TFLOP/s of the two GEMMs and the transient memory."""
    layer = _frozen_linear(quant, *shape)
    x = torch.randn(2048, shape[1], dtype=torch.bfloat16, requires_grad=True)

    def step() -> None:
        x.grad = None
        layer(x).float().sum().backward()

    step()
    benchmark.extra_info["transient_bytes"] = _peak_rss_above(step)
    benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    _per_second(benchmark, "tflops", 2 * 2 * 2048 * shape[0] * shape[1] / 1e12, stat="median")

"""Microbenchmarks (pytest-benchmark): GEMM per dtype and one LoRA training step per precision.

    .venv/bin/python -m pytest bench/ --benchmark-only --benchmark-autosave        # record
    .venv/bin/python -m pytest bench/ --benchmark-only --benchmark-compare         # against the last record

Compare runs made on the same machine, idle; read ratios, not absolute times.
"""

from __future__ import annotations

import pytest
import torch

from harness.config import load_config
from harness.models import SHAPES, synthetic_model
from harness.recipe import lora_config, model_dtype

pytestmark = pytest.mark.benchmark(min_rounds=3, warmup=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_gemm_1024(benchmark, dtype):
    a, b = torch.randn(1024, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
    benchmark(torch.mm, a, b)
    benchmark.extra_info["tflops"] = 2 * 1024**3 / benchmark.stats.stats.min / 1e12


class _Vocab:
    """Just enough of a tokenizer for synthetic_model."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 2

    def __len__(self) -> int:
        return SHAPES["smollm2-135m"]["vocab_size"]


@pytest.mark.parametrize("precision", ["fp32", "bf16-autocast", "bf16"])
def test_lora_step_smollm2_shape(benchmark, precision):
    """One forward + backward + AdamW step of LoRA on the SmolLM2-135M shape, 1 x 256 tokens."""
    from peft import get_peft_model

    cfg = load_config(precision=precision)
    model = get_peft_model(synthetic_model("smollm2-135m", _Vocab(), model_dtype(cfg)), lora_config(cfg))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, 49152, (1, 256))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-autocast"):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()

    benchmark.pedantic(step, rounds=3, warmup_rounds=1)
    benchmark.extra_info["tokens_per_s"] = 256 / benchmark.stats.stats.mean

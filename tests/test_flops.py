"""Model FLOPs of LoRA training, checked against the real model's own layers."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model

from harness.config import load_config
from harness.measure.flops import cell_efficiency, per_token_flops
from harness.cell.models import resolve_model
from harness.cell.recipe import lora_config


@pytest.fixture(scope="module")
def tiny(tokenizer_dir):
    return resolve_model("synthetic:tiny", torch.float32, tokenizer=str(tokenizer_dir))


def test_linear_and_lora_weights_match_the_real_model(tiny):
    model = tiny.model
    n_lin = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    peft_model = get_peft_model(model, lora_config(load_config(lora_r=8)))
    n_lora = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    no_attention = per_token_flops(tiny.info, 8, mean_document_tokens=0)
    assert no_attention == 4 * n_lin + 6 * n_lora


def test_attention_grows_with_the_documents_length(tiny):
    short, long = per_token_flops(tiny.info, 8, 100), per_token_flops(tiny.info, 8, 200)
    base = per_token_flops(tiny.info, 8, 0)
    assert long - base == pytest.approx(2 * (short - base))


def test_mfu_is_model_flops_per_second_over_the_peak_of_the_cells_dtype(tiny):
    record = {"spec": {"config": {"precision": "bf16-autocast", "lora_r": 8}},
              "result": {"model": tiny.info, "summary": {"tokens_per_second": 1000.0, "measured_tokens": 4000,
                                                         "measured_sequences": 20}}}
    eff = cell_efficiency(record, {"bf16": 2.0, "fp32": 0.5})
    assert eff["tflops"] == pytest.approx(per_token_flops(tiny.info, 8, 200) * 1000 / 1e12)
    assert eff["mfu"] == pytest.approx(eff["tflops"] / 2.0)
    assert cell_efficiency(record, None)["mfu"] is None


def test_peak_cli_times_a_model_shapes_gemms_and_refuses_unknown_shapes(capsys):
    from harness.cli import main

    assert main(["peak", "--size", "128", "--shape", "smollm2-135m", "--tokens", "32"]) == 0
    out = capsys.readouterr().out
    assert "square 128" in out and "smollm2-135m lm_head" in out and "32x576x49152" in out
    assert main(["peak", "--shape", "gpt-9"]) == 2
    assert "unknown shape 'gpt-9'" in capsys.readouterr().err

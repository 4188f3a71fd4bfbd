"""Model FLOPs of LoRA training, checked against the real model's own layers; what each precision means, read by
the recipe, the MFU and the sizing's memory breakdown alike."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model

from harness.analysis.efficiency import cell_efficiency
from harness.cell.models import resolve_model
from harness.cell.recipe import lora_config
from harness.config import load_config
from harness.config.finetune import FinetuneConfig
from harness.config.precision import RULES, precision_rule, torch_dtype
from harness.config.spec import CellSpec, LaunchSettings
from harness.measure.flops import lora_parameters, mean_context, per_token_flops
from harness.results.records import CellRecord


@pytest.fixture(scope="module")
def tiny(tokenizer_dir):
    return resolve_model("synthetic:tiny", torch.float32, tokenizer=str(tokenizer_dir))


def test_linear_and_lora_weights_match_the_real_model(tiny):
    model = tiny.model
    n_lin = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    peft_model = get_peft_model(model, lora_config(load_config(lora_r=8)))
    n_lora = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    no_attention = per_token_flops(tiny.info, 8, mean_context=0)
    assert no_attention == 4 * n_lin + 6 * n_lora
    # adapters on the attention projections only: the real model's adapter count again
    fresh = resolve_model("synthetic:tiny", torch.float32, tokenizer=tiny.tokenizer.name_or_path).model
    attention = ["q_proj", "k_proj", "v_proj", "o_proj"]
    attn_only = get_peft_model(fresh, lora_config(load_config(lora_r=8, lora_target_modules=attention)))
    n_attn = sum(p.numel() for n, p in attn_only.named_parameters() if "lora_" in n)
    assert per_token_flops(tiny.info, 8, 0, attention) == 4 * n_lin + 6 * n_attn
    # the one LoRA count, which the FLOPs and the sizing's memory breakdown both use, is peft's
    assert lora_parameters(tiny.info, 8) == n_lora and lora_parameters(tiny.info, 8, attention) == n_attn


def test_attention_grows_with_the_context(tiny):
    short, long = per_token_flops(tiny.info, 8, 50), per_token_flops(tiny.info, 8, 100)
    base = per_token_flops(tiny.info, 8, 0)
    assert long - base == pytest.approx(2 * (short - base))


def test_packed_documents_attend_within_themselves():
    # documents of 100 and 300 tokens: mean context (100^2 + 300^2) / (2 * 400) = 125, not 400 / 2 / 2 = 100
    assert mean_context({"measured_tokens": 400, "measured_sequences": 2, "measured_doc_sq": 100**2 + 300**2}) == 125
    assert mean_context({"measured_tokens": 400, "measured_sequences": 2}) == 100  # older records: equal lengths


def _record(info, peak=None, **config):
    return CellRecord.model_validate({
        "key": "k", "status": "ok", "peak": peak,
        "spec": CellSpec(config=FinetuneConfig(**{"precision": "bf16-autocast", "lora_r": 8, **config}),
                         launch=LaunchSettings(), warmup_steps=1, measured_steps=4),
        "result": {"model": info, "summary": {"tokens_per_second": 1000.0, "measured_tokens": 4000,
                                              "measured_sequences": 20}}})


def test_mfu_is_model_flops_per_second_over_the_peak_of_the_cells_dtype(tiny):
    record = _record(tiny.info)
    eff = cell_efficiency(record, {"bf16": 2.0, "fp32": 0.5})
    assert eff["tflops"] == pytest.approx(per_token_flops(tiny.info, 8, 100) * 1000 / 1e12)
    assert eff["mfu"] == pytest.approx(eff["tflops"] / 2.0)
    assert cell_efficiency(record, None)["mfu"] is None
    # a cell's own peak (measured at its core count) wins over the sweep's
    assert cell_efficiency(_record(tiny.info, peak={"bf16": 1.0}), {"bf16": 2.0})["mfu"] == pytest.approx(eff["tflops"])


def test_hardware_flops_add_checkpoint_recomputation(tiny):
    plain = cell_efficiency(_record(tiny.info, gradient_checkpointing=False, attn_implementation="varlen"),
                            {"bf16": 2.0})
    ckpt = cell_efficiency(_record(tiny.info, gradient_checkpointing=True, attn_implementation="varlen"),
                           {"bf16": 2.0})
    assert plain["hfu"] == pytest.approx(plain["mfu"]) and ckpt["mfu"] == pytest.approx(plain["mfu"])
    assert ckpt["hfu"] > 1.3 * ckpt["mfu"]


def test_an_architecture_the_formula_does_not_know_gets_no_mfu(tiny):
    other = {**tiny.info, "architecture": "GPT2LMHeadModel"}
    assert per_token_flops(other, 8, 100) is None
    assert cell_efficiency(_record(other), {"bf16": 2.0}) == {"tflops": None, "mfu": None, "hfu": None}


def test_peak_cli_times_a_model_shapes_gemms_and_refuses_unknown_shapes(capsys):
    from harness.cli import main

    assert main(["peak", "--size", "128", "--shape", "smollm2-135m", "--tokens", "32"]) == 0
    out = capsys.readouterr().out
    assert "square 128" in out and "smollm2-135m lm_head" in out and "32x576x49152" in out
    assert main(["peak", "--shape", "gpt-9"]) == 2
    assert "unknown shape 'gpt-9'" in capsys.readouterr().err


# What each precision meant when four modules spelled it out (recipe.py, fit.py, efficiency.py and the config's
# comment): (weights, autocast, the GEMMs' dtype, bytes of a kept activation)
MEANINGS = {"fp32": ("fp32", False, "fp32", 4), "bf16-autocast": ("fp32", True, "bf16", 2),
            "bf16": ("bf16", False, "bf16", 2), "bf16-mixed": ("bf16", True, "bf16", 2)}


def test_every_precision_has_one_meaning_and_the_recipe_follows_it(tmp_path):
    from harness.cell.recipe import compute_dtype, model_dtype, sft_config
    from harness.config import PRECISIONS

    assert set(RULES) == set(PRECISIONS) == set(MEANINGS)
    for name, (weights, autocast, gemm, act_bytes) in MEANINGS.items():
        rule = precision_rule(name)
        assert (rule.weights, rule.autocast, rule.gemm, rule.activation_bytes) == (weights, autocast, gemm, act_bytes)
        assert rule.adapters == "fp32" and rule.adapter_bytes == 16  # weight, gradient and AdamW's two moments
        cfg = load_config(precision=name)
        assert model_dtype(cfg) == torch_dtype(weights) and compute_dtype(cfg) == torch_dtype(gemm)
        assert sft_config(cfg, tmp_path, has_eval=False).bf16 is autocast
    with pytest.raises(Exception, match="unknown precision 'fp8'"):
        precision_rule("fp8")


@pytest.mark.parametrize("precision", list(MEANINGS))
def test_mfu_is_against_the_peak_of_the_precisions_gemm_dtype(tiny, precision):
    eff = cell_efficiency(_record(tiny.info, precision=precision), {"bf16": 2.0, "fp32": 0.5})
    assert eff["mfu"] == pytest.approx(eff["tflops"] / {"bf16": 2.0, "fp32": 0.5}[MEANINGS[precision][2]])

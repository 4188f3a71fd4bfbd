"""The recipe end to end on a tiny synthetic Llama and the rows the tests wrote."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from peft import get_peft_model

from harness.base.errors import XeonftError
from harness.cell.models import resolve_model
from harness.cell.recipe import lora_config, model_dtype
from harness.config import load_config
from harness.finetune import load_tuned, run_finetune, save_adapter, save_initial_adapter


def tiny_config(rows_file, tokenizer_dir, **changes):
    values = dict(model="synthetic:tiny", tokenizer=str(tokenizer_dir), dataset=str(rows_file), eval_size=4,
                  batch_size=2, seq_len=64, max_steps=12, num_train_epochs=4, warmup_steps=0, eval_steps=4,
                  learning_rate=3e-3, lora_r=8, precision="fp32", max_new_tokens=6, threads=1)
    values.update(changes)
    return load_config(**values)


@pytest.fixture(scope="module")
def tiny_run(rows_file, tokenizer_dir, tmp_path_factory):
    cfg = tiny_config(rows_file, tokenizer_dir)
    out = tmp_path_factory.mktemp("runs") / "tiny"
    return cfg, out, run_finetune(cfg, out=out)


def test_a_few_steps_lower_the_loss(tiny_run):
    _, out, summary = tiny_run
    log = pd.read_csv(out / "log.csv")
    train = log.dropna(subset=["loss"])["loss"].tolist()
    assert len(train) == 12
    assert sum(train[-3:]) / 3 < train[0] - 0.1
    assert summary["eval_loss_last"] < summary["eval_loss_first"]


def test_the_run_folder_holds_every_artifact(tiny_run):
    cfg, out, summary = tiny_run
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_config(out / "config.yaml") == cfg
    gens = json.loads((out / "generations.json").read_text())
    assert [g["prompt"] for g in gens["base"]] == [g["prompt"] for g in gens["tuned"]] == list(cfg.prompts)
    assert all(0 < g["new_tokens"] <= cfg.max_new_tokens for g in gens["base"] + gens["tuned"])
    assert "## Prompt: List a fun fact about the sun!" in (out / "generations.md").read_text()
    assert json.loads((out / "summary.json").read_text()) == summary


def test_tokens_per_second_is_counted_tokens_over_measured_step_time(tiny_run):
    _, out, summary = tiny_run
    steps = json.loads((out / "steps.json").read_text())["steps"]
    measured = steps[summary["throughput"]["warmup_steps"]:]
    tokens = sum(s["tokens"] for s in measured)
    assert all(0 < s["tokens"] <= 2 * 64 for s in steps)  # batch 2 packed rows of at most seq_len tokens
    assert all(s["seconds"] == pytest.approx(s["compute_seconds"] + s["data_seconds"]) for s in steps)
    assert summary["throughput"]["tokens_per_second"] == pytest.approx(tokens / sum(s["seconds"] for s in measured))
    # the batches' count agrees with trl's own non-padding token count
    assert summary["throughput"]["tokens_all_steps"] == summary["throughput"]["trl_num_tokens"]


def test_a_used_output_folder_is_refused(tiny_run):
    cfg, out, _ = tiny_run
    with pytest.raises(XeonftError, match="already exists and is not empty"):
        run_finetune(cfg, out=out)


@pytest.mark.parametrize("init", ["olora", "default"])
def test_saved_adapter_reloads_onto_a_fresh_base_to_the_same_logits(rows_file, tokenizer_dir, tmp_path, init):
    cfg = tiny_config(rows_file, tokenizer_dir, lora_init=init)
    loaded = resolve_model(cfg.model, model_dtype(cfg), cfg.tokenizer, seed=cfg.seed)
    peft_model = get_peft_model(loaded.model, lora_config(cfg))
    save_initial_adapter(peft_model, cfg, tmp_path)
    torch.manual_seed(0)
    with torch.no_grad():  # stands in for training: move every adapter weight
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.add_(0.05 * torch.randn_like(p))
    ids = loaded.tokenizer("The sun is a star.", return_tensors="pt")["input_ids"]
    peft_model.eval()
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
    adapter = save_adapter(peft_model, cfg, tmp_path)
    saved = json.loads((adapter / "adapter_config.json").read_text())
    # a plain LoRA adapter: applies to the original weights, without peft re-running OLoRA's init at load
    assert saved["init_lora_weights"] is True
    assert saved["r"] == (2 * cfg.lora_r if init == "olora" else cfg.lora_r)
    merged, _ = load_tuned(cfg, adapter)
    with torch.no_grad():
        got = merged(input_ids=ids).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    base = resolve_model(cfg.model, model_dtype(cfg), cfg.tokenizer, seed=cfg.seed).model
    with torch.no_grad():
        assert not torch.allclose(base(input_ids=ids).logits, expected, atol=1e-3)

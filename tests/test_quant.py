"""A quantized frozen base (quant: int8 / nf4) on a tiny synthetic Llama: what trains, what an evaluation must not
break, what the saved adapter applies to, and what is refused."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from peft import get_peft_model

from harness.base.errors import XeonftError
from harness.cell.quant import bitsandbytes, keep_training_layout, quantized_layers
from harness.cell.recipe import load_base, lora_config
from harness.config.quant import quant_rule
from harness.finetune import load_tuned, run_finetune, save_adapter
from tests.test_finetune import tiny_config as finetune_config

bnb = bitsandbytes()


def tiny_config(rows_file, tokenizer_dir, **changes):
    """test_finetune's tiny run, with an nf4 base under bf16-mixed and peft's plain init (no OLoRA QR)."""
    return finetune_config(rows_file, tokenizer_dir, **{"precision": "bf16-mixed", "quant": "nf4",
                                                        "max_new_tokens": 4, "lora_init": "default", **changes})


@pytest.fixture(scope="module")
def nf4_run(rows_file, tokenizer_dir, tmp_path_factory):
    cfg = tiny_config(rows_file, tokenizer_dir)
    out = tmp_path_factory.mktemp("runs") / "nf4"
    return cfg, out, run_finetune(cfg, out=out)


def test_an_nf4_base_trains_its_adapters_and_the_loss_falls_through_evaluations(nf4_run):
    _, out, summary = nf4_run
    train = pd.read_csv(out / "log.csv").dropna(subset=["loss"])["loss"].tolist()
    assert len(train) == 12
    assert sum(train[-3:]) / 3 < train[0] - 0.1  # evaluations at steps 4 and 8 came between
    assert summary["eval_loss_last"] < summary["eval_loss_first"]
    quant = summary["model"]["quant"]
    assert (quant["quant"], quant["library"], quant["layers"]) == ("nf4", "bitsandbytes", 2 * 7)
    assert quant["version"] == bnb.__version__


def test_the_model_counts_its_weights_and_the_bytes_the_format_holds(rows_file, tokenizer_dir):
    dense = load_base(tiny_config(rows_file, tokenizer_dir, quant="none"))
    for quant in ("nf4", "int8"):
        loaded = load_base(tiny_config(rows_file, tokenizer_dir, quant=quant))
        assert loaded.info["parameters"] == dense.info["parameters"]  # the model's, not the packed storage's
        q = loaded.info["quant"]
        shapes = ((64, 64), (64, 32), (64, 32), (64, 64), (64, 128), (64, 128), (128, 64))  # q k v o gate up down
        assert q["weights"] == 2 * sum(i * o for i, o in shapes)
        if quant == "int8":  # a byte a weight and an fp32 scale per output row, which the rule leaves out
            scales = 2 * 4 * sum(o for _, o in shapes)
            assert q["stored_bytes"] == q["weights"] * quant_rule(quant).weight_bytes + scales
        else:
            assert q["bytes_per_weight"] == pytest.approx(quant_rule(quant).weight_bytes, rel=0.02)
        # embeddings, norms and the LM head stay as the precision stores them
        assert loaded.model.lm_head.weight.dtype == loaded.model.model.embed_tokens.weight.dtype == torch.bfloat16


def _gradients(model, ids, evaluate_between: bool) -> dict[str, torch.Tensor]:
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    model.zero_grad()
    if evaluate_between:
        model.eval()
        with torch.no_grad():
            model(input_ids=ids[:1], labels=ids[:1])
        model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _lora_model(cfg):
    loaded = load_base(cfg)
    torch.manual_seed(1)
    return get_peft_model(loaded.model, lora_config(cfg)), loaded.tokenizer


@pytest.mark.parametrize("quant", ["nf4", "int8"])
def test_gradients_reach_the_adapters_only_and_survive_an_evaluation(rows_file, tokenizer_dir, quant):
    cfg = tiny_config(rows_file, tokenizer_dir, quant=quant, lora_init="gaussian")
    ids = torch.randint(0, 200, (2, 24), generator=torch.Generator().manual_seed(0))
    plain, _ = _lora_model(cfg)
    evaluated, _ = _lora_model(cfg)
    without, with_eval = _gradients(plain, ids, False), _gradients(evaluated, ids, True)
    assert all(".lora_A." in name or ".lora_B." in name for name in without)  # nothing but the adapters trains
    assert all(g.abs().sum() > 0 for n, g in with_eval.items() if ".lora_B." in n)  # B starts at 0: A's are 0
    for name, grad in without.items():
        torch.testing.assert_close(with_eval[name], grad, rtol=0, atol=0)
    assert all(not p.requires_grad for layer in quantized_layers(evaluated) for p in layer.parameters())


@pytest.mark.skipif(not bnb.functional.has_avx512bf16(), reason="the repacking happens only on AVX-512 BF16 CPUs")
def test_without_the_guard_an_evaluation_would_cut_the_gradient(rows_file, tokenizer_dir):
    """What `keep_training_layout` prevents, shown on this CPU: bitsandbytes' own inference repacking."""
    cfg = tiny_config(rows_file, tokenizer_dir, lora_init="gaussian")
    ids = torch.randint(0, 200, (2, 24), generator=torch.Generator().manual_seed(0))
    plain, _ = _lora_model(cfg)
    unguarded, _ = _lora_model(cfg)
    for layer in quantized_layers(unguarded):
        layer.support_avx512bf16_for_cpu = True
    without = _gradients(plain, ids, False)
    with pytest.warns(UserWarning, match="autograd kernel was not registered"):
        cut = _gradients(unguarded, ids, True)
    assert any(not torch.equal(cut[name], grad) for name, grad in without.items())
    assert keep_training_layout(unguarded) == 2 * 7


def test_the_adapter_trained_over_a_quantized_base_applies_to_the_dense_base(rows_file, tokenizer_dir, tmp_path):
    cfg = tiny_config(rows_file, tokenizer_dir)
    peft_model, tokenizer = _lora_model(cfg)
    torch.manual_seed(0)
    with torch.no_grad():  # stands in for training: move every adapter weight
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.add_(0.05 * torch.randn_like(p))
    trained = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" in n}
    adapter = save_adapter(peft_model, cfg, tmp_path)
    merged, _ = load_tuned(cfg, adapter)
    assert not quantized_layers(merged)
    # the same adapter weights over the dense base of the same seed, by hand
    dense = get_peft_model(load_base(cfg, quantized=False).model, lora_config(cfg))
    with torch.no_grad():
        for name, p in dense.named_parameters():
            if name in trained:
                p.copy_(trained[name])
    ids = tokenizer("The sun is a star.", return_tensors="pt")["input_ids"]
    dense.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, dense(input_ids=ids).logits, atol=2e-2, rtol=2e-2)
        quantized = peft_model.eval()(input_ids=ids).logits
        assert not torch.allclose(quantized, dense(input_ids=ids).logits, atol=1e-4)  # nf4 is not the dense base


@pytest.mark.parametrize(("changes", "message"), [
    ({"backend": "compile-layers"}, "quant nf4 does not combine with backend compile-layers"),
    ({"backend": "ipex"}, "quant nf4 does not combine with backend ipex"),
    ({"lora_init": "pissa"}, "quant nf4 does not combine with lora_init pissa"),
    ({"quant": "nf8"}, "quant: Input should be 'none', 'int8', 'nf4' or 'fp4'"),
])
def test_what_a_quantized_base_does_not_combine_with_is_refused_in_one_line(rows_file, tokenizer_dir, changes,
                                                                             message):
    with pytest.raises(XeonftError, match=message) as err:
        tiny_config(rows_file, tokenizer_dir, **changes)
    assert "\n" not in str(err.value)


def _int8_layer():
    from harness.cell.quant import quantize_linear

    torch.manual_seed(0)
    dense = torch.nn.Linear(64, 96, bias=False, dtype=torch.bfloat16).requires_grad_(False)
    return quantize_linear(dense, "int8", torch.bfloat16)


def test_an_int8_layer_computes_what_bitsandbytes_computes_in_training():
    ours, theirs = _int8_layer(), _int8_layer()
    keep_training_layout(ours)
    x = torch.randn(3, 5, 64, dtype=torch.bfloat16)
    grads = []
    for layer in (ours, theirs):
        layer.train()
        xi = x.clone().requires_grad_(True)
        out = layer(xi)
        out.float().square().sum().backward()
        grads.append((out.detach(), xi.grad))
    (out_a, grad_a), (out_b, grad_b) = grads
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)
    torch.testing.assert_close(grad_a, grad_b, rtol=1.6e-2, atol=1e-2)  # one bf16 GEMM, blocked differently


def test_under_checkpointing_an_int8_layer_keeps_no_input_alive():
    """bitsandbytes' MatMul8bitFp holds its input on ctx, where checkpointing cannot drop it; xeonft's does not."""
    import gc
    import weakref

    from torch.utils.checkpoint import checkpoint

    def alive_after_forward(layer) -> bool:
        held: list[weakref.ref] = []

        def block(t):
            inner = t * 2  # what the layer gets: freed after the forward unless someone holds it
            held.append(weakref.ref(inner))
            return layer(inner)

        x = torch.randn(4, 64, dtype=torch.bfloat16, requires_grad=True)
        out = checkpoint(block, x, use_reentrant=False)
        gc.collect()
        alive = held[0]() is not None
        out.float().sum().backward()  # the recomputation still gives the input its gradient
        assert x.grad is not None and x.grad.abs().sum() > 0
        return alive

    theirs, ours = _int8_layer().train(), _int8_layer().train()
    keep_training_layout(ours)
    assert alive_after_forward(theirs)
    assert not alive_after_forward(ours)


def test_a_local_checkpoint_is_quantized_as_transformers_loads_it(rows_file, tokenizer_dir, tmp_path):
    dense_cfg = tiny_config(rows_file, tokenizer_dir, quant="none")
    dense = load_base(dense_cfg)
    dense.model.save_pretrained(tmp_path / "model")
    dense.tokenizer.save_pretrained(tmp_path / "model")
    cfg = tiny_config(rows_file, tokenizer_dir, model=str(tmp_path / "model"), tokenizer=None, lora_init="gaussian")
    loaded = load_base(cfg)
    assert loaded.info["kind"] == "local" and loaded.info["quant"]["layers"] == 2 * 7
    assert all(isinstance(layer, bnb.nn.Linear4bit) for layer in quantized_layers(loaded.model))
    assert loaded.info["parameters"] == dense.info["parameters"]
    assert all(not layer.support_avx512bf16_for_cpu for layer in quantized_layers(loaded.model))  # the guard too
    ids = torch.randint(0, 200, (2, 24), generator=torch.Generator().manual_seed(0))
    peft_model = get_peft_model(loaded.model, lora_config(cfg))
    grads = _gradients(peft_model, ids, True)
    assert grads and all(g.abs().sum() > 0 for n, g in grads.items() if ".lora_B." in n)

"""The fused LM head (harness/cell/head.py) against trl's tiled one, which SFTTrainer uses by default: the same
log-probabilities, entropy, top-1 flags and gradients, on small real shapes, in fp32 and bf16, with the logit
transforms trl supports; and a real SFTTrainer step that calls it."""

from __future__ import annotations

import pytest
import torch

from harness.cell.head import CHUNK_BYTES, FusedLogProb, chunk_tokens, use_fused_head

trl_kernels = pytest.importorskip("trl.kernels")


def _run(fn, hidden, weight, targets, temperature=1.0, softcap=None, scale=1.0, entropy_weight=0.0):
    hidden = hidden.detach().clone().requires_grad_(True)
    weight = weight.detach().clone().requires_grad_(weight.requires_grad)
    logp, ent, _, _, top1 = fn.apply(hidden, weight, None, targets, temperature, 64, softcap, scale,
                                     ("entropy", "is_top1"))
    (-logp.sum() + entropy_weight * ent.sum()).backward()
    return logp.detach(), ent.detach(), top1, hidden.grad, weight.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("temperature", "softcap", "scale"), [(1.0, None, 1.0), (0.7, 30.0, 1.3)])
def test_fused_head_matches_trls(dtype, temperature, softcap, scale):
    torch.manual_seed(0)
    # 300 tokens over a vocabulary of 1,000: several token chunks of the fused head, several vocab tiles of trl's
    hidden = torch.randn(300, 64, dtype=dtype)
    weight = (torch.randn(1000, 64) * 0.1).to(dtype)
    targets = torch.randint(0, 1000, (300,))
    ref = _run(trl_kernels.ChunkedLogProbFunction, hidden, weight, targets, temperature, softcap, scale)
    got = _run(FusedLogProb, hidden, weight, targets, temperature, softcap, scale)
    assert torch.allclose(got[0], ref[0], atol=1e-4) and torch.allclose(got[1], ref[1], atol=1e-4)
    assert torch.equal(got[2], ref[2])
    # bf16: both round the hidden-state gradient to bf16 once; fp32: the same numbers
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    assert torch.allclose(got[3].float(), ref[3].float(), atol=tol, rtol=tol)
    assert got[3].abs().sum() > 0


def test_the_general_backward_gives_entropy_and_weight_gradients():
    """An entropy term in the loss, or a trainable head, takes the recomputing backward: still trl's numbers."""
    torch.manual_seed(1)
    hidden, weight = torch.randn(200, 32), (torch.randn(500, 32) * 0.1).requires_grad_()
    targets = torch.randint(0, 500, (200,))
    ref = _run(trl_kernels.ChunkedLogProbFunction, hidden, weight, targets, entropy_weight=0.3)
    got = _run(FusedLogProb, hidden, weight, targets, entropy_weight=0.3)
    assert torch.allclose(got[3], ref[3], atol=1e-5) and torch.allclose(got[4], ref[4], atol=1e-5)


def test_a_chunk_of_logits_stays_near_its_byte_budget():
    # the 1B shape's 128k vocabulary in bf16, SmolLM2's 49k, and a tiny vocabulary (capped at 4,096 tokens)
    for vocab, item in ((128256, 2), (49152, 2), (49152, 4)):
        n = chunk_tokens(vocab, item)
        assert n % 64 == 0 and n * vocab * item <= CHUNK_BYTES
    assert chunk_tokens(100, 2) == 4096


def test_use_fused_head_routes_trls_fused_forward(monkeypatch):
    """SFTTrainer's fused head looks the tile function up in trl.trainer.utils: after use_fused_head, a model
    patched by trl's add_fused_lm_head computes its loss through FusedLogProb, to the same value."""
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(2)
    model = AutoModelForCausalLM.from_config(config)
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    ids = torch.randint(0, 300, (2, 40))
    before = model(input_ids=ids, labels=ids, fused_lm_head=True).loss
    calls = []
    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", trl_utils._ChunkedLogProbFunction)
    use_fused_head()
    assert trl_utils._ChunkedLogProbFunction is FusedLogProb
    original = FusedLogProb.forward
    monkeypatch.setattr(FusedLogProb, "forward", staticmethod(lambda *a, **k: calls.append(1) or original(*a, **k)))
    after = model(input_ids=ids, labels=ids, fused_lm_head=True).loss
    assert calls and after.item() == pytest.approx(before.item(), rel=1e-5)
    # and the model's own unfused loss agrees
    assert model(input_ids=ids, labels=ids).loss.item() == pytest.approx(after.item(), rel=1e-4)


def test_a_trl_without_the_hook_makes_the_fused_head_unavailable(monkeypatch):
    import trl.trainer.utils as trl_utils

    from harness.base.errors import Unavailable

    monkeypatch.delattr(trl_utils, "_ChunkedLogProbFunction")
    with pytest.raises(Unavailable, match="lm_head fused needs trl's fused LM head"):
        use_fused_head()

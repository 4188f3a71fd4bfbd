"""Per-document attention (varlen, and docbatch loop-free) computes what the masked sdpa does on a packed row, and
nothing across rows; docbatch keeps a compiled decoder layer in one graph as the documents change."""

from __future__ import annotations

import itertools

import pytest
import torch

from harness.cell.attention import IMPLEMENTATIONS, use_attention


def _tiny_llama():
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.config.use_cache = False  # as in training (build_trainer): transformers detects packed rows only then
    return model


def _packed(lengths: list[int]) -> dict[str, torch.Tensor]:
    """One padding-free row as trl's collator builds it: documents back to back, positions restarting at 0."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 97, (1, sum(lengths)), generator=gen)
    pos = torch.cat([torch.arange(n) for n in lengths])[None]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    return {"input_ids": ids, "position_ids": pos, "labels": ids.clone(), "cu_seq_lens_q": cu, "cu_seq_lens_k": cu,
            "max_length_q": max(lengths), "max_length_k": max(lengths)}


@pytest.mark.parametrize("implementation", ["varlen", "docbatch"])
def test_per_document_attention_matches_masked_sdpa_in_loss_and_gradients(implementation):
    model = _tiny_llama()
    lengths = [7, 19, 3, 12]
    batch = _packed(lengths)
    with torch.no_grad():  # the truth: each document on its own
        starts = [0, *torch.tensor(lengths).cumsum(0).tolist()]
        alone = torch.cat([model(input_ids=batch["input_ids"][:, a:b]).logits
                           for a, b in itertools.pairwise(starts)], dim=1)
    out = model(**batch)
    torch.testing.assert_close(out.logits, alone, rtol=1e-4, atol=1e-5)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    use_attention(model, implementation)
    assert model.config._attn_implementation == IMPLEMENTATIONS[implementation]
    out2 = model(**batch)
    out2.loss.backward()
    torch.testing.assert_close(out2.logits, out.logits, rtol=1e-4, atol=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-3, atol=1e-6, msg=n)


@pytest.mark.parametrize("implementation", ["varlen", "docbatch"])
def test_per_document_attention_keeps_documents_apart(implementation):
    """Changing one document changes no other document's logits (the mask neither path builds); docbatch pads the
    short first document to the longest, and its padding reaches nothing either."""
    model = _tiny_llama()
    use_attention(model, implementation)
    batch = _packed([6, 10, 4])
    other = {**batch, "input_ids": batch["input_ids"].clone()}
    other["input_ids"][0, :6] = (other["input_ids"][0, :6] + 1) % 97
    with torch.no_grad():
        a, b = model(**batch).logits, model(**other).logits
    torch.testing.assert_close(a[0, 6:], b[0, 6:])
    assert not torch.allclose(a[0, :6], b[0, :6])


@pytest.mark.parametrize("implementation", ["varlen", "docbatch"])
def test_per_document_attention_without_boundaries_is_plain_causal_attention(implementation):
    model = _tiny_llama()
    ids = torch.randint(0, 97, (1, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        use_attention(model, implementation)
        got = model(input_ids=ids).logits
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_docbatch_compiles_a_layer_whole_as_the_documents_change():
    """A compiled decoder layer with docbatch, selective checkpointing inside it (as the lean preset in
    bench/matrices/presets runs it), traces once: no graph break, and no recompile when the next rows hold another
    number of documents of other lengths; it trains what the eager model trains. (varlen, by design, breaks the
    graph around its loop.)"""
    from torch._dynamo.utils import counters

    from harness.cell.checkpointing import use_selective_checkpointing
    from harness.cell.recipe import compile_layers

    model = _tiny_llama()
    use_attention(model, "docbatch")
    rows = ([7, 19, 3, 12], [30, 5], [4, 9, 11, 2, 6, 8], [25, 1, 14])
    eager = []
    for lengths in rows:
        model(**_packed(lengths)).loss.backward()
        eager.append({n: p.grad.clone() for n, p in model.named_parameters()})
        model.zero_grad()
    torch._dynamo.reset()
    counters.clear()
    use_selective_checkpointing(model)
    compile_layers(model)  # as build_trainer does, in the same order
    for lengths, grads in zip(rows, eager, strict=True):
        model(**_packed(lengths)).loss.backward()
        for n, p in model.named_parameters():
            torch.testing.assert_close(p.grad, grads[n], rtol=1e-3, atol=1e-5, msg=n)
        model.zero_grad()
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    torch._dynamo.reset()


def test_unknown_attention_is_refused_by_the_config():
    from harness.base.errors import XeonftError
    from harness.config import load_config

    with pytest.raises(XeonftError, match="attn_implementation"):
        load_config(attn_implementation="flash")

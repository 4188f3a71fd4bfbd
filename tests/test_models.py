import pytest
import torch

from harness.base.errors import XeonftError
from harness.cell.models import SHAPES, resolve_model


def test_tiny_synthetic_llama_takes_the_tokenizers_vocab(tokenizer_dir):
    loaded = resolve_model("synthetic:tiny", torch.float32, tokenizer=str(tokenizer_dir))
    assert loaded.info["architecture"] == "LlamaForCausalLM" and loaded.info["kind"] == "synthetic"
    assert loaded.model.config.vocab_size == len(loaded.tokenizer)
    assert loaded.model.config.eos_token_id == loaded.tokenizer.eos_token_id


def test_synthetic_is_reproducible_from_its_seed(tokenizer_dir):
    a = resolve_model("synthetic:tiny", torch.float32, tokenizer=str(tokenizer_dir), seed=3).model
    b = resolve_model("synthetic:tiny", torch.float32, tokenizer=str(tokenizer_dir), seed=3).model
    assert torch.equal(a.model.embed_tokens.weight, b.model.embed_tokens.weight)


def test_seed_shapes_are_the_real_architectures():
    assert SHAPES["llama-3.2-1b"]["hidden_size"] == 2048 and SHAPES["llama-3.2-1b"]["vocab_size"] == 128256
    assert SHAPES["llama-3.1-8b"]["intermediate_size"] == 14336


def test_local_directory_loads_through_from_pretrained(tmp_path, tokenizer_dir):
    src = resolve_model("synthetic:tiny", torch.float32, tokenizer=str(tokenizer_dir))
    src.model.save_pretrained(tmp_path / "m")
    src.tokenizer.save_pretrained(tmp_path / "m")
    loaded = resolve_model(str(tmp_path / "m"), torch.bfloat16)
    assert loaded.info["kind"] == "local" and loaded.model.dtype == torch.bfloat16
    assert torch.equal(loaded.model.lm_head.weight.float(), src.model.lm_head.weight.to(torch.bfloat16).float())


@pytest.mark.parametrize("name, message", [
    ("gpt-7", "unknown model 'gpt-7'"),
    ("synthetic:llama-9b", "unknown synthetic shape 'llama-9b'"),
    ("missing/model.gguf", "model file not found"),
    ("./no/such/dir", "model directory not found"),
    ("no-such-org/no-such-model", "could not load"),
])
def test_bad_model_names_are_refused_with_their_name(name, message, tokenizer_dir):
    with pytest.raises(XeonftError, match=message):
        resolve_model(name, torch.float32, tokenizer=str(tokenizer_dir))


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(XeonftError, match=r"has no config\.json"):
        resolve_model(str(tmp_path), torch.float32)

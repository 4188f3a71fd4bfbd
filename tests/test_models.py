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


def test_a_conversion_that_does_not_predict_text_is_refused_and_one_that_does_is_recorded(tokenizer_dir, tmp_path):
    """The check a converted GGUF model must pass (`converted_check`): random weights (as transformers 5.4.0's GGUF
    reader left the default model's) score about ln(vocabulary) on a short English text and are refused; the same
    model taught that text passes, and the check says what it measured."""
    import math

    from harness.cell.models import CHECK_SHARE, CHECK_TEXT, converted_check

    loaded = resolve_model("synthetic:tiny", torch.float32, tokenizer=str(tokenizer_dir), seed=1)
    model, tok = loaded.model, loaded.tokenizer
    with pytest.raises(XeonftError, match=r"converted 'model\.gguf' into a model that does not predict text .*"
                                          r"uniform guess is .*xeonft fetch"):
        converted_check(model, tok, tmp_path / "model.gguf")
    ids = torch.tensor([tok(CHECK_TEXT)["input_ids"]])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
    check = converted_check(model, tok, tmp_path / "model.gguf")
    assert check["check_loss"] < CHECK_SHARE * math.log(len(tok)) and check["uniform_loss"] == pytest.approx(
        math.log(len(tok))) and check["tokens"] == ids.shape[1]


def test_the_launcher_converts_gguf_models_itself_only_where_cells_run_in_other_environments(tmp_path, capsys):
    from harness.base.errors import Failure
    from harness.config.finetune import FinetuneConfig
    from harness.config.spec import CellSpec, LaunchSettings
    from harness.config.stack import Stack
    from harness.launch.convert import prepare_models

    missing = str(tmp_path / "absent.gguf")
    here = CellSpec(config=FinetuneConfig(model=missing), launch=LaunchSettings(), warmup_steps=0, measured_steps=1)
    prepare_models([here])  # every cell here: the first converts it, with this same transformers; nothing run now
    stacked = here.model_copy(update={"launch": LaunchSettings(stack=Stack(name="old", pins=["tqdm==4.66.4"]))})
    with pytest.raises(Failure, match=r"model '.*absent\.gguf': model file not found"):
        prepare_models([here, stacked])
    with pytest.raises(Failure, match="model file not found"):
        prepare_models([here], stacks=True)  # a bisect: every version a stack
    synthetic = here.model_copy(update={"config": FinetuneConfig(model="synthetic:tiny", tokenizer=str(tmp_path))})
    prepare_models([synthetic, synthetic.model_copy(update={"launch": stacked.launch})])  # its own tokenizer: no GGUF

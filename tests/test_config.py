import re
from pathlib import Path

import pytest
import yaml

from harness.base.errors import XeonftError
from harness.config import load_config
from harness.config.finetune import FinetuneConfig
from harness.config.matrix import parse_matrix

# The published recipe as xeonft runs it (Lenovo Press LP2179), every field: what `load_config("recipe")` gave
# when the values were written both in recipe.yaml and as FinetuneConfig's defaults.
RECIPE = {
    "model": "default", "tokenizer": None, "dataset": "default", "trust_remote_code": False, "train_size": None,
    "eval_size": None, "split_seed": 42, "lora_r": 8, "lora_alpha": 16.0, "lora_dropout": 0.0,
    "lora_target_modules": "all-linear", "lora_init": "olora", "lora_bias": "none", "batch_size": 4,
    "gradient_accumulation_steps": 1, "learning_rate": 0.0002, "warmup_steps": 20, "num_train_epochs": 1.0,
    "max_steps": None, "optim": "adamw_torch", "logging_steps": 1, "eval_steps": 5, "save_steps": 100,
    "save_total_limit": 3, "save_checkpoints": True, "packing": True, "seq_len": 1024, "gradient_checkpointing": True,
    "attn_implementation": "sdpa", "lm_head": "trl", "seed": 42, "quant": "none", "precision": "bf16-autocast",
    "backend": "eager", "threads": None, "prompts": ("List a fun fact about the sun!",), "max_new_tokens": 512,
}


def test_recipe_defaults_are_the_papers_settings():
    cfg = load_config()
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules, cfg.lora_init) == (
        8, 16, 0.0, "all-linear", "olora")
    assert (cfg.batch_size, cfg.learning_rate, cfg.warmup_steps, cfg.eval_steps, cfg.optim) == (
        4, 2e-4, 20, 5, "adamw_torch")
    assert cfg.packing and cfg.precision == "bf16-autocast" and not cfg.trust_remote_code
    assert cfg.prompts == ("List a fun fact about the sun!",)


def test_file_then_overrides_take_precedence(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("batch_size: 2\nprecision: fp32\nprompts: Say hi.\n")
    cfg = load_config(f, precision="bf16", max_steps=3)
    assert (cfg.batch_size, cfg.precision, cfg.max_steps, cfg.prompts) == (2, "bf16", 3, ("Say hi.",))
    assert load_config(f).digest() != cfg.digest()


def test_bad_precision_names_the_key_and_the_value():
    with pytest.raises(XeonftError, match=r"precision.*'bf17'"):
        load_config(precision="bf17")


def test_unknown_key_in_file_is_named(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("batch_sise: 2\n")
    with pytest.raises(XeonftError, match="unknown key 'batch_sise'"):
        load_config(f)


def test_yaml_is_loaded_safely(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("model: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(XeonftError, match="not valid YAML"):
        load_config(f)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(XeonftError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_config_round_trips_through_its_yaml(tmp_path):
    cfg = load_config(batch_size=3, prompts=["a", "b"])
    f = tmp_path / "c.yaml"
    f.write_text(cfg.to_yaml())
    assert load_config(f) == cfg


def test_shipped_quick_recipe_only_shortens_the_run():
    quick, full = load_config("quick"), load_config()
    assert quick.max_steps == 20 and quick.seq_len < full.seq_len
    same = ("model", "dataset", "lora_r", "lora_alpha", "lora_init", "precision", "learning_rate", "batch_size")
    assert all(getattr(quick, k) == getattr(full, k) for k in same)


def test_the_recipe_is_todays_field_by_field_from_its_one_source():
    for cfg in (load_config("recipe"), load_config(), FinetuneConfig()):
        assert cfg.model_dump() == RECIPE
        for field, value in RECIPE.items():  # the same, named field by field
            assert getattr(cfg, field) == value, field
    # the digests that name results already on disk stay as they were
    assert load_config().digest() == "12ad3aa80bdb717c" and load_config("quick").digest() == "ea487e611cb256f3"
    assert load_config("quick", preset="fast").digest() == "d495475657a86d47"
    # recipe.yaml writes no value the model's defaults hold (one owner); it may only override
    shipped = Path(__file__).parents[1] / "harness" / "config" / "recipes"
    overrides = yaml.safe_load((shipped / "recipe.yaml").read_text()) or {}
    assert all(RECIPE.get(k) != v for k, v in overrides.items())


def test_the_harness_files_the_recipes_name_exist():
    root = Path(__file__).parents[1]
    texts = [*(root / "harness" / "config" / "recipes").glob("*.yaml"), root / "harness" / "config" / "finetune.py"]
    named = {m for t in texts for m in re.findall(r"harness/[\w/]+\.py", t.read_text())}
    missing = sorted(path for path in named if not (root / path).is_file())
    assert named and missing == []


@pytest.mark.parametrize("on", [True, "true", "yes", 1, "on"])
def test_only_the_command_line_turns_on_remote_code_however_a_file_spells_it(tmp_path, on):
    """A file people share (config, preset, recipe, matrix) may not turn on trust_remote_code, whatever spelling of
    true pydantic would accept; each refusal is the same sentence, naming what refused it."""
    f = tmp_path / "remote.yaml"
    f.write_text(yaml.safe_dump({"trust_remote_code": on}))
    refusal = r"trust_remote_code can only be turned on from the command line \(--trust-remote-code\), never by a "
    with pytest.raises(XeonftError, match=refusal + "config file"):
        load_config(f)
    with pytest.raises(XeonftError, match=refusal + "preset"):
        load_config(preset=str(f))
    with pytest.raises(XeonftError, match=refusal + "recipe"):
        parse_matrix({"name": "x", "recipe": str(f)})
    with pytest.raises(XeonftError, match=refusal + "preset"):
        parse_matrix({"name": "x", "axes": {"preset": ["none", str(f)]}})
    with pytest.raises(XeonftError, match=refusal + "matrix"):
        parse_matrix({"name": "x", "fixed": {"trust_remote_code": on}})
    with pytest.raises(XeonftError, match=refusal + "matrix"):
        parse_matrix({"name": "x", "axes": {"trust_remote_code": [False, on]}})
    f.write_text(yaml.safe_dump({"trust_remote_code": False}))
    assert not load_config(f).trust_remote_code and load_config(f, trust_remote_code=True).trust_remote_code

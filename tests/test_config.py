import pytest

from harness.base.errors import XeonftError
from harness.config import load_config


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

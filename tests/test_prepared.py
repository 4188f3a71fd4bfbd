"""The prepared-data cache: tokenized, packed splits kept by what they were made from, read back as the very
batches trl would have made."""

from __future__ import annotations

import pytest

from harness.cell import prepared
from harness.config.finetune import build_config


def config(rows_file, tokenizer_dir, **changes):
    return build_config({"model": "synthetic:tiny", "tokenizer": str(tokenizer_dir), "dataset": str(rows_file),
                         "eval_size": 4, "seq_len": 64, "max_steps": 4, "batch_size": 2, "threads": 1,
                         "save_checkpoints": False, "prompts": [], **changes})


def batches(cfg, tmp_path, cache):
    """Every batch of the trainer's train and eval loaders (the same sampler seed each time), and its cache use."""
    from transformers import set_seed

    from harness.cell.data import load_splits
    from harness.cell.models import resolve_model
    from harness.cell.recipe import build_trainer, model_dtype

    train, evaluation = load_splits(cfg.dataset, cfg.train_size, cfg.eval_size, cfg.split_seed)
    loaded = resolve_model(cfg.model, model_dtype(cfg), cfg.tokenizer, seed=cfg.seed)
    trainer = build_trainer(cfg, loaded.model, loaded.tokenizer, train, evaluation, tmp_path / "out", cache=cache)
    set_seed(cfg.seed)
    def plain(batch):
        return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in batch.items()}

    got = [plain(b) for b in trainer.get_train_dataloader()] + [plain(b) for b in trainer.get_eval_dataloader()]
    return got, trainer.data_cache, trainer.prep_seconds


def test_batches_from_the_cache_are_the_batches_trl_prepares(rows_file, tokenizer_dir, tmp_path, monkeypatch):
    from harness.cell.recipe import batch_work

    monkeypatch.setenv("XEONFT_CACHE", str(tmp_path / "cache"))
    cfg = config(rows_file, tokenizer_dir)
    fresh, use_off, _ = batches(cfg, tmp_path, cache=False)
    stored, use_miss, _ = batches(cfg, tmp_path, cache=True)
    read, use_hit, seconds = batches(cfg, tmp_path, cache=True)
    assert (use_off, use_miss, use_hit) == ("off", "miss", "hit") and seconds > 0
    assert fresh and fresh == stored == read  # every tensor of every batch, train and eval
    import torch

    def tensors(batch):
        return {k: torch.tensor(v) for k, v in batch.items() if isinstance(v, list)}

    work = [batch_work(tensors(b)) for b in read]
    assert work == [batch_work(tensors(b)) for b in fresh]
    assert sum(w["tokens"] for w in work) > 0


def test_the_key_follows_everything_that_changes_the_prepared_rows(rows_file, tokenizer_dir, tmp_path):
    import datasets
    from transformers import AutoTokenizer

    from harness.cell.recipe import sft_config

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    rows = datasets.Dataset.from_list([{"instruction": "Say hi.", "input": "", "output": "Hi."}])
    other_rows = datasets.Dataset.from_list([{"instruction": "Say hi.", "input": "", "output": "Hello."}])
    args = sft_config(config(rows_file, tokenizer_dir), tmp_path, has_eval=False)

    def key(ds=rows, tokenizer=tok, a=args, packing=True):
        return prepared.prep_key("train", prepared.rows_digest(ds), prepared.tokenizer_digest(tokenizer), a, packing)

    assert key() == key()
    shorter = sft_config(config(rows_file, tokenizer_dir, seq_len=32), tmp_path, has_eval=False)
    tok2 = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    tok2.add_tokens(["<extra>"])
    assert len({key(), key(ds=other_rows), key(a=shorter), key(tokenizer=tok2), key(packing=False)}) == 5


def test_the_cache_can_be_turned_off(monkeypatch):
    monkeypatch.setenv(prepared.SWITCH, "off")
    assert not prepared.enabled()
    monkeypatch.delenv(prepared.SWITCH)
    assert prepared.enabled()


@pytest.mark.parametrize("damage", ["empty", "garbage"])
def test_a_damaged_entry_is_a_miss(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("XEONFT_CACHE", str(tmp_path))
    entry = prepared.folder() / "k"
    entry.mkdir(parents=True)
    if damage == "garbage":
        (entry / "state.json").write_text("{not json")
    assert prepared.load("k") is None

"""The job as trl will train it: the dataset's rows tokenized with the recipe's template and packed by trl's own
SFTTrainer (built over a one-layer stand-in model with the real tokenizer, so nothing of the real model loads),
which is the only way to count exactly what it trains on as trl changes its packing."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any

from harness.config.finetune import FinetuneConfig
from harness.sizing.project import JobShape


def job_shape(cfg: FinetuneConfig) -> JobShape:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from harness.cell.data import load_splits
    from harness.cell.models import resolve_tokenizer
    from harness.cell.recipe import build_trainer

    train_ds, eval_ds = load_splits(cfg.dataset, cfg.train_size, cfg.eval_size, cfg.split_seed)
    tok = resolve_tokenizer(cfg.model, cfg.tokenizer, cfg.trust_remote_code)
    stand_in = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=8, num_hidden_layers=1,
                                            num_attention_heads=1, num_key_value_heads=1, intermediate_size=8))
    plain = cfg.model_copy(update={"backend": "eager", "gradient_checkpointing": False,
                                   "attn_implementation": "sdpa", "precision": "fp32"})
    with tempfile.TemporaryDirectory(prefix="xeonft-job-") as tmp, torch.device("cpu"):
        trainer = build_trainer(plain, stand_in, tok, train_ds, eval_ds, Path(tmp))
        train = [len(ids) for ids in trainer.train_dataset["input_ids"]]
        evals = [len(ids) for ids in trainer.eval_dataset["input_ids"]] if trainer.eval_dataset is not None else []
    return JobShape(train_rows=len(train_ds), eval_rows=len(eval_ds) if eval_ds is not None else 0,
                    packed_rows=len(train), train_tokens=sum(train), eval_tokens=sum(evals), seq_len=cfg.seq_len,
                    longest_row=max(train, default=0))


def draw_rows(dataset: str, rows: int, out: Path, seed: int = 0) -> Path:
    """`rows` rows drawn from the dataset (with replacement once they run out), written as JSON: a larger (or
    smaller) job of the same kind of rows, which the probes, the projection and `--validate` all read."""
    from harness.cell.data import load_rows

    ds = load_rows(dataset)
    rng = random.Random(seed)
    order = list(range(len(ds)))
    rng.shuffle(order)
    picks = [order[i % len(order)] if i < len(order) else rng.randrange(len(ds)) for i in range(rows)]
    records: list[dict[str, Any]] = [dict(ds[i]) for i in picks]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records), encoding="utf-8")
    return out

"""xeonft's own eval loss, the same definition under every library stack: each eval row tokenized as training
tokenizes it (`prompts.tokenize_example`), run alone (no packing, no padding, no attention across documents) through
the trained model, the cross-entropy of every token after the first, averaged over all of them (token-weighted);
and the same before training (the base model). A stack's own eval loss follows its trainer's
definition (which tokens count, how rows are packed, how a batch's loss is averaged), so it cannot tell whether a
new release trains better; this can."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from typing import Any

from harness.cell.prompts import tokenize_example
from harness.config.finetune import FinetuneConfig
from harness.config.precision import precision_rule
from harness.results.records import CommonEval


def _loss_sum(model: Any, rows: list[list[int]], autocast: bool) -> tuple[float, int]:
    import torch

    total, count = 0.0, 0
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with torch.inference_mode(), amp:
        for ids in rows:
            x = torch.tensor([ids])
            logits = model(input_ids=x).logits[0, :-1].float()
            total += float(torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum"))
            count += len(ids) - 1
    return total, count


def eval_rows(tokenizer: Any, rows: Any, cfg: FinetuneConfig) -> list[list[int]]:
    """The eval rows' token ids as training tokenizes them, cut to the sequence length as training cuts them."""
    ids = [tokenize_example(r, tokenizer)["input_ids"][: cfg.seq_len] for r in rows]
    return [x for x in ids if len(x) > 1]


def digest(rows: list[list[int]]) -> str:
    """The eval rows' token ids' digest (`CommonEval.tokens_digest`): two runs evaluated the same tokens only when
    it is equal."""
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def mean_loss(model: Any, rows: list[list[int]], cfg: FinetuneConfig) -> tuple[float, int]:
    """Mean cross-entropy per token over `rows` (each alone) and the tokens it is over; the model left as it was."""
    was_training = model.training
    model.eval()
    try:
        total, count = _loss_sum(model, rows, precision_rule(cfg.precision).autocast)
    finally:
        model.train(was_training)
    return (total / count if count else math.nan), count


class CommonEvaluator:
    """Measures the base before training and the tuned model after it, on the same rows. The base is the peft
    model at its initial adapters, not the adapters switched off: an initialisation such as OLoRA moves the base
    weights so that base plus initial adapter is the original model, and switching the adapter off would not be."""

    def __init__(self, model: Any, tokenizer: Any, rows: Any, cfg: FinetuneConfig,
                 reference: list[list[int]] | None = None) -> None:
        t0 = time.perf_counter()
        # `reference`: the sweep's one set of ids for every stack (`harness.cell.reference_tokens`); without it, the
        # rows as this stack's tokenizer splits them
        self.cfg, self.reference = cfg, reference is not None
        self.rows = reference if reference is not None else eval_rows(tokenizer, rows, cfg)
        self.base_loss, self.tokens = mean_loss(model, self.rows, cfg)
        # two stacks whose tokenizers split the rows differently did not evaluate the same tokens: say so
        self.digest = digest(self.rows)
        self.seconds = time.perf_counter() - t0

    def after(self, model: Any) -> CommonEval:
        t0 = time.perf_counter()
        loss, _ = mean_loss(model, self.rows, self.cfg)
        return CommonEval(loss=loss, base_loss=self.base_loss, tokens=self.tokens, rows=len(self.rows),
                          tokens_digest=self.digest, reference_tokens=self.reference,
                          seconds=self.seconds + time.perf_counter() - t0)

"""Base-vs-tuned generations for the recipe's prompt(s), stopping at EOS as the tuned model should."""

from __future__ import annotations

import time
from typing import Any

import torch

from harness.cell.prompts import prompt


@torch.inference_mode()
def generate(model: Any, tokenizer: Any, prompts: tuple[str, ...] | list[str], max_new_tokens: int) -> list[dict]:
    """Greedy generation of each Alpaca-formatted prompt; records whether the model stopped at EOS by itself."""
    model.eval()
    was_cached = getattr(model.config, "use_cache", True)
    model.config.use_cache = True
    results = []
    for text in prompts:
        inputs = tokenizer(prompt(text), return_tensors="pt")
        t0 = time.perf_counter()
        out = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        seconds = time.perf_counter() - t0
        new = out[0, inputs["input_ids"].shape[1]:].tolist()
        stopped = bool(new) and new[-1] == tokenizer.eos_token_id
        results.append({
            "prompt": text,
            "response": tokenizer.decode(new, skip_special_tokens=True),
            "new_tokens": len(new),
            "stopped_at_eos": stopped,
            "seconds": round(seconds, 3),
        })
    model.config.use_cache = was_cached
    return results


def side_by_side_markdown(base: list[dict], tuned: list[dict], model_name: str) -> str:
    """A Markdown page with each prompt's base and tuned answers one after the other."""
    lines = [f"# Generations: base vs tuned ({model_name})", ""]
    for b, t in zip(base, tuned, strict=True):
        lines += [f"## Prompt: {b['prompt']}", ""]
        for label, g in (("Base model", b), ("Tuned model (adapters merged)", t)):
            how = "stopped at EOS" if g["stopped_at_eos"] else "hit max_new_tokens"
            lines += [f"### {label}: {g['new_tokens']} tokens, {how}", "", "```text", g["response"], "```", ""]
    return "\n".join(lines)

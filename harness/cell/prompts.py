"""The standard Alpaca prompt templates (the paper's with-input template dropped the input; this one does not)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


def prompt(instruction: str, input: str | None = None) -> str:
    """The prompt up to and including '### Response:\\n', as used for generation."""
    if input and input.strip():
        return PROMPT_WITH_INPUT.format(instruction=instruction, input=input)
    return PROMPT_NO_INPUT.format(instruction=instruction)


def tokenize_example(row: Mapping[str, Any], tokenizer: Any) -> dict[str, list[int]]:
    """One training example, as training tokenizes it: the prompt, the response, then exactly one EOS id so the
    model learns to stop; with the tokenizer's special tokens (labels = input_ids)."""
    text = prompt(row["instruction"], row.get("input")) + str(row["output"])
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    if not ids or ids[-1] != tokenizer.eos_token_id:
        ids.append(tokenizer.eos_token_id)
    return {"input_ids": ids}

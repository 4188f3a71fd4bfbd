"""Shared test inputs, all built here: a few real Alpaca-format rows, a small byte-level BPE tokenizer, a cache."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# huggingface_hub reads these once, at import: set them before any test imports it.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROWS = [
    {"instruction": "Give three tips for staying healthy.", "input": "",
     "output": "1. Eat a balanced diet. 2. Exercise regularly. 3. Get enough sleep."},
    {"instruction": "What are the three primary colors?", "input": "",
     "output": "The three primary colors are red, blue, and yellow."},
    {"instruction": "Describe the structure of an atom.", "input": "",
     "output": "An atom is made up of a nucleus of protons and neutrons, surrounded by electrons."},
    {"instruction": "Translate the sentence into French.", "input": "I like cheese.",
     "output": "J'aime le fromage."},
    {"instruction": "Classify the sentiment of the review.", "input": "The film was wonderful.",
     "output": "Positive."},
    {"instruction": "Summarize the text in one sentence.", "input": "The sun is a star. It gives light and heat.",
     "output": "The sun is a star that gives light and heat."},
    {"instruction": "List a fun fact about the sun!", "input": "",
     "output": "The sun holds more than 99 percent of the mass of the solar system."},
    {"instruction": "Add the two numbers.", "input": "12 and 30", "output": "42"},
    {"instruction": "Name the capital of Italy.", "input": "", "output": "Rome is the capital of Italy."},
    {"instruction": "Rewrite the sentence in the past tense.", "input": "She walks to school.",
     "output": "She walked to school."},
    {"instruction": "Generate a title for a story about a dragon.", "input": "",
     "output": "The Last Ember of the Mountain Dragon"},
    {"instruction": "Explain what photosynthesis is.", "input": "",
     "output": "Photosynthesis is how plants use sunlight, water and carbon dioxide to make sugar and oxygen."},
] * 2


@pytest.fixture(autouse=True, scope="session")
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reaches the Hub (see above) or the user's cache. Session-wide, so that it is in place before the
    module- and session-scoped sweep fixtures run (a function-scoped one comes after them)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XEONFT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        # the tests' sweeps queue behind each other, not behind a real benchmark on this machine
        mp.setenv("XEONFT_MACHINE_LOCK", str(tmp_path_factory.getbasetemp() / "bench.lock"))
        yield


@pytest.fixture(scope="session")
def rows_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "alpaca.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE tokenizer trained on the rows and the templates: any text encodes, EOS is special."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from harness.cell.prompts import PROMPT_WITH_INPUT

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = [PROMPT_WITH_INPUT] + [" ".join(r.values()) for r in ROWS]
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", tok.token_to_id("<|im_start|>"))]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    out = tmp_path_factory.mktemp("tokenizer")
    fast.save_pretrained(out)
    return out


def tiny_matrix(rows_file, tokenizer_dir, **changes):
    """A matrix of tiny-Llama cells on the test rows; `changes` replace top-level keys."""
    from harness.config.matrix import parse_matrix

    doc = {
        "name": "tiny",
        "fixed": {"model": "synthetic:tiny", "tokenizer": str(tokenizer_dir), "dataset": str(rows_file),
                  "eval_size": 4, "seq_len": 64, "threads": 1, "warmup_steps": 0},
        "axes": {"precision": ["fp32", "bf16"], "batch_size": [1, 2]},
        "exclude": [{"precision": "bf16", "batch_size": 2}],
        "measure": {"warmup_steps": 1, "steps": 3},
        "timeout_s": 120,
        "peak": False,
    }
    doc.update(changes)
    return parse_matrix(doc)


@pytest.fixture(scope="session")
def sweep(rows_file, tokenizer_dir, tmp_path_factory):
    """A real result set: three ordinary cells, one pinned to a core, one that crashes on purpose."""
    from harness.launch.sweep import run_sweep

    m = tiny_matrix(rows_file, tokenizer_dir, axes={
        "precision": ["fp32", "bf16"], "batch_size": [1, 2], "pinning": ["none", "cores"],
        "inject_fault": ["none", "crash"]},
        exclude=[{"precision": "bf16", "batch_size": 2}, {"inject_fault": "crash", "batch_size": 2},
                 {"inject_fault": "crash", "precision": "bf16"}, {"pinning": "cores", "batch_size": 1},
                 {"pinning": "cores", "precision": "bf16"}, {"pinning": "cores", "inject_fault": "crash"}])
    out = tmp_path_factory.mktemp("sweeps") / "tiny"
    return m, run_sweep(m, out=out)


def disk_records(store) -> list[dict]:
    """A result set's cell records as their JSON on disk (the layout users' scripts read)."""
    return [r.model_dump(mode="json", exclude_unset=True) for r in store.records()]


def disk_manifest(store) -> dict:
    return store.manifest().model_dump(mode="json", exclude_unset=True)

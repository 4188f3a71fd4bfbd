"""Shared test inputs, all built here: a few real Alpaca-format rows, a small byte-level BPE tokenizer, a cache."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

# A suite started in the background (`pytest &` in a script, a CI step run that way) inherits SIGINT ignored, and so
# would every process it starts (Python keeps an ignored SIGINT ignored): the tests that interrupt a sweep or cancel
# a job with SIGINT need it as a terminal gives it. A Python-level handler is reset to the default in children.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# huggingface_hub reads these once, at import: set them before any test imports it.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# bf16 cells run on a CPU without bf16 GEMM kernels too (harness.launch.emulation): a tiny model's emulated bf16
# steps take milliseconds; tests/test_emulation.py checks the refusal with this unset
os.environ.setdefault("XEONFT_EMULATED_BF16", "1")

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
        "calibration": False,  # tests/test_calibration.py turns it on
        "order": "fixed",  # the listed order unless a test asks for a shuffled one (tests/test_sweep.py does)
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


def sweep_undisturbed(matrix, out, passes: int = 3, resume: bool = False):
    """`run_sweep`, resumed while a cell came out `disturbed` (another process took CPU during its measured steps;
    the resume rule always takes such a cell again), at most `passes` sweeps in all. For the tests whose verdicts
    need every run: a verdict leaves a disturbed run out, and two runs a side become one."""
    from harness.launch.sweep import run_sweep

    store = run_sweep(matrix, out=out, resume=resume)
    for _ in range(passes - 1):
        if not any(r.status == "disturbed" for r in store.records()):
            break
        store = run_sweep(matrix, out=out, resume=True)
    return store


@pytest.fixture(scope="session")
def slowed_sets(rows_file, tokenizer_dir, tmp_path_factory) -> list[Path]:
    """Three real result sets of the same two configurations, batch 1 (two runs) and batch 2 (three runs); in the
    third, batch 2 is slowed on purpose inside every step (inject_fault: slow:200%, each step about three times as
    long: far beyond the drift between two unslowed sets on this machine, which reached 10-25%).
    compare's and history's end-to-end tests read them (copies, where they change them).

    One pinned core and 256-token rows: steps of tens of milliseconds, so scheduler jitter stays small beside the
    slowdown; 16 measured steps, so the first one (whose wait is the oneDNN-logged warm-up step's work, longer than
    a step's) moves a run's rate little."""
    root = tmp_path_factory.mktemp("slowed")
    axes = {"precision": ["fp32"], "pinning": ["cores"], "seq_len": [256], "batch_size": [1, 2]}
    matrices = []
    for i in range(3):
        m = tiny_matrix(rows_file, tokenizer_dir, name=f"set{i}", axes=axes, exclude=[], repeats=3,
                        measure={"warmup_steps": 2, "steps": 16})
        cells = [c for c in m.cells if not (c.config.batch_size == 1 and c.repeat == 2)]
        if i == 2:
            cells = [c.model_copy(update={"launch": c.launch.model_copy(update={"inject_fault": "slow:200%"})})
                     if c.config.batch_size == 2 else c for c in cells]
        matrices.append(m.model_copy(update={"cells": cells}))
    # round by round across the three sets, in a rotating order: the machine's drift through the session falls on
    # all three alike (run one set after another, two unslowed sets once came out 28% apart in batch 1)
    for r in range(3):
        for i in (r, r + 1, r + 2):
            m = matrices[i % 3]
            this = [c for c in m.cells if c.repeat == r]
            if this:
                sweep_undisturbed(m.model_copy(update={"cells": this}), root / f"set{i % 3}", resume=r > 0)
    return [root / f"set{i}" for i in range(3)]


@pytest.fixture(scope="session")
def profiled_sweep(rows_file, tokenizer_dir, tmp_path_factory):
    """One real cell with one extra profiled step after its measured ones (test_profile and test_trust read it)."""
    from harness.launch.sweep import run_sweep

    m = tiny_matrix(rows_file, tokenizer_dir, axes={"precision": ["bf16"]}, exclude=[],
                    measure={"warmup_steps": 1, "steps": 3, "profile": True})
    return run_sweep(m, out=tmp_path_factory.mktemp("sweeps") / "profiled")


def disk_records(store) -> list[dict]:
    """A result set's cell records as their JSON on disk (the layout users' scripts read)."""
    return [r.model_dump(mode="json", exclude_unset=True) for r in store.records()]


def disk_manifest(store) -> dict:
    return store.manifest().model_dump(mode="json", exclude_unset=True)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the test PostgreSQL server (tests/postgres.py), as a URL with its password."""
    from tests.postgres import fresh_database

    with fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_at(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty catalog of each backend, as `--catalog` takes it: an SQLite file's path, a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "catalog.sqlite")
    return str(request.getfixturevalue("postgres_url"))

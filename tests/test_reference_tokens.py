"""One set of eval token ids for every stack of a sweep (`harness.cell.reference_tokens`,
`harness.launch.reference`): made once in the launcher's environment, read by every cell that evaluates, and a
damaged or foreign file refused in one message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.base.errors import XeonftError
from tests.conftest import tiny_matrix


def _spec(rows_file, tokenizer_dir, **config):
    spec = tiny_matrix(rows_file, tokenizer_dir, axes={"precision": ["fp32"]}, exclude=[]).cells[0]
    return spec.model_copy(update={"config": spec.config.model_copy(update=config)}) if config else spec


def test_the_launcher_makes_the_ids_once_as_this_environment_tokenizes_the_eval_rows(rows_file, tokenizer_dir,
                                                                                     tmp_path):
    from harness.cell.common_eval import eval_rows
    from harness.cell.data import load_splits
    from harness.cell.models import resolve_tokenizer
    from harness.cell.reference_tokens import read, token_key
    from harness.launch.reference import FOLDER, ReferenceTokens

    spec = _spec(rows_file, tokenizer_dir)
    ref = ReferenceTokens(tmp_path)
    got = ref.attach(spec)
    path = tmp_path / FOLDER / f"{token_key(spec.config)}.json"
    assert got.own_eval_tokens == str(path.resolve()) and path.is_file()
    cfg = spec.config
    _, eval_ds = load_splits(cfg.dataset, cfg.train_size, cfg.eval_size, cfg.split_seed)
    assert read(path) == eval_rows(resolve_tokenizer(cfg.model, cfg.tokenizer), eval_ds, cfg)
    made = path.stat().st_mtime_ns
    assert ref.attach(spec.model_copy(update={"config": cfg.model_copy(update={"batch_size": 2})})) \
        .own_eval_tokens == got.own_eval_tokens and path.stat().st_mtime_ns == made  # one file per eval set
    assert ref.attach(spec.model_copy(update={"repeat": 1})).own_eval_tokens is None  # it does not evaluate
    assert token_key(cfg.model_copy(update={"seq_len": 32})) != token_key(cfg)  # another cut: other ids


def test_where_the_ids_cannot_be_made_the_cells_keep_their_own_and_the_sweep_says_why_once(
        rows_file, tokenizer_dir, tmp_path, capsys):
    from harness.launch.reference import ReferenceTokens

    spec = _spec(rows_file, tokenizer_dir, dataset=str(tmp_path / "missing.jsonl"))
    ref = ReferenceTokens(tmp_path)
    assert ref.attach(spec).own_eval_tokens is None and ref.attach(spec).own_eval_tokens is None
    out = " ".join(capsys.readouterr().err.split())  # the launcher's console is stderr, wrapped at 160 columns
    assert out.count("could not be made") == 1 and "missing.jsonl" in out and "Traceback" not in out


def test_a_damaged_foreign_or_mismatched_ids_file_is_refused_in_one_message(rows_file, tokenizer_dir, tmp_path):
    from harness.cell.reference_tokens import read, write

    spec = _spec(rows_file, tokenizer_dir)
    path = tmp_path / "ids.json"
    document = write(spec.config, path)
    assert read(path, vocab_size=document["vocab_size"]) == document["rows"]
    cases = {
        "damaged": {**document, "rows": [document["rows"][0][:-1], *document["rows"][1:]]},
        "is not one xeonft wrote": {"rows": document["rows"]},
        "has version 9": {**document, "version": 9},
        "holds no rows": {**document, "rows": [[1]]},
    }
    for words, doc in cases.items():
        path.write_text(json.dumps(doc), encoding="utf-8")
        with pytest.raises(XeonftError, match=words):
            read(path)
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(XeonftError, match="outside this model's vocabulary"):
        read(path, vocab_size=2)
    path.write_bytes(b"\x89PNG\r\n")
    with pytest.raises(XeonftError, match="cannot be read"):
        read(path)
    with pytest.raises(XeonftError, match="does not exist"):
        read(tmp_path / "nothing.json")


def test_a_sweep_over_two_stacks_evaluates_every_cell_on_the_same_reference_ids(rows_file, tokenizer_dir,
                                                                                tmp_path):
    """Cells of two environments (a stack layered over this one, and this one): both read the result set's
    reference file, not their own tokenizer's ids; the file here holds fewer rows than the split, so a cell that
    read its own would show it."""
    from harness.cell.reference_tokens import digest, token_key, write
    from harness.launch.reference import FOLDER
    from harness.launch.sweep import run_sweep

    m = tiny_matrix(rows_file, tokenizer_dir, axes={"stack": [{"name": "old-tqdm", "pins": ["tqdm==4.66.4"]},
                                                              None]}, exclude=[])
    out = tmp_path / "two-stacks"
    path = out / FOLDER / f"{token_key(m.cells[0].config)}.json"
    document = write(m.cells[0].config, path)
    rows = document["rows"][:2]
    path.write_text(json.dumps({**document, "rows": rows, "digest": digest(rows)}), encoding="utf-8")
    store = run_sweep(m, out=out, create_envs=True)
    records = [r for r in store.records() if r.status == "ok"]
    assert len(records) == 2 and {r.axes["stack"] for r in records} == {"old-tqdm", None}
    for r in records:
        own = r.result.common_eval
        assert own is not None and own.reference_tokens and own.rows == 2 < r.result.eval_rows
        assert own.tokens_digest == digest(rows) and own.tokens == sum(len(x) - 1 for x in rows)
        assert r.spec.own_eval_tokens == str(path.resolve())
    assert Path(records[0].spec.own_eval_tokens).is_file()

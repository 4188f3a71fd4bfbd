"""The exit-code table of docs/cli.md, held: one real error path of the CLI for each row, every message one
bounded line; generated matrices, datasets and model folders give a result or one bounded line, never another
exception. XEONFT_FUZZ_EXAMPLES raises the number of generated inputs (1,000 by hand; the suite runs fewer)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import cli
from harness.base.errors import XeonftError
from harness.config.matrix import parse_matrix
from tests.test_compare import synthetic_set

DOCS = Path(__file__).parents[1] / "docs" / "cli.md"
EXAMPLES = int(os.environ.get("XEONFT_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


def documented_codes() -> set[int]:
    table = DOCS.read_text().split("## Exit codes", 1)[1].split("\n\n", 2)[1]
    return {int(m.group(1)) for m in re.finditer(r"^\| (\d+) \|", table, re.M)}


def one_bounded_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[:2000]
    assert len(lines[0]) <= cli.MESSAGE_LIMIT
    return lines[0]


def _bomb(levels: int = 6) -> str:
    """A few hundred bytes of YAML whose aliases expand one batch_size value to 10**levels integers."""
    inner = "[1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"
    for level in range(levels - 1):
        name = f"a{level}"
        inner = f"[&{name} {inner}" + f", *{name}" * 9 + "]"
    return f"name: bomb\naxes:\n  batch_size: [{inner}]\n"


BOMB = _bomb()


def case_0(tmp_path, monkeypatch):
    monkeypatch.setenv("XEONFT_CACHE", str(tmp_path / "cache"))
    return ["cache", "show"], None


def case_1(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    base = synthetic_set(tmp_path / "base", rng, speed=(100.0, 100.0))
    slow = synthetic_set(tmp_path / "slow", rng, speed=(70.0, 100.0), name="slow")
    return ["compare", str(base), str(slow)], None


def case_2(tmp_path, monkeypatch):
    (tmp_path / "bomb.yaml").write_text(BOMB)
    return ["run", str(tmp_path / "bomb.yaml"), "--dry-run"], "xeonft: error: .*bomb.yaml"


def case_3(tmp_path, monkeypatch):
    import shutil

    from harness.launch import sweep

    (tmp_path / "m.yaml").write_text("name: m\nfixed: {model: 'synthetic:tiny'}\n")
    monkeypatch.setattr(sweep.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 40, 1 << 40, 1 << 20))
    return ["run", str(tmp_path / "m.yaml"), "--out", str(tmp_path / "set")], "xeonft: failed: only 1 MiB free"


def case_130(tmp_path, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.VERBS, "cache", interrupted)
    return ["cache", "show"], "xeonft: interrupted"


CASES = {0: case_0, 1: case_1, 2: case_2, 3: case_3, 130: case_130}


def test_the_documented_table_is_the_one_held_here():
    assert documented_codes() == set(CASES)


@pytest.mark.parametrize("code", sorted(CASES))
def test_each_documented_exit_code_has_a_real_path_and_one_bounded_line(code, tmp_path, monkeypatch, capsys):
    argv, message = CASES[code](tmp_path, monkeypatch)
    capsys.readouterr()
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    if message:
        assert re.match(message, one_bounded_line(err)), err[:500]


def test_a_matrix_whose_aliases_expand_to_a_million_values_is_refused_in_one_short_line(tmp_path, capsys):
    (tmp_path / "bomb.yaml").write_text(BOMB)
    assert cli.main(["run", str(tmp_path / "bomb.yaml"), "--dry-run"]) == 2
    line = one_bounded_line(capsys.readouterr().err)
    assert "bomb.yaml" in line and "batch_size" in line and "(a list of 1,000,000 values)" in line, line


def test_a_matrix_of_too_many_combinations_is_refused_before_expanding():
    with pytest.raises(XeonftError, match=r"1,000,000 combinations \(batch_size: 1,000 values, lora_r: 1,000"):
        parse_matrix({"name": "big", "axes": {"batch_size": list(range(1, 1001)), "lora_r": list(range(1, 1001))}})


scalars = st.none() | st.booleans() | st.integers(-3, 2**40) | st.floats(allow_nan=True) | st.text(max_size=20)
nested = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                                           inner, max_size=4),
                      max_leaves=12)
keys = st.sampled_from(["name", "recipe", "fixed", "axes", "exclude", "repeats", "measure", "timeout_s",
                        "variables", "memory_limit", "batch_size", "precision", "disturbance_cores"])
axis_names = st.sampled_from(["batch_size", "precision", "backend", "pinning", "threads", "ranks", "memory_limit",
                              "lora_r", "seq_len", "allocator", "stack", "preset", "nonsense"])
matrices = st.fixed_dictionaries({"name": st.text(max_size=12) | scalars},
                                 optional={"axes": st.dictionaries(axis_names, st.lists(nested, max_size=3) | nested,
                                                                   max_size=3),
                                           "fixed": st.dictionaries(axis_names, nested, max_size=3),
                                           "exclude": nested, "repeats": nested, "measure": nested}) \
    | st.dictionaries(keys, nested, max_size=5)


@FUZZ
@given(matrices)
def test_generated_matrices_give_a_matrix_or_one_bounded_message(doc):
    try:
        parse_matrix(doc, source="gen.yaml")
    except XeonftError as err:
        assert "gen.yaml" in str(err)  # the message names the file it is about


rows = st.lists(st.dictionaries(st.sampled_from(["instruction", "input", "output", "text"]), scalars, max_size=4),
                min_size=0, max_size=5)


@FUZZ
@given(st.sampled_from([".json", ".jsonl", ".csv", ".parquet"]), rows | nested, st.binary(max_size=40), st.booleans())
def test_generated_datasets_give_rows_or_one_message(tmp_path_factory, suffix, content, noise, as_bytes):
    from harness.cell.data import load_rows

    path = tmp_path_factory.mktemp("data") / f"rows{suffix}"
    if as_bytes:
        path.write_bytes(noise)
    elif suffix == ".jsonl" and isinstance(content, list):
        path.write_text("".join(json.dumps(r) + "\n" for r in content))
    else:
        path.write_text(json.dumps(content))
    try:
        ds = load_rows(str(path))
    except XeonftError as err:
        assert str(path) in str(err)
    else:
        assert len(ds) > 0 and set(ds.column_names) == {"instruction", "input", "output"}


TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 64}


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(TINY)), scalars | st.sampled_from(["llama", "gpt2", "bert"]),
                       max_size=3),
       st.sampled_from(["", "config-not-json", "weights-noise", "weights-empty"]), st.binary(max_size=64))
def test_generated_model_folders_load_or_give_one_message(tmp_path_factory, tokenizer_dir, changes, damage, noise):
    import torch

    from harness.cell.models import resolve_model

    folder = tmp_path_factory.mktemp("model")
    config = {**TINY, **{k: v for k, v in changes.items() if not isinstance(v, int) or abs(v) < 64}}
    (folder / "config.json").write_bytes(noise if damage == "config-not-json" else json.dumps(config).encode())
    if damage.startswith("weights"):
        (folder / "model.safetensors").write_bytes(b"" if damage == "weights-empty" else noise)
    try:
        resolve_model(str(folder), torch.float32, tokenizer=str(tokenizer_dir))
    except XeonftError as err:
        assert str(folder) in str(err)


LYING_MATRICES = {
    "utf-16": ("m.yaml", "name: m\n".encode("utf-16"), r"m\.yaml is UTF-16 text \(byte-order mark at byte 0\)"),
    "not yaml": ("m.yaml", b"name: [unclosed\n", r"m\.yaml: not valid YAML: line 2, column 1: expected ',' or ']'"),
    "a list": ("m.yaml", b"- a\n- b\n", r"m\.yaml: expected a mapping of keys to values, got list"),
    "a folder": ("m.yaml", None, r"m\.yaml is a folder, not a YAML file"),
    "binary": ("m.yaml", b"\x00\x01\x02\xff\xfe\x00", r"m\.yaml is not UTF-8 text: byte 3"),
}


@pytest.mark.parametrize("case", sorted(LYING_MATRICES))
def test_a_matrix_file_that_is_not_what_it_claims_is_one_line_exit_2(case, tmp_path, capsys):
    name, content, message = LYING_MATRICES[case]
    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    assert cli.main(["run", str(path), "--dry-run"]) == 2
    line = one_bounded_line(capsys.readouterr().err)
    assert re.search(message, line), line

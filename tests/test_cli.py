"""Bad input at the command line: one clear line naming the problem, exit 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.cli import main


def test_bad_precision_exits_2_without_a_traceback_in_a_real_process():
    proc = subprocess.run([sys.executable, "-m", "harness", "finetune", "--precision", "bf17"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "precision" in proc.stderr and "'bf17'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture
def base_args(rows_file, tokenizer_dir, tmp_path):
    return ["finetune", "--tokenizer", str(tokenizer_dir), "--model", "synthetic:tiny", "--dataset", str(rows_file),
            "--max-steps", "1", "--out", str(tmp_path / "run")]


def bad(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_unknown_model(base_args, capsys):
    code, err = bad([*base_args, "--model", "nonsense-model"], capsys)
    assert code == 2 and "unknown model 'nonsense-model'" in err


def test_missing_dataset_file(base_args, tmp_path, capsys):
    code, err = bad([*base_args, "--dataset", str(tmp_path / "missing.json")], capsys)
    assert code == 2 and "dataset file not found" in err and "missing.json" in err


def test_dataset_without_the_needed_columns(base_args, tmp_path, capsys):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    code, err = bad([*base_args, "--dataset", str(path)], capsys)
    assert code == 2 and "lacks column(s) instruction, output" in err


def test_empty_dataset(base_args, tmp_path, capsys):
    path = tmp_path / "empty.json"
    path.write_text("[]")
    code, err = bad([*base_args, "--dataset", str(path)], capsys)
    assert code == 2 and "empty.json" in err


def test_a_short_finetune_from_the_command_line(base_args, tmp_path, capsys):
    code = main([*base_args, "--precision", "bf16", "--batch-size", "1", "--seq-len", "48", "--eval-size", "2",
                 "--max-new-tokens", "4", "--warmup-steps", "0"])
    assert code == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["model"]["dtype"] == "bfloat16" and summary["throughput"]["steps"] == 1

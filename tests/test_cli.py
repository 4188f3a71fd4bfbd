"""The command line: every verb dispatches; the finetune flags are the recipe's fields; bad input is one clear line
naming the problem, exit 2, no traceback."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from harness.cli import main
from harness.commands import COMMANDS
from harness.commands.flags import FIELD_FLAGS, NOT_FLAGS, _flag_kwargs, field_overrides
from harness.config.finetune import FinetuneConfig, load_config

# The verbs a user relies on, in the order of the README's map of the verbs: none may go missing or come unlisted.
DOCUMENTED_VERBS = ("fetch", "finetune", "run", "report", "compare", "merge", "bundle", "import", "size", "peak",
                    "history", "machines", "bisect", "env", "cache")


def test_the_verbs_are_the_documented_ones_in_the_readmes_order():
    assert tuple(c.name for c in COMMANDS) == DOCUMENTED_VERBS
    assert {c.name: c.run for c in COMMANDS} == cli.VERBS
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme.split("\n## The verbs\n", 1)[1].split("\n## ", 1)[0]
    assert tuple(re.findall(r"^\| `([a-z]+)` \|", table, flags=re.MULTILINE)) == DOCUMENTED_VERBS


@pytest.mark.parametrize("verb", DOCUMENTED_VERBS)
def test_every_verb_dispatches_and_its_help_says_what_it_does(verb, capsys):
    with pytest.raises(SystemExit) as done:
        main([verb, "--help"])
    assert done.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert shown.startswith(f"usage: xeonft {verb}")
    assert " ".join(next(c for c in COMMANDS if c.name == verb).help.split()) in shown


def test_python_dash_m_harness_lists_every_verb():
    proc = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "{" + ",".join(DOCUMENTED_VERBS) + "}" in proc.stdout


def test_side_effects_are_said_in_the_verbs_help():
    helps = {c.name: " ".join(c.help.split()) for c in COMMANDS}
    assert "adds the result set to the catalog beside it" in helps["run"]
    assert "--add writes the catalog, --check only reads it" in helps["history"]
    assert "exit 1" in helps["compare"]
    assert "writes only that file" in helps["bundle"]
    assert "writes the result sets and the catalog" in helps["import"]


def _finetune_parser() -> argparse.ArgumentParser:
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["finetune"]


def test_the_finetune_flags_are_the_recipe_fields():
    """Every FinetuneConfig field is a flag of `xeonft finetune` but those deliberately not, so that a field added
    later gets its flag (or this fails); and the flags users have are all there, by name and by destination."""
    dests = {a.dest for a in _finetune_parser()._actions} - {"help", "config", "preset", "out"}
    assert dests == set(FinetuneConfig.model_fields) - set(NOT_FLAGS) == set(FIELD_FLAGS)
    options = {o: a.dest for a in _finetune_parser()._actions for o in a.option_strings}
    before = {"--model": "model", "--tokenizer": "tokenizer", "--dataset": "dataset",
              "--trust-remote-code": "trust_remote_code", "--train-size": "train_size", "--eval-size": "eval_size",
              "--max-steps": "max_steps", "--batch-size": "batch_size", "--seq-len": "seq_len",
              "--eval-steps": "eval_steps", "--warmup-steps": "warmup_steps", "--learning-rate": "learning_rate",
              "--precision": "precision", "--backend": "backend",
              "--gradient-accumulation-steps": "gradient_accumulation_steps", "--optim": "optim",
              "--threads": "threads", "--lora-r": "lora_r", "--lora-alpha": "lora_alpha", "--lora-init": "lora_init",
              "--gradient-checkpointing": "gradient_checkpointing",
              "--no-gradient-checkpointing": "gradient_checkpointing", "--prompt": "prompts",
              "--max-new-tokens": "max_new_tokens", "--seed": "seed", "--config": "config", "--preset": "preset",
              "--fast": "preset", "--out": "out"}
    assert {o: options.get(o) for o in before} == before


def test_finetune_flags_reach_the_config_by_their_field_types():
    args = cli.build_parser().parse_args([
        "finetune", "--fast", "--prompt", "a", "--prompt", "b", "--lora-dropout", "0.1", "--no-packing",
        "--epochs", "0.5", "--lm-head", "fused", "--train-size", "7", "--no-gradient-checkpointing"])
    given = field_overrides(args)
    assert given == {"prompts": ["a", "b"], "lora_dropout": 0.1, "packing": False, "num_train_epochs": 0.5,
                     "lm_head": "fused", "train_size": 7, "gradient_checkpointing": False}
    cfg = load_config(args.config, preset=args.preset, **given)
    assert (cfg.prompts, cfg.packing, cfg.lm_head, cfg.train_size) == (("a", "b"), False, "fused", 7)
    assert cfg.backend == load_config(preset="fast").backend  # --fast still layers the preset under the flags
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["finetune", "--lm-head", "slow"])  # a Literal field's choices are checked


def test_a_field_of_a_type_no_flag_can_say_is_refused_by_name():
    with pytest.raises(TypeError, match=r"FinetuneConfig.lora_target_modules: no flag for .*NOT_FLAGS"):
        _flag_kwargs("lora_target_modules", FinetuneConfig.model_fields["lora_target_modules"].annotation)


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



def test_a_reader_that_goes_away_is_no_failure(tmp_path):
    """`xeonft VERB | head`: the pipe closes under a verb's output; the command ends quietly with exit 0."""
    script = ("import sys\nfrom harness import cli\n"
              "def chatty(args):\n    for i in range(200000):\n        print(f'line {i}')\n    return 0\n"
              "cli.VERBS['cache'] = chatty\nraise SystemExit(cli.main(['cache', 'show']))\n")
    proc = subprocess.run(f"{sys.executable} -c \"$SCRIPT\" | head -n 1; echo rc=${{PIPESTATUS[0]}}", shell=True,
                          executable="/bin/bash", capture_output=True, text=True, cwd=tmp_path,
                          env={**__import__("os").environ, "SCRIPT": script,
                               "PYTHONPATH": str(Path(__file__).parents[1])})
    assert proc.stdout.splitlines() == ["line 0", "rc=0"], proc.stdout[-500:]
    assert proc.stderr == "", proc.stderr

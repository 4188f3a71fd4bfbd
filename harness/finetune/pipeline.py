"""One faithful run of the recipe: data, model, LoRA, SFTTrainer, saved adapters, loss log and plot, generations.

Everything a run produces goes into one folder, together with the resolved config it ran.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from rich.console import Console

from harness.base.errors import XeonftError
from harness.cell.data import load_splits
from harness.cell.recipe import MUTATING_INITS, build_trainer, load_base, lora_config
from harness.cell.tracker import StepTracker
from harness.config.finetune import FinetuneConfig
from harness.finetune.generate import generate, side_by_side_markdown
from harness.finetune.plots import loss_plot
from harness.measure.fingerprint import versions

console = Console(stderr=True)


def new_run_dir(cfg: FinetuneConfig, out: str | Path | None) -> Path:
    """The run's folder: the one asked for (which must be new or empty), else results/runs/<time>-<hash>."""
    if out is None:
        out = Path("results") / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.digest()[:8]}"
    path = Path(out)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise XeonftError(f"output folder '{path}' already exists and is not empty; choose another --out")
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_adapter(peft_model: Any, cfg: FinetuneConfig, run_dir: Path) -> Path:
    """Save the trained adapter so it applies to the *original* base model.

    OLoRA (the recipe's init) rewrites the base weights at init; an adapter saved plainly would be wrong on the
    unmodified model the recipe later loads. peft converts it, from the initial adapter, into a plain LoRA
    adapter of twice the rank that needs no change to the base model.
    """
    adapter_dir = run_dir / "adapter"
    init_dir = run_dir / "adapter-init"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="OLoRA changes the base weights")  # converted right here
        if init_dir.is_dir():
            peft_model.save_pretrained(str(adapter_dir), path_initial_model_for_weight_conversion=str(init_dir))
        else:
            peft_model.save_pretrained(str(adapter_dir))
    return adapter_dir


def save_initial_adapter(peft_model: Any, cfg: FinetuneConfig, run_dir: Path) -> None:
    """For inits that mutate the base weights, keep the untrained adapter for the conversion at save time."""
    if cfg.lora_init not in MUTATING_INITS:
        return
    peft_config = peft_model.peft_config["default"]
    original = peft_config.init_lora_weights
    peft_config.init_lora_weights = True  # as peft's OLoRA example does: save it as a plain-init adapter
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="OLoRA changes the base weights")
        peft_model.save_pretrained(str(run_dir / "adapter-init"))
    peft_config.init_lora_weights = original


def load_tuned(cfg: FinetuneConfig, adapter_dir: Path) -> Any:
    """The recipe's evaluation path: a fresh base model, the saved adapter loaded onto it, merged. The base is
    the dense one even when training held it quantized: the adapter is for the original model."""
    from peft import PeftModel

    base = load_base(cfg, quantized=False)
    return PeftModel.from_pretrained(base.model, str(adapter_dir)).merge_and_unload(), base.tokenizer


def run_finetune(cfg: FinetuneConfig, out: str | Path | None = None) -> dict[str, Any]:
    """Run the recipe once and return its summary (also written to summary.json in the run folder)."""
    from peft import get_peft_model
    from transformers import set_seed

    run_dir = new_run_dir(cfg, out)
    (run_dir / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    wall: dict[str, float] = {}
    t_start = time.perf_counter()

    console.print(f"[bold]xeonft finetune[/] -> {run_dir}")
    t = time.perf_counter()
    train_ds, eval_ds = load_splits(cfg.dataset, cfg.train_size, cfg.eval_size, cfg.split_seed)
    console.print(f"data: {len(train_ds)} train / {len(eval_ds) if eval_ds is not None else 0} eval rows")
    loaded = load_base(cfg)
    model, tokenizer = loaded.model, loaded.tokenizer
    wall["load"] = time.perf_counter() - t
    quant = loaded.info.get("quant")
    held = f", decoder linears in {quant['format']} ({quant['library']} {quant['version']})" if quant else ""
    console.print(f"model: {loaded.info['architecture']} {loaded.info['parameters'] / 1e6:.1f}M params, "
                  f"{loaded.info['dtype']}{held} ({loaded.info['kind']}: {loaded.info['source']})")

    base_gens: list[dict] = []
    if cfg.prompts:
        t = time.perf_counter()
        console.print("generating with the base model ...")
        base_gens = generate(model, tokenizer, cfg.prompts, cfg.max_new_tokens)
        wall["generate_base"] = time.perf_counter() - t

    t = time.perf_counter()
    peft_model = get_peft_model(model, lora_config(cfg))
    save_initial_adapter(peft_model, cfg, run_dir)
    trainable, total = peft_model.get_nb_trainable_parameters()
    tracker = StepTracker()
    trainer = build_trainer(cfg, peft_model, tokenizer, train_ds, eval_ds, run_dir / "checkpoints", [tracker])
    wall["setup"] = time.perf_counter() - t
    steps = trainer.args.max_steps if trainer.args.max_steps > 0 else "one epoch of"
    console.print(f"training: {cfg.precision}, {cfg.backend}, batch {cfg.batch_size}, seq_len {cfg.seq_len}, "
                  f"{trainable:,} trainable of {total:,} params, {steps} steps")
    t = time.perf_counter()
    train_output = trainer.train()
    wall["train"] = time.perf_counter() - t

    adapter_dir = save_adapter(trainer.model, cfg, run_dir)
    log_history = trainer.state.log_history
    pd.DataFrame(log_history).to_csv(run_dir / "log.csv", index=False)
    plot = loss_plot(log_history, run_dir / "loss.png", f"{loaded.info['name']}: LoRA fine-tune loss")
    (run_dir / "steps.json").write_text(json.dumps({"steps": tracker.records(), "evals": tracker.evals}, indent=1))

    tuned_gens: list[dict] = []
    if cfg.prompts:
        t = time.perf_counter()
        dense = ", the dense base the adapter is for" if quant else ""
        console.print(f"generating with the tuned model (adapter reloaded onto a fresh base{dense}, merged) ...")
        del trainer, peft_model, model
        tuned, tok = load_tuned(cfg, adapter_dir)
        tuned_gens = generate(tuned, tok, cfg.prompts, cfg.max_new_tokens)
        wall["generate_tuned"] = time.perf_counter() - t
        (run_dir / "generations.json").write_text(json.dumps({"base": base_gens, "tuned": tuned_gens}, indent=1))
        (run_dir / "generations.md").write_text(side_by_side_markdown(base_gens, tuned_gens, loaded.info["name"]))

    wall["total"] = time.perf_counter() - t_start
    evals = [h["eval_loss"] for h in log_history if "eval_loss" in h]
    summary = {
        "run_dir": str(run_dir),
        "config_digest": cfg.digest(),
        "model": loaded.info,
        "trainable_parameters": trainable,
        "train_rows": len(train_ds),
        "eval_rows": len(eval_ds) if eval_ds is not None else 0,
        "throughput": tracker.summary(timing_warmup=min(1, max(0, len(tracker.steps) - 1)))  # step 1: warm-up
        .model_dump(exclude_unset=True),
        "train_loss_first": next((h["loss"] for h in log_history if "loss" in h), None),
        "train_loss_last": next((h["loss"] for h in reversed(log_history) if "loss" in h), None),
        "train_loss_mean": train_output.training_loss,
        "eval_loss_first": evals[0] if evals else None,
        "eval_loss_last": evals[-1] if evals else None,
        "wall_seconds": {k: round(v, 3) for k, v in wall.items()},
        "threads": torch.get_num_threads(),
        "versions": versions(),
        "artifacts": {
            "adapter": "adapter", "log": "log.csv", "loss_plot": plot.name if plot else None,
            "generations": "generations.md" if cfg.prompts else None, "steps": "steps.json",
        },
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    tp = summary["throughput"]
    console.print(f"[green]done[/] in {wall['total']:.0f} s: {tp['tokens_per_second'] or 0:.1f} non-padding tokens/s "
                  f"over {tp['measured_steps']} measured steps; eval loss {summary['eval_loss_first']} -> "
                  f"{summary['eval_loss_last']}; run folder {run_dir}")
    return summary

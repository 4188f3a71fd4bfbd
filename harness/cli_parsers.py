"""The flags of the larger verbs (`finetune`, `size`, `history`, `bisect`); `harness.cli` holds the rest."""

from __future__ import annotations

import argparse


def _checkpoint_mode(text: str) -> str:
    if text != "selective":
        raise argparse.ArgumentTypeError(f"'{text}': say --gradient-checkpointing for every layer's forward "
                                         "recomputed, or --gradient-checkpointing selective")
    return text


def checkpointing_flags(p: argparse.ArgumentParser) -> None:
    """`--gradient-checkpointing` (full), `--gradient-checkpointing selective`, `--no-gradient-checkpointing`."""
    p.add_argument("--gradient-checkpointing", nargs="?", const=True, default=None, type=_checkpoint_mode,
                   metavar="selective", help="recompute activations in the backward pass: each layer's whole "
                   "forward, or (selective) only its element-wise ops, keeping GEMM and attention outputs")
    p.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false", default=None)


def finetune_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="run the recipe once (offline defaults: SmolLM2-135M on Alpaca demo rows)")
    p.add_argument("--config", help="YAML recipe file, or a shipped recipe name: recipe, quick, fast")
    p.add_argument("--preset", help="a recipe file or shipped name layered over --config (e.g. fast)")
    p.add_argument("--fast", action="store_const", const="fast", dest="preset",
                   help="the fastest settings xeonft has measured that keep the recipe's loss (= --preset fast)")
    p.add_argument("--model", help="default | path/to/model.gguf | local dir | Hub id | synthetic:<shape>")
    p.add_argument("--tokenizer", help="tokenizer dir or Hub id (default: the model's, or the default model's)")
    p.add_argument("--dataset", help="default | file.json/.jsonl/.parquet/.csv | Hub dataset id")
    p.add_argument("--trust-remote-code", action="store_true", default=None, help="allow a model's own code to run")
    p.add_argument("--train-size", type=int)
    p.add_argument("--eval-size", type=int)
    p.add_argument("--max-steps", type=int, help="stop after N optimizer steps (default: one epoch)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seq-len", type=int, help="packed sequence length (SFTConfig.max_length)")
    p.add_argument("--eval-steps", type=int)
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--precision", help="fp32 | bf16-autocast | bf16 | bf16-mixed")
    p.add_argument("--backend", help="eager | compile | compile-layers | ipex")
    p.add_argument("--gradient-accumulation-steps", type=int)
    p.add_argument("--optim", help="a transformers optimizer name (adamw_torch, adamw_torch_fused, ...)")
    p.add_argument("--threads", type=int)
    p.add_argument("--lora-r", type=int)
    p.add_argument("--lora-alpha", type=float)
    p.add_argument("--lora-init", help="olora | default | gaussian | pissa")
    checkpointing_flags(p)
    p.add_argument("--prompt", action="append", dest="prompts", help="prompt to generate for (repeatable)")
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run folder (default: results/runs/<time>-<hash>)")


def history_parsers(sub: argparse._SubParsersAction) -> None:
    hist = sub.add_parser("history", help="a cell's throughput across library versions, dates or commits, with "
                          "change points (the catalog of result sets)")
    hist.add_argument("--add", nargs="+", default=[], metavar="RESULTS", help="add result sets to the catalog first")
    hist.add_argument("--check", metavar="RESULTS", help="compare a result set with the catalog's last good result of "
                      "the same machine; exit 1 when a cell is slower")
    hist.add_argument("--cell", help="only cells matching key=value[,key=value] (e.g. precision=bf16,batch_size=4)")
    hist.add_argument("--by", default="transformers", help="transformers | torch | peft | trl | ... | date | commit")
    hist.add_argument("--catalog", default="results/catalog.sqlite", help="the catalog file")
    hist.add_argument("--out", default="reports/history", help="the trend page's folder (default reports/history)")
    hist.add_argument("--threshold", default="5%", help="smallest change that counts (default 5%%)")
    hist.add_argument("--alpha", type=float, default=0.01)
    bis = sub.add_parser("bisect", help="find the release of a library that changed a cell's throughput (or loss)")
    bis.add_argument("--lib", action="append", required=True,
                     help="the library to bisect; a second --lib moves with the first (same major.minor)")
    bis.add_argument("--good", required=True)
    bis.add_argument("--bad", required=True)
    bis.add_argument("--matrix", default="bench/matrices/bisect.yaml", help="the matrix holding the cell")
    bis.add_argument("--cell", help="which configuration of the matrix (key=value,...), when it has several")
    bis.add_argument("--metric", choices=["throughput", "loss"], default="throughput")
    bis.add_argument("--runs", type=int, default=3, help="runs per version (more where a verdict needs them)")
    bis.add_argument("--max-runs", type=int, default=6)
    bis.add_argument("--threshold", default="5%")
    bis.add_argument("--alpha", type=float, default=0.01)
    bis.add_argument("--out", help="result set (default results/bisect-LIB-GOOD-BAD)")

"""Flags more than one verb takes, and the recipe's flags derived from `FinetuneConfig`'s fields.

A field of the recipe is a flag by default: `--kebab-case` of its name, typed by its annotation, with its
description as help. A field added later gets its flag without anyone listing it (tests/test_cli.py holds that),
and the overrides handed to `load_config` come from the same list as the flags.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal

from harness.config.finetune import FinetuneConfig, shipped_recipes

# Fields that are deliberately not flags, and why.
NOT_FLAGS: dict[str, str] = {
    "lora_target_modules": "'all-linear' or a list of module names: a recipe file says it",
}
# A field whose flag is not its own name: a list field's flag names one item and repeats (--prompt A --prompt B).
FLAG_NAMES: dict[str, str] = {"prompts": "prompt", "num_train_epochs": "epochs"}
FIELD_FLAGS: tuple[str, ...] = tuple(f for f in FinetuneConfig.model_fields if f not in NOT_FLAGS)


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


def trust_remote_code_flag(p: argparse.ArgumentParser, help: str = "allow a model's own code to run") -> None:
    """`--trust-remote-code`: only the command line can turn it on (a recipe file or a matrix never can)."""
    p.add_argument("--trust-remote-code", action="store_true", default=None, help=help)


def recipe_flags(p: argparse.ArgumentParser, config_default: str | None = None) -> None:
    """`--config` (the recipe), `--preset` layered over it, `--fast` (= --preset fast)."""
    names = ", ".join(shipped_recipes())
    p.add_argument("--config", default=config_default,
                   help=f"YAML recipe file, or a shipped recipe name: {names}"
                   + (f" (default: {config_default})" if config_default else ""))
    p.add_argument("--preset", help="a recipe file or shipped name layered over --config (e.g. fast)")
    p.add_argument("--fast", action="store_const", const="fast", dest="preset",
                   help="the fastest settings xeonft has measured that keep the recipe's loss (= --preset fast)")


def _flag_kwargs(name: str, annotation: Any) -> dict[str, Any]:
    """argparse's keywords for a field of this annotation; a type it cannot say as a flag is a TypeError."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        if len(args) != 1:
            raise TypeError(f"FinetuneConfig.{name}: no flag for {annotation}; give it one or add it to NOT_FLAGS")
        return _flag_kwargs(name, args[0])
    if typing.get_origin(annotation) is Literal:
        return {"choices": args, "type": type(args[0])}
    if typing.get_origin(annotation) in (tuple, list) and args[0] is str:
        return {"action": "append", "type": str}
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if annotation in (int, float, str):
        return {"type": annotation}
    raise TypeError(f"FinetuneConfig.{name}: no flag for {annotation}; give it one or add it to NOT_FLAGS")


def field_flags(p: argparse.ArgumentParser, fields: Iterable[str] = FIELD_FLAGS) -> None:
    """One flag per recipe field named, each defaulting to None ("not given": the recipe's value stands)."""
    for name in fields:
        if name == "gradient_checkpointing":
            checkpointing_flags(p)
        elif name == "trust_remote_code":
            trust_remote_code_flag(p)
        else:
            info = FinetuneConfig.model_fields[name]
            p.add_argument(f"--{FLAG_NAMES.get(name, name).replace('_', '-')}", dest=name, default=None,
                           help=info.description, **_flag_kwargs(name, info.annotation))


def field_overrides(args: argparse.Namespace, fields: Iterable[str] = FIELD_FLAGS) -> dict[str, Any]:
    """The recipe fields given on the command line, for `load_config(..., **overrides)`."""
    return {name: getattr(args, name) for name in fields if getattr(args, name, None) is not None}

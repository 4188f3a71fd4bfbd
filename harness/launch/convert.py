"""The GGUF-based models a sweep's cells load, converted into the cache by xeonft's own environment before any cell
runs. The converted folder is shared by every stack of one transformers major version, so whichever cell converted
it first decided it for all: in a bisect that was the oldest stack, and transformers 5.4.0 (no `GgufConfig`) read
the default model's weights as noise (loss 11.1 on an English sentence, against 1.4 converted by 5.23), under
every 5.x stack of the sweep. Converting here first makes the folder the launcher's environment's; a conversion
that fails its check (`harness.cell.models.converted_check`) stops the sweep before anything is measured."""

from __future__ import annotations

from harness.base.errors import Failure
from harness.cell.models import needs_conversion
from harness.config.spec import CellSpec
from harness.launch.console import console
from harness.launch.helper import run_module

TIMEOUT_S = 900


def outside(specs: list[CellSpec]) -> bool:
    """Some cell runs in a library environment other than the launcher's (a stack, or a named environment)."""
    return any(s.launch.stack is not None or s.launch.env != "default" for s in specs)


def prepare_models(specs: list[CellSpec], stacks: bool = False) -> None:
    """Convert each GGUF-based model the cells name, once, here (a few seconds when it is converted already); where
    every cell runs in this environment (and not `stacks`: a bisect's are all stacks) the first cell converts it as
    before, with the same transformers."""
    if not (stacks or outside(specs)):
        return
    for name in sorted({s.config.model for s in specs if needs_conversion(s.config.model, s.config.tokenizer)}):
        why = run_module("harness.cell.models", [name], TIMEOUT_S)
        if why is not None:
            raise Failure(f"model '{name}': {why[:600]}")
        console.print(f"model {name}: converted by xeonft's own environment (checked), shared by every stack")

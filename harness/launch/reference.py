"""The sweep's reference eval token ids: made once per eval set, in the launcher's own environment, before the first
cell that evaluates, and handed to every cell (`harness.cell.reference_tokens`), so that the own eval loss of every
library stack is over the same ids. Only where the cells span more than one environment: in one, each cell's own
tokenizer already makes the same ids, and the extra process (a few seconds) would be time not measuring."""

from __future__ import annotations

import tempfile
from pathlib import Path

from harness.cell.reference_tokens import token_key
from harness.config.spec import CellSpec
from harness.launch.console import console
from harness.launch.helper import run_module

FOLDER = "own-eval-tokens"  # inside the result set: the ids its cells evaluated stay with them
TIMEOUT_S = 600


def environments(specs: list[CellSpec]) -> int:
    """How many library environments the cells run in (a stack or a named environment each)."""
    return len({(s.launch.env, s.launch.stack.name if s.launch.stack else None) for s in specs})


def evaluates(spec: CellSpec) -> bool:
    """A cell that runs the evaluation (and the own eval loss): a configuration's first run, or every run when the
    matrix asks (`harness.cell.train`)."""
    return spec.config.eval_size != 0 and (spec.repeat == 0 or spec.evaluate == "every")


class ReferenceTokens:
    """Attaches the reference file to the cells that evaluate; makes each file once (kept in the result set, so a
    resumed sweep reuses it). Where it cannot be made, the cells evaluate their own tokenizer's ids, as before, and
    the sweep says why once."""

    def __init__(self, root: Path) -> None:
        self.folder = root / FOLDER
        self.failed: dict[str, str] = {}

    def attach(self, spec: CellSpec) -> CellSpec:
        if not evaluates(spec):
            return spec
        key = token_key(spec.config)
        path = self.folder / f"{key}.json"
        if not path.is_file() and key not in self.failed:
            self._make(spec, path, key)
        return spec.model_copy(update={"own_eval_tokens": str(path.resolve())}) if path.is_file() else spec

    def _make(self, spec: CellSpec, path: Path, key: str) -> None:
        console.print("own eval loss: the eval rows tokenized once in xeonft's own environment, for every stack's "
                      f"cells ({path.name}) ...")
        with tempfile.TemporaryDirectory(prefix="xeonft-tokens-") as tmp:
            spec_path = Path(tmp) / "spec.json"
            spec_path.write_text(spec.model_dump_json(), encoding="utf-8")
            why = run_module("harness.cell.reference_tokens", [str(spec_path), str(path)], TIMEOUT_S)
        if why is not None:
            self.failed[key] = why
            console.print(f"[yellow]own eval loss:[/] the reference ids could not be made ({why[:300]}); each stack "
                          "evaluates its own tokenizer's ids, which may differ")

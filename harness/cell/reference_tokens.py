"""One set of eval token ids for every library stack of a sweep: `python -m harness.cell.reference_tokens SPEC OUT`.

Each stack tokenizes with its own tokenizer, and two transformers releases can convert one model's tokenizer
differently (the default model's GGUF tokenizer split the 64 eval rows into 12,847 tokens under transformers 4.52
and 12,783 under 5.23), so each stack's own eval loss was over other tokens and the two could not be compared. The
launcher runs this module once per eval set in its own environment and hands the file to every cell
(`CellSpec.own_eval_tokens`): the own eval loss of every stack is then over the same token ids. What each stack
trains on is left as its own tokenizer makes it: that is part of the work being compared.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from harness.base.errors import XeonftError
from harness.cell.common_eval import digest, eval_rows
from harness.config.finetune import FinetuneConfig
from harness.config.spec import CellSpec

FORMAT = "xeonft-eval-tokens"
VERSION = 1
# What decides the eval rows' token ids (the model's tokenizer, the data, the split, the cut), nothing else.
KEY_FIELDS = ("model", "tokenizer", "dataset", "train_size", "eval_size", "split_seed", "seq_len")


def token_key(cfg: FinetuneConfig) -> str:
    """The eval set's key: cells whose configurations agree on `KEY_FIELDS` evaluate the same rows."""
    document = {f: getattr(cfg, f) for f in KEY_FIELDS}
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()[:16]


def make(cfg: FinetuneConfig) -> dict[str, Any]:
    """The eval rows' token ids as this environment's tokenizer makes them, with what made them."""
    from harness.cell.data import load_splits
    from harness.cell.models import resolve_tokenizer
    from harness.measure.fingerprint import versions

    _, eval_ds = load_splits(cfg.dataset, cfg.train_size, cfg.eval_size, cfg.split_seed)
    if eval_ds is None:
        raise XeonftError("the configuration has no eval rows (eval_size 0): nothing to tokenize")
    tokenizer = resolve_tokenizer(cfg.model, cfg.tokenizer, cfg.trust_remote_code)
    rows = eval_rows(tokenizer, eval_ds, cfg)
    made = versions()
    return {"format": FORMAT, "version": VERSION, "key": token_key(cfg), "digest": digest(rows),
            "vocab_size": len(tokenizer), "tokens": sum(len(r) for r in rows),
            "made_with": {k: made.get(k) for k in ("transformers", "tokenizers", "datasets")}, "rows": rows}


def write(cfg: FinetuneConfig, out: Path) -> dict[str, Any]:
    """`make`, written whole or not at all."""
    document = make(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(json.dumps(document), encoding="utf-8")
    tmp.replace(out)
    return document


def read(path: Path, vocab_size: int | None = None) -> list[list[int]]:
    """The token ids of a file `write` made, checked: a damaged, foreign or mismatched file is one XeonftError
    naming it (a cell must not evaluate ids its model does not have)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise XeonftError(f"the eval tokens file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise XeonftError(f"the eval tokens file {path} cannot be read: {type(err).__name__}: {err}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise XeonftError(f"the eval tokens file {path} is not one xeonft wrote (no format '{FORMAT}')")
    if document.get("version") != VERSION:
        raise XeonftError(f"the eval tokens file {path} has version {document.get('version')!r}; this xeonft "
                          f"reads version {VERSION}")
    rows = document.get("rows")
    if not isinstance(rows, list) or not rows or not all(
            isinstance(r, list) and len(r) > 1 and all(type(t) is int and t >= 0 for t in r) for r in rows):
        raise XeonftError(f"the eval tokens file {path} holds no rows of token ids (lists of at least two "
                          "non-negative integers)")
    if digest(rows) != document.get("digest"):
        raise XeonftError(f"the eval tokens file {path} is damaged: its rows do not match its digest")
    top = max(max(r) for r in rows)
    if vocab_size is not None and top >= vocab_size:
        raise XeonftError(f"the eval tokens file {path} holds token id {top}, outside this model's vocabulary "
                          f"({vocab_size} tokens): it was made for another tokenizer")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Exit 0 with the file written, 2 with one line on stderr saying why not."""
    from harness.cell.protocol import module_main

    def body(args: list[str]) -> None:
        write(CellSpec.model_validate_json(Path(args[0]).read_text(encoding="utf-8")).config, Path(args[1]))

    return module_main(argv, "python -m harness.cell.reference_tokens SPEC.json OUT.json", 2, body)


if __name__ == "__main__":
    raise SystemExit(main())

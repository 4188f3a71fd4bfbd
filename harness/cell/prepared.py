"""Tokenized and packed data, kept across cells by what they were made from.

Every cell of a sweep tokenizes and packs the same rows again (trl's SFTTrainer does it as it is built). What
comes out depends only on the rows, the tokenizer, the prompt template, how trl prepares (sequence length,
packing and its strategy, the few SFTConfig fields its preparation reads) and the versions of the libraries that
do it; `prep_key` digests all of them, so a cell reads a prepared split (`datasets.load_from_disk`, memory-mapped)
only where preparing it again would give the same rows. Stored under the cache folder's `prepared/` (rebuilt at
will: `xeonft cache prune` removes it), one folder per split, written whole or not at all.
`XEONFT_DATA_CACHE=off` prepares every cell afresh (what a cold cache measures).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from harness.cell import prompts
from harness.cell.assets import cache_dir

SWITCH = "XEONFT_DATA_CACHE"
# What trl's dataset preparation reads of its SFTConfig (a field a trl release lacks digests as None).
PREP_FIELDS = ("max_length", "packing", "packing_strategy", "padding_free", "eval_packing", "shuffle_dataset", "seed",
               "dataset_text_field", "completion_only_loss", "assistant_only_loss", "truncation_mode", "eos_token",
               "pad_token", "chat_template_path")
LIBRARIES = ("trl", "datasets", "transformers", "tokenizers")


def enabled() -> bool:
    return os.environ.get(SWITCH, "on").strip().lower() not in ("off", "0", "no", "false")


def folder() -> Path:
    return cache_dir() / "prepared"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rows_digest(ds: Any) -> str:
    """The rows themselves (every column, in order), not where they came from."""
    return _sha(json.dumps(ds.to_dict(), sort_keys=True, ensure_ascii=False, default=str).encode())


def tokenizer_digest(tokenizer: Any) -> str:
    """The tokenizer's whole definition: a fast tokenizer's serialized pipeline (vocabulary, merges, normalizer,
    post-processor), else its vocabulary; its special tokens either way."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    special = {"class": type(tokenizer).__name__, "eos": tokenizer.eos_token_id, "bos": tokenizer.bos_token_id,
               "pad": tokenizer.pad_token_id, "special": getattr(tokenizer, "special_tokens_map", None),
               "add_bos": getattr(tokenizer, "add_bos_token", None),
               "add_eos": getattr(tokenizer, "add_eos_token", None)}
    return _sha(body.encode() + json.dumps(special, sort_keys=True, default=str).encode())


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for lib in LIBRARIES:
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            out[lib] = None
    return out


def prep_key(split: str, rows: str, tokenizer: str, args: Any, packing: bool) -> str:
    """The digest of everything that decides a prepared split: its rows', the tokenizer's, the template (the prompt
    module's source), trl's preparation settings (`packing` as this split is packed) and the libraries' versions."""
    settings = {f: getattr(args, f, None) for f in PREP_FIELDS}
    document = {"split": split, "rows": rows, "tokenizer": tokenizer, "packing": packing, "settings": settings,
                "template": _sha(Path(prompts.__file__).read_bytes()), "versions": _versions()}
    return _sha(json.dumps(document, sort_keys=True, default=str).encode())[:32]


def load(key: str) -> Any | None:
    """The prepared split stored under `key`, or None (absent, or unreadable: then it is prepared again)."""
    path = folder() / key
    if not path.is_dir():
        return None
    import datasets

    try:
        return datasets.load_from_disk(str(path))
    except Exception:  # a damaged entry is a miss; it is replaced when the split is stored again
        return None


def store(key: str, ds: Any) -> None:
    """Keep a prepared split under `key`, whole: written beside its place, then renamed into it (a reader never
    sees half of one; of two cells storing the same split, the second finds it there and drops its own)."""
    target = folder() / key
    partial = target.with_name(f"{key}.{os.getpid()}.partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(partial, ignore_errors=True)
    ds.save_to_disk(str(partial))
    try:
        partial.rename(target)
    except OSError:  # stored meanwhile by another cell
        shutil.rmtree(partial, ignore_errors=True)
        if load(key) is None:
            shutil.rmtree(target, ignore_errors=True)

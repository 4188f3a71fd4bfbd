"""The one place that turns a dataset name into train and eval splits of Alpaca rows.

Accepted names: ``default`` (the 999-row Alpaca demo set, see harness.cell.assets), a local JSON / JSONL / Parquet /
CSV file, or a Hugging Face Hub dataset id. Rows need ``instruction`` and ``output``; ``input`` may be absent.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.base.errors import XeonftError
from harness.cell.assets import DEFAULT_DATA, ensure

REQUIRED = ("instruction", "output")
LOADERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
# The recipe's split of alpaca-cleaned: 5000 train, 500 eval; smaller data keeps the same 10:1 ratio.
RECIPE_TRAIN, RECIPE_EVAL = 5000, 500


def _load(name: str) -> tuple[Any, str]:
    import datasets

    datasets.disable_progress_bars()
    if name == "default":
        path = ensure(DEFAULT_DATA)
        return datasets.load_dataset("json", data_files=str(path), split="train"), str(path)
    path = Path(name).expanduser()
    if path.suffix.lower() in LOADERS or path.exists():
        if not path.is_file():
            raise XeonftError(f"dataset file not found: {path}")
        if path.stat().st_size == 0:
            raise XeonftError(f"dataset '{path}' is empty (0 bytes): it has no rows")
        loader = LOADERS.get(path.suffix.lower())
        if loader is None:
            raise XeonftError(f"dataset '{path}': unsupported file type; use one of {', '.join(LOADERS)}")
        try:
            with _globless(path) as safe:
                return datasets.load_dataset(loader, data_files=str(safe), split="train"), str(path)
        except Exception as err:  # datasets raises many types for unreadable files
            if "corresponds to no data" in str(err):
                raise XeonftError(f"dataset '{path}' has no rows") from None
            raise XeonftError(f"dataset '{path}': could not read it as {loader}: {err}") from None
    if name.startswith((".", "/", "~")) or name.count("/") > 1:  # a local path, not a Hub id: never look it up
        raise XeonftError(f"dataset file not found: {path}")
    if name.count("/") == 1:
        try:
            return datasets.load_dataset(name, split="train"), name
        except Exception as err:
            raise XeonftError(f"dataset '{name}': could not load it from the Hugging Face Hub: {err}") from None
    raise XeonftError(
        f"unknown dataset '{name}': expected 'default', a .json/.jsonl/.parquet/.csv file, or a Hub id org/name"
    )


@contextlib.contextmanager
def _globless(path: Path) -> Iterator[Path]:
    """The file under a name without glob characters: `datasets` reads `data_files` as a glob pattern, so a file
    named 'rows [v2].json' would match nothing (or other files). A symlink in a temporary folder avoids it."""
    if not any(c in str(path) for c in "[]*?{}"):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="xeonft-data-") as tmp:
        link = Path(tmp) / f"data{path.suffix.lower()}"
        link.symlink_to(path.resolve())
        yield link


def load_rows(name: str) -> Any:
    """Load and validate Alpaca rows: the needed columns present, at least one row, input filled as ''."""
    ds, where = _load(name)
    missing = [c for c in REQUIRED if c not in ds.column_names]
    if missing:
        raise XeonftError(
            f"dataset '{where}' lacks column(s) {', '.join(missing)}; it has {', '.join(ds.column_names) or 'none'}"
            " (Alpaca rows need instruction and output, optionally input)"
        )
    if len(ds) == 0:
        raise XeonftError(f"dataset '{where}' has no rows")
    for column in REQUIRED:
        try:
            bad = [i for i, v in enumerate(ds[column]) if not isinstance(v, str) or not v.strip()]
        except UnicodeDecodeError as err:  # datasets decodes text lazily, on first access
            raise XeonftError(f"dataset '{where}' is not UTF-8 text ({err.reason} at byte {err.start})") from None
        if bad:
            raise XeonftError(f"dataset '{where}': {len(bad)} row(s) have an empty or null {column} (first: row "
                              f"{bad[0] + 1}); every Alpaca row needs text there")
    if "input" not in ds.column_names:
        ds = ds.add_column("input", [""] * len(ds))
    return ds.map(lambda r: {"input": r["input"] or ""}).select_columns(["instruction", "input", "output"])


def split_sizes(n: int, train_size: int | None, eval_size: int | None) -> tuple[int, int]:
    """The recipe's 5000/500 where the data allows, else the same 10:1 ratio; explicit sizes must fit."""
    if train_size is None and eval_size is None:
        if n >= RECIPE_TRAIN + RECIPE_EVAL:
            return RECIPE_TRAIN, RECIPE_EVAL
        eval_size = max(1, round(n * RECIPE_EVAL / (RECIPE_TRAIN + RECIPE_EVAL))) if n > 1 else 0
        return n - eval_size, eval_size
    if eval_size is None:
        eval_size = max(0, min(n - (train_size or 0), RECIPE_EVAL))
    if train_size is None:
        train_size = n - eval_size
    if train_size < 1 or train_size + eval_size > n:
        raise XeonftError(f"train_size {train_size} + eval_size {eval_size} do not fit a dataset of {n} rows")
    return train_size, eval_size


def load_splits(name: str, train_size: int | None, eval_size: int | None, seed: int) -> tuple[Any, Any | None]:
    """Train and eval splits, shuffled with a fixed seed as in the recipe (eval is None when eval_size is 0)."""
    ds = load_rows(name)
    n_train, n_eval = split_sizes(len(ds), train_size, eval_size)
    if n_eval == 0:
        return ds.shuffle(seed=seed).select(range(n_train)), None
    parts = ds.train_test_split(train_size=n_train, test_size=n_eval, shuffle=True, seed=seed)
    return parts["train"], parts["test"]

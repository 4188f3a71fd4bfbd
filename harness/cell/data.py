"""The one place that turns a dataset name into train and eval splits of Alpaca rows.

Accepted names: ``default`` (the 999-row Alpaca demo set, see harness.cell.assets), a local JSON / JSONL / Parquet /
CSV file, or a Hugging Face Hub dataset id. Rows need ``instruction`` and ``output``; ``input`` may be absent.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.base.errors import XeonftError
from harness.base.sniff import json_problem, parquet_problem, text_problem
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
        if loader == "json":  # checked first: pyarrow's reader crashes the process (SIGSEGV) on a bare `null`
            problem = _file_problem(path, rows=False)
            if problem:
                raise XeonftError(f"dataset '{path}' {problem}")
        try:
            with _globless(path) as safe:
                return datasets.load_dataset(loader, data_files=str(safe), split="train"), str(path)
        except Exception as err:  # datasets raises many types for unreadable files: say what is wrong instead
            if "corresponds to no data" in str(err):
                raise XeonftError(f"dataset '{path}' has no rows") from None
            problem = _file_problem(path)
            if problem:
                raise XeonftError(f"dataset '{path}' {problem}") from None
            cause = str(err.__cause__ or err).strip().splitlines() or [type(err).__name__]
            raise XeonftError(f"dataset '{path}': could not read it as {loader}: {cause[-1][:200]}") from None
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


def _file_problem(path: Path, rows: bool = True) -> str | None:
    """Why a file is not what its name claims: its encoding, the first line that does not parse, an item that is
    not a row, or (with `rows`, for JSON rows that parse) the first row whose instruction or output is not text."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return parquet_problem(path)
    if suffix in (".json", ".jsonl"):
        problem = json_problem(path, lines=suffix == ".jsonl")
        if problem:
            return problem
        text = path.read_text(encoding="utf-8")
        data = [json.loads(line) for line in text.splitlines() if line.strip()] if suffix == ".jsonl" \
            else json.loads(text)
        if isinstance(data, dict):  # columns of lists, which datasets reads; a failure then is about the rows
            return "holds a JSON object, not a list of rows" if rows else None
        if not isinstance(data, list):
            return f"holds a JSON {_json_type(data)}, not a list of rows"
        if not all(isinstance(r, dict) for r in data):
            first = next(i for i, r in enumerate(data) if not isinstance(r, dict))
            return f"is not a list of rows: item {first + 1} is a {_json_type(data[first])}, not an object"
        return row_problem(data) if rows else None
    return text_problem(path)


def _json_type(value: object) -> str:
    names = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string", list: "list"}
    return names.get(type(value), type(value).__name__)


def _what(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "empty"
    kind = {bool: "a boolean", int: "an integer", float: "a number", list: "a list", dict: "an object"}
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return f"{kind.get(type(value), 'a ' + type(value).__name__)} ({shown}), not text"


def row_problem(rows: Iterable[dict[str, Any]]) -> str | None:
    """The first row (counted from 1) whose instruction or output is missing, null, empty or not text, naming that
    field and what it holds, and how many rows share a problem."""
    first: str | None = None
    bad = 0
    for number, row in enumerate(rows, 1):
        problems = [f"{c} is missing" if c not in row else f"{c} is {_what(row[c])}" for c in REQUIRED
                    if not isinstance(row.get(c), str) or not row[c].strip()]
        if problems:
            bad += 1
            first = first or f"row {number}: {' and '.join(problems)}"
    if first is None:
        return None
    return f"{first} ({bad} row(s) in all); every Alpaca row needs text in instruction and output"


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
    if missing and Path(where).suffix.lower() in (".json", ".jsonl") and Path(where).is_file():
        found = _file_problem(Path(where), rows=False)  # datasets reads some non-rows as a `text` column
        if found:
            raise XeonftError(f"dataset '{where}' {found}")
    if missing:
        raise XeonftError(
            f"dataset '{where}' lacks column(s) {', '.join(missing)}; it has {', '.join(ds.column_names) or 'none'}"
            " (Alpaca rows need instruction and output, optionally input)"
        )
    if len(ds) == 0:
        raise XeonftError(f"dataset '{where}' has no rows")
    try:
        columns = [list(ds[c]) for c in REQUIRED]
    except UnicodeDecodeError as err:  # datasets decodes text lazily, on first access: name the file's byte
        found = _file_problem(Path(where)) if Path(where).is_file() else None
        raise XeonftError(f"dataset '{where}' {found or f'is not UTF-8 text ({err.reason})'}") from None
    problem = row_problem(dict(zip(REQUIRED, values, strict=True)) for values in zip(*columns, strict=True))
    if problem:
        raise XeonftError(f"dataset '{where}': {problem}")
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

import json

import pytest

from harness.base.errors import XeonftError
from harness.cell.data import load_rows, load_splits, split_sizes
from tests.conftest import ROWS


def test_jsonl_rows_load_and_split_with_a_fixed_seed(rows_file):
    train, evals = load_splits(str(rows_file), None, None, seed=42)
    assert len(train) + len(evals) == len(ROWS) and len(evals) >= 1
    again, _ = load_splits(str(rows_file), None, None, seed=42)
    assert train["instruction"] == again["instruction"]
    other, _ = load_splits(str(rows_file), None, None, seed=7)
    assert train["instruction"] != other["instruction"]


@pytest.mark.parametrize("suffix", ["csv", "parquet", "json"])
def test_other_formats_load(tmp_path, suffix):
    import pandas as pd

    df = pd.DataFrame(ROWS[:5])
    path = tmp_path / f"rows.{suffix}"
    if suffix == "csv":
        df.to_csv(path, index=False)
    elif suffix == "parquet":
        df.to_parquet(path)
    else:
        path.write_text(json.dumps(ROWS[:5]))
    ds = load_rows(str(path))
    assert ds["instruction"] == [r["instruction"] for r in ROWS[:5]]


def test_rows_without_an_input_column_get_empty_inputs(tmp_path):
    path = tmp_path / "no_input.jsonl"
    path.write_text("".join(json.dumps({"instruction": "Hi", "output": "Hello"}) + "\n" for _ in range(3)))
    assert load_rows(str(path))["input"] == ["", "", ""]


def test_recipe_split_on_large_data_and_ratio_on_small():
    assert split_sizes(52000, None, None) == (5000, 500)
    assert split_sizes(999, None, None) == (908, 91)
    assert split_sizes(100, 50, 10) == (50, 10)
    with pytest.raises(XeonftError, match="do not fit"):
        split_sizes(10, 9, 5)


def test_dataset_without_the_columns_is_refused_by_name(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"prompt": "hi", "completion": "hello"}) + "\n")
    with pytest.raises(XeonftError, match=r"lacks column\(s\) instruction, output"):
        load_rows(str(path))


def test_empty_dataset_is_refused(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("instruction,input,output\n")
    with pytest.raises(XeonftError, match="has no rows"):
        load_rows(str(path))


def test_missing_file_and_unknown_names_are_refused(tmp_path):
    with pytest.raises(XeonftError, match="dataset file not found"):
        load_rows(str(tmp_path / "missing.jsonl"))
    with pytest.raises(XeonftError, match="unknown dataset 'alpaca'"):
        load_rows("alpaca")
    with pytest.raises(XeonftError, match="could not load it from the Hugging Face Hub"):
        load_rows("no-such-org/no-such-dataset")

"""compare: a real slowdown is flagged, noise is not, changed losses are, exit codes are as documented."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.cli import main
from harness.analysis.compare import compare, parse_threshold
from harness.errors import XeonftError
from harness.launch.sweep import run_sweep
from harness.config.matrix import parse_matrix
from harness.results.store import ResultStore
from tests.conftest import tiny_matrix


def synthetic_set(root, rng, speed=(100.0, 100.0), loss_scale=1.0, steps=12, status="ok", name="s"):
    """A result set in the store's own format, its per-step numbers drawn from a given distribution."""
    m = parse_matrix({"name": name, "fixed": {"model": "synthetic:tiny"}, "axes": {"batch_size": [1, 2]}})
    store = ResultStore(root)
    store.open(m.document, {"cpu": {}}, "env", [c.key("env") for c in m.cells], resume=False)
    for cell, mean in zip(m.cells, speed, strict=True):
        seconds = 1000 / rng.normal(mean, mean * 0.03, size=steps)
        losses = loss_scale * (3.0 - 0.1 * np.arange(steps))
        result = {"summary": {"warmup_steps": 1},
                  "steps": [{"step": i + 1, "seconds": float(s), "tokens": 1000, "loss": float(lo)}
                            for i, (s, lo) in enumerate(zip(seconds, losses, strict=True))],
                  "eval_loss": float(losses[-1])}
        store.put(cell.key("env"), {"key": cell.key("env"), "match_key": cell.match_key(), "status": status,
                                    "axes": {"batch_size": cell.config.batch_size}, "result": result})
    return root


def test_a_20_percent_slowdown_is_flagged(tmp_path):
    rng = np.random.default_rng(1)
    base = synthetic_set(tmp_path / "a", rng)
    new = synthetic_set(tmp_path / "b", rng, speed=(80.0, 100.0))
    result = compare(base, new)
    verdicts = {c.cell: c for c in result.cells}
    slow = verdicts["batch_size=1"]
    assert slow.verdict == "slower" and slow.ratio == pytest.approx(0.8, abs=0.03) and slow.p_value < 0.01
    assert slow.ci_low < slow.ratio < slow.ci_high < 1
    assert verdicts["batch_size=2"].verdict == "unchanged"
    assert result.regressed


def test_two_sets_from_one_distribution_are_not_flagged(tmp_path):
    rng = np.random.default_rng(2)
    flagged = 0
    for trial in range(10):
        base = synthetic_set(tmp_path / f"a{trial}", rng)
        new = synthetic_set(tmp_path / f"b{trial}", rng)
        flagged += compare(base, new).regressed
    assert flagged == 0


def test_a_small_significant_change_below_the_threshold_is_not_a_regression(tmp_path):
    rng = np.random.default_rng(3)
    result = compare(synthetic_set(tmp_path / "a", rng, steps=60), synthetic_set(tmp_path / "b", rng, steps=60,
                                                                                 speed=(97.0, 100.0)))
    assert not result.regressed


def test_changed_loss_is_flagged_even_at_equal_speed(tmp_path):
    rng = np.random.default_rng(4)
    result = compare(synthetic_set(tmp_path / "a", rng), synthetic_set(tmp_path / "b", rng, loss_scale=1.1))
    assert result.regressed and all(c.loss_changed for c in result.cells)
    assert all(c.verdict == "unchanged" for c in result.cells)


def test_a_cell_that_now_fails_is_a_regression(tmp_path):
    rng = np.random.default_rng(5)
    result = compare(synthetic_set(tmp_path / "a", rng), synthetic_set(tmp_path / "b", rng, status="failed"))
    assert {c.verdict for c in result.cells} == {"failed"} and result.regressed


def test_exit_codes(tmp_path, capsys):
    rng = np.random.default_rng(6)
    a = synthetic_set(tmp_path / "a", rng)
    same = synthetic_set(tmp_path / "same", rng)
    slow = synthetic_set(tmp_path / "slow", rng, speed=(80.0, 80.0))
    assert main(["compare", str(a), str(same)]) == 0
    assert main(["compare", str(a), str(slow), "--threshold", "5%", "--json", str(tmp_path / "c.json")]) == 1
    assert json.loads((tmp_path / "c.json").read_text())["regressed"] is True
    assert "REGRESSION" in capsys.readouterr().out
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2
    assert "is not a result set" in capsys.readouterr().err
    assert main(["compare", str(a), str(same), "--threshold", "lots"]) == 2
    assert "bad threshold 'lots'" in capsys.readouterr().err


def test_threshold_parsing():
    assert parse_threshold("5%") == pytest.approx(0.05) and parse_threshold("0.1") == pytest.approx(0.1)
    with pytest.raises(XeonftError, match="bad threshold"):
        parse_threshold("five")


def test_a_real_slowed_cell_is_caught_end_to_end(rows_file, tokenizer_dir, tmp_path):
    """Real sweeps of one tiny cell, the last one slowed on purpose inside every step.

    Whether an unslowed rerun is flagged depends on this shared machine's run-to-run noise (tiny steps of a few
    milliseconds), so that half is tested on drawn samples above; here only its losses, which are deterministic.
    """
    measure = {"warmup_steps": 2, "steps": 16}
    # steps of tens of milliseconds, not a few: scheduler jitter must stay small beside the injected slowdown
    axes = {"precision": ["fp32"], "pinning": ["cores"], "seq_len": [256], "batch_size": [2]}
    base_m = tiny_matrix(rows_file, tokenizer_dir, axes=axes, exclude=[], measure=measure)
    slow_m = tiny_matrix(rows_file, tokenizer_dir, axes={**axes, "inject_fault": ["slow"]}, exclude=[],
                         measure=measure)
    base = run_sweep(base_m, out=tmp_path / "base")
    again = run_sweep(base_m, out=tmp_path / "again")
    slow = run_sweep(slow_m, out=tmp_path / "slow")
    slowed = compare(base.root, slow.root, threshold=0.1)
    assert [c.verdict for c in slowed.cells] == ["slower"], slowed.to_markdown()
    assert slowed.regressed
    rerun = compare(base.root, again.root, threshold=0.1)
    assert rerun.cells[0].loss_drift == pytest.approx(0.0, abs=1e-6) and not rerun.cells[0].loss_changed

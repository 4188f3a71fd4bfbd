"""One extra profiled step: categories of operator time, kept out of the measured steps; a one-cell report."""

from __future__ import annotations

import pytest

from harness.measure.profile import categorize
from harness.render.report import render
from tests.conftest import disk_records


def test_operators_fall_into_categories():
    out = categorize([("aten::mm", 3.0), ("aten::_scaled_dot_product_flash_attention", 1.0), ("aten::silu", 0.5),
                      ("Optimizer.step#AdamW.step", 0.25), ("aten::copy_", 0.25), ("aten::embedding", 1.0)])
    assert out["seconds"]["gemm"] == 3.0 and out["seconds"]["attention"] == 1.0
    assert out["seconds"]["norm_activation"] == 0.5 and out["seconds"]["optimizer"] == 0.25
    assert out["seconds"]["casts_copies"] == 0.25 and out["seconds"]["other"] == 1.0
    assert sum(out["share"].values()) == pytest.approx(1.0) and out["top_ops"][0]["op"] == "aten::mm"


def test_a_profiled_step_is_recorded_apart_and_a_one_cell_report_renders(profiled_sweep, tmp_path):
    store = profiled_sweep
    (record,) = disk_records(store)
    res = record["result"]
    assert len(res["steps"]) == 5 and res["summary"]["measured_steps"] == 3
    measured = res["steps"][1:4]
    assert res["summary"]["measured_tokens"] == sum(s["tokens"] for s in measured)
    profile = res["profile"]
    assert sum(profile["share"].values()) == pytest.approx(1.0) and profile["seconds"]["gemm"] > 0
    out = render(store.root, out=tmp_path / "r", baseline="precision=bf16").folder
    assert (out / "breakdown.png").is_file() and (out / "throughput.png").is_file()

"""A cell's achieved model TFLOP/s, MFU and HFU: the FLOP counts of `harness.measure.flops` over a record's
measured throughput, against the GEMM peak of its dtype."""

from __future__ import annotations

from typing import Any

from harness.config.precision import precision_rule
from harness.measure.flops import ALL_LINEAR, mean_context, per_token_flops, recompute_flops
from harness.results.records import CellRecord


def record_peak(record: CellRecord, manifest_peak: dict[str, Any] | None) -> dict[str, Any] | None:
    """The GEMM peak a cell is measured against: its own (recorded when it ran, at its core count), else the one
    the sweep measured (result sets from before per-core-count peaks)."""
    return record.peak or _legacy(manifest_peak)


def _legacy(peak: dict[str, Any] | None) -> dict[str, Any] | None:
    return {k: v for k, v in peak.items() if k in ("bf16", "fp32")} if peak and "bf16" in peak else None


def gemm_peak(record: CellRecord, manifest_peak: dict[str, Any] | None) -> float | None:
    """The GEMM TFLOP/s of the cell's dtype its MFU is measured against (None where no peak was measured)."""
    rule = precision_rule(record.config.get("precision", "bf16-autocast"))
    top = (record_peak(record, manifest_peak) or {}).get(rule.gemm)  # absent: the recipe's
    return float(top) if isinstance(top, (int, float)) and top > 0 else None


def cell_efficiency(record: CellRecord, manifest_peak: dict[str, Any] | None) -> dict[str, float | None]:
    """Achieved model TFLOP/s of a cell's measured steps, its MFU and HFU against the peak of its dtype."""
    none: dict[str, float | None] = {"tflops": None, "mfu": None, "hfu": None}
    res = record.result
    if res is None or not res.summary.tokens_per_second:
        return none
    summary, cfg = res.summary.model_dump(), record.config
    context = mean_context(summary)
    if context is None:
        return none
    targets = cfg.get("lora_target_modules", ALL_LINEAR)
    flops = per_token_flops(res.model, cfg.get("lora_r", 8), context, targets)
    if flops is None:
        return none
    tps = res.summary.tokens_per_second
    hardware = flops
    if cfg.get("gradient_checkpointing") is True:  # selective recomputes element-wise ops only: no GEMM
        hardware += recompute_flops(res.model, cfg.get("lora_r", 8), context, targets)
    row_context = _row_context(summary)
    # docbatch's padding to the longest document is not counted: its HFU is a lower bound
    per_document = cfg.get("attn_implementation", "sdpa") in ("varlen", "docbatch")
    if not per_document and row_context is not None and row_context > context:
        hardware += 3 * res.model["num_hidden_layers"] * 4 * res.model["hidden_size"] * (row_context - context)
    top = gemm_peak(record, manifest_peak)
    tflops = flops * tps / 1e12
    return {"tflops": tflops, "mfu": tflops / top if top else None,
            "hfu": hardware * tps / 1e12 / top if top else None}


def _row_context(summary: dict[str, Any]) -> float | None:
    """Mean causal context over whole rows (what a masked kernel computes), where the rows were recorded."""
    tokens, row_sq = summary.get("measured_tokens"), summary.get("measured_row_sq")
    return row_sq / (2 * tokens) if tokens and row_sq else None

"""Where one training step's time goes: torch.profiler's per-operator self time, grouped into categories.

Self time (time in an operator minus its children) adds up without counting anything twice. LoRA's GEMMs are
GEMMs at the operator level: they are counted under `gemm`; a quantized base's dequantization is `dequantize`.
"""

from __future__ import annotations

import re
from typing import Any

CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    # a quantized base's own operators (bitsandbytes' dequantization, and its wrapper ops' self time): the GEMM it
    # feeds is an aten GEMM below it, counted under `gemm`
    ("dequantize", re.compile(r"bitsandbytes::|dequantiz|MatMul4Bit|MatMul8bit", re.I)),
    ("optimizer", re.compile(r"optimizer|adam|_foreach_|zero_grad", re.I)),
    ("attention", re.compile(r"attention|sdpa|flash", re.I)),
    ("gemm", re.compile(r"aten::(mm|addmm|bmm|baddbmm|matmul|linear|_mkldnn|mkldnn)|mkldnn|onednn|gemm", re.I)),
    ("norm_activation", re.compile(r"rms_norm|layer_norm|silu|gelu|softmax|sigmoid|tanh|aten::(mul|add|sub|div|pow|"
                                   r"rsqrt|mean|neg|exp|log|cat|sum|where|max|min)", re.I)),
    ("casts_copies", re.compile(r"aten::(copy_|to|_to_copy|contiguous|clone|empty_like|fill_|zero_)", re.I)),
]


def categorize(events: list[tuple[str, float]]) -> dict[str, Any]:
    """(operator name, self seconds) pairs -> seconds and share per category, and the top operators."""
    totals: dict[str, float] = {name: 0.0 for name, _ in CATEGORIES}
    totals["other"] = 0.0
    for name, seconds in events:
        category = next((c for c, pattern in CATEGORIES if pattern.search(name)), "other")
        totals[category] += seconds
    total = sum(totals.values())
    top = sorted(events, key=lambda e: -e[1])[:12]
    return {
        "total_seconds": total,
        "seconds": totals,
        "share": {k: (v / total if total else 0.0) for k, v in totals.items()},
        "top_ops": [{"op": n, "seconds": s} for n, s in top],
    }


def profile_events(prof: Any) -> list[tuple[str, float]]:
    """Self CPU time per operator from a finished torch.profiler run."""
    return [(e.key, e.self_cpu_time_total / 1e6) for e in prof.key_averages() if e.self_cpu_time_total > 0]

"""The sweep in the terminal: one line per finished cell, and the table of a result set (rich)."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def describe(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items()) or "(single cell)"


def one_line(label: str, record: dict[str, Any]) -> str:
    status = record["status"]
    colour = {"ok": "green", "disturbed": "yellow", "unavailable": "cyan"}.get(status, "red")
    text = f"[{colour}]{status}[/] {label}"
    summary = (record.get("result") or {}).get("summary") or {}
    if summary.get("tokens_per_second"):
        text += f": {summary['tokens_per_second']:.1f} tok/s"
        if record.get("memory"):
            text += f", peak RSS {record['memory']['peak_rss_bytes'] / 2**30:.2f} GiB"
    if record.get("reason"):
        text += f" ({record['reason']})"
    return text


def summary_table(records: list[dict[str, Any]], axes: list[str]) -> Table:
    """The terminal table of a result set: one row per cell."""
    table = Table(title="cells")
    for a in axes:
        table.add_column(a)
    for col in ("repeat", "status", "tok/s", "seq/s", "step p50 s", "peak RSS GiB", "peak USS GiB", "eval loss"):
        table.add_column(col, justify="right")
    for r in records:
        s = (r.get("result") or {}).get("summary") or {}
        mem = r.get("memory") or {}

        def fmt(v: Any, pattern: str = "{:.1f}") -> str:
            return pattern.format(v) if isinstance(v, int | float) else "-"

        table.add_row(*(str(r.get("axes", {}).get(a, "")) for a in axes), str(r.get("repeat", 0)), r["status"],
                      fmt(s.get("tokens_per_second")), fmt(s.get("sequences_per_second"), "{:.2f}"),
                      fmt(s.get("step_seconds_p50"), "{:.2f}"),
                      fmt(mem.get("peak_rss_bytes", 0) / 2**30 if mem else None, "{:.2f}"),
                      fmt(mem.get("peak_uss_bytes", 0) / 2**30 if mem else None, "{:.2f}"),
                      fmt((r.get("result") or {}).get("eval_loss"), "{:.3f}"))
    return table

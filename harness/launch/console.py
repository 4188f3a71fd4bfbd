"""The sweep in the terminal: one line per finished cell, and the table of a result set (rich)."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.base.units import gib, num
from harness.results.records import CellRecord

console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def describe(values: dict[str, Any]) -> str:
    def shown(key: str, value: Any) -> Any:
        return f"{value / 2**30:.3g}GiB" if key == "memory_limit" and isinstance(value, int) else value

    return " ".join(f"{k}={shown(k, v)}" for k, v in values.items()) or "(single cell)"


def one_line(label: str, record: CellRecord) -> str:
    colour = {"ok": "green", "disturbed": "yellow", "unavailable": "cyan"}.get(record.status, "red")
    text = f"[{colour}]{record.status}[/] {label}"
    head = record.headline()
    if head.tokens_per_s:
        text += f": {head.tokens_per_s:.1f} tok/s"
        if head.peak_rss_bytes is not None:
            text += f", peak RSS {gib(head.peak_rss_bytes)} GiB"
    if record.reason:
        text += f" ({record.reason})"
    if record.calibration is not None and record.calibration.note:
        text += f" [yellow]calibration: {record.calibration.note}[/]"
    return text


def calibration_line(records: list[CellRecord]) -> str | None:
    """The calibration's cost over a result set's cells, in one line (None when no cell has one)."""
    calibrated = [r.calibration for r in records if r.calibration is not None]
    if not calibrated:
        return None
    seconds = sum(c.seconds for c in calibrated)
    walls = sum(r.wall_seconds or 0.0 for r in records if r.calibration is not None)
    failed = sum(1 for c in calibrated if c.note)
    share = f", {seconds / walls:.1%} of their cells' wall time" if walls else ""
    return (f"calibration: {len(calibrated)} cell(s), {seconds / len(calibrated):.2f} s per cell before and after"
            f"{share}" + (f"; {failed} with a failed calibration (see their notes)" if failed else ""))


def summary_table(records: list[CellRecord], axes: list[str]) -> Table:
    """The terminal table of a result set: one row per cell."""
    table = Table(title="cells")
    for a in axes:
        table.add_column(a)
    for col in ("repeat", "status", "tok/s", "seq/s", "step p50 s", "peak RSS GiB", "peak USS GiB", "eval loss"):
        table.add_column(col, justify="right")
    for r in records:
        h = r.headline()
        table.add_row(*(str(r.axes.get(a, "")) for a in axes), str(r.repeat), r.status,
                      num(h.tokens_per_s, "{:.1f}"), num(h.sequences_per_s, "{:.2f}"), num(h.step_s_p50, "{:.2f}"),
                      gib(h.peak_rss_bytes), gib(h.peak_uss_bytes), num(h.eval_loss, "{:.3f}"))
    return table

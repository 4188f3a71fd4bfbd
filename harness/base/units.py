"""Units and formatting: sizes and durations as people write them (matrices, the command line), and numbers as
people read them (tables, terminal, compare). The one place that decides both."""

from __future__ import annotations

import math
import re
from typing import Any

UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20,
         "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_bytes(text: str | int | float) -> int:
    """'6GiB', '6G' (binary, as free and top mean it), '6GB' (decimal), '512MiB' or a number of bytes."""
    if isinstance(text, bool):
        raise ValueError(f"not a memory size: {text!r}")
    if isinstance(text, int | float):
        value, unit = float(text), ""
    else:
        match = _SIZE.match(text)
        if not match or match.group(2).lower() not in UNITS:
            raise ValueError(f"not a memory size: {text!r} (use e.g. 6GiB, 512MiB)")
        value, unit = float(match.group(1)), match.group(2).lower()
    size = int(value * UNITS[unit])
    if size < 64 * 2**20:
        raise ValueError(f"a memory budget of {size} bytes is too small to start Python (at least 64MiB)")
    return size


def parse_duration(text: str) -> float:
    """'90s', '20m', '1.5h' or '300' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    text = text.strip().lower()
    try:
        return float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 20m, 1.5h)") from None

GIB = 2**30


def missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def num(v: Any, pattern: str | None = None) -> str:
    """A number: with `pattern` (e.g. '{:.2f}') exactly so; else 3 significant figures below 10, one decimal above.
    Missing values are '-'; anything else is its str()."""
    if missing(v):
        return "-"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if pattern is not None:
        return pattern.format(v)
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def gib(n_bytes: float | None) -> str:
    return "-" if missing(n_bytes) else f"{n_bytes / GIB:.2f}"  # type: ignore[operator]


def pct(v: float | None, signed: bool = False) -> str:
    return "-" if missing(v) else (f"{v:+.1%}" if signed else f"{v:.1%}")


def interval(low: float | None, high: float | None, pattern: str = "{:.1f}") -> str:
    return "-" if missing(low) or missing(high) else f"{pattern.format(low)}-{pattern.format(high)}"

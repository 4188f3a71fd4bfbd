"""Prices per machine-hour, as a user states them: `--price NAME=2.50/h` on the command line, or a small YAML
file (`NAME: 2.50` per line, or the same under `prices:`). A price is per hour of the whole machine, in the
currency the user names; a price that does not read as a positive number is one message naming it."""

from __future__ import annotations

import math
import re
from pathlib import Path

from harness.base.errors import XeonftError

PRICE = re.compile(r"^\s*([^=]+?)\s*=\s*[$€£]?\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:/\s*h(?:our)?)?\s*$")


def parse_price(text: str) -> tuple[str, float]:
    """'NAME=2.50/h' (or 'NAME=2.5', 'NAME=$2.50/hour') -> ('NAME', 2.5)."""
    found = PRICE.match(text)
    if not found:
        raise XeonftError(f"price '{text}': expected NAME=PRICE per hour, e.g. xeon-8480=4.20/h")
    return found.group(1), _positive(float(found.group(2)), text)


def read_prices(path: Path) -> dict[str, float]:
    """A price file: a YAML mapping of machine names (or hostnames, or kind ids) to a price per hour."""
    from harness.config.finetune import read_yaml

    data = read_yaml(path)
    if isinstance(data, dict) and isinstance(data.get("prices"), dict):
        data = data["prices"]
    if not isinstance(data, dict):
        raise XeonftError(f"{path}: a price file is a mapping of machine names to a price per hour")
    out: dict[str, float] = {}
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise XeonftError(f"{path}: the price of '{name}' is not a number")
        out[str(name)] = parse_price(f"{name}={value}")[1]
    return out


def prices(given: list[str], files: list[Path]) -> dict[str, float]:
    """Every price stated, the command line's over a file's."""
    out: dict[str, float] = {}
    for path in files:
        out.update(read_prices(path))
    out.update(parse_price(text) for text in given)
    return out


def _positive(value: float, text: str) -> float:
    if not math.isfinite(value) or value <= 0:
        raise XeonftError(f"price '{text}': a price per hour is a positive number")
    return value

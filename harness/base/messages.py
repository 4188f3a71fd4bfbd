"""Messages of bounded size: whatever the input, what xeonft tells a user is one line of at most `LIMIT` characters.

A value shown in a message is cut to a readable length with its size said ("a list of 1,000,000 values"), so a
matrix of a few hundred bytes whose YAML aliases expand to a million values is refused in one short line, not 14 MB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sized

LIMIT = 300  # characters of a whole message
VALUE = 60  # characters of one value shown inside a message


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def describe(value: object, limit: int = VALUE) -> str:
    """`value` as a message shows it: its repr when short, else the start of it and its size."""
    text = repr(value)
    if len(text) <= limit:
        return text
    if isinstance(value, str):
        size = _count(len(value), "character")
    elif isinstance(value, Mapping):
        size = _count(len(value), "key")
    elif isinstance(value, Sized):
        size = _count(len(value), "value")
    else:
        size = _count(len(text), "character")
    kind = type(value).__name__
    return f"{text[:max(8, limit - 40)]}... (a {kind} of {size})"


def one_line(message: str, limit: int = LIMIT) -> str:
    """A message as one line of at most `limit` characters: its lines joined by '; ', the rest cut and counted."""
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    text = "; ".join(lines) if lines else "(no message)"
    if len(text) <= limit:
        return text
    more = len(lines) - 1
    tail = f" ... ({_count(len(text), 'character')} in all" + (f", {_count(more + 1, 'problem')})" if more else ")")
    return text[:max(0, limit - len(tail))].rstrip() + tail

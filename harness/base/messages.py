"""Messages of bounded size: whatever the input, what xeonft tells a user is one line of at most `LIMIT` characters.

A value shown in a message is cut to a readable length with its size said ("a list of 1,000,000 values"), so a
matrix of a few hundred bytes whose YAML aliases expand to a million values is refused in one short line, not 14 MB.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping, Sized

LIMIT = 300  # characters of a whole message
VALUE = 60  # characters of one value shown inside a message


_SHORT = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict, _SHORT.maxset = 3, 8, 8, 6, 6
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = VALUE
# a value of at most this many items, however deeply nested, is shown to any depth (its repr is short anyway)
_DEEP = reprlib.Repr()
_DEEP.maxlevel = _DEEP.maxlist = _DEEP.maxtuple = _DEEP.maxdict = _DEEP.maxset = 64
_DEEP.maxstring = _DEEP.maxother = _DEEP.maxlong = 10 * VALUE
SMALL_ITEMS = 64
COUNT_CAP = 10_000_000  # values counted inside a nested value before giving up (aliases can make billions)


def _leaves(value: object) -> int:
    """Values inside a nested list or tuple (a YAML alias bomb is lists of lists), counted up to the cap."""
    total, todo = 0, [value]
    while todo and total <= COUNT_CAP:
        item = todo.pop()
        if isinstance(item, list | tuple) and item:
            todo.extend(item)
        else:
            total += 1
    return total


def _small(value: object, cap: int = SMALL_ITEMS) -> bool:
    """Whether a nested value holds at most `cap` items in all (lists, tuples, sets and dicts walked, keys too),
    none of them a long string or number: `_DEEP` then shows it whole, with nothing cut."""
    seen, todo = 0, [value]
    while todo:
        item = todo.pop()
        seen += 1
        if seen > cap or (isinstance(item, str) and len(item) > 5 * VALUE) or (
                isinstance(item, int) and abs(item).bit_length() > 1000):
            return False
        if isinstance(item, Mapping):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            todo.extend(item)
    return True


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def describe(value: object, limit: int = VALUE, bare: bool = False) -> str:
    """`value` as a message shows it: its repr when short (a string without quotes with `bare`), else the start of
    it and its size. Built by reprlib, so a huge nested value is never printed whole, even on the way."""
    if bare and isinstance(value, str) and len(value) <= limit and value.isprintable():
        return value
    whole = _small(value)
    try:
        text = (_DEEP if whole else _SHORT).repr(value)
    except ValueError:  # an int past Python's 4,300-digit limit for str()
        whole, text = False, f"<{type(value).__name__} too large to show>"
    cut = not whole and "..." in text and "..." not in (value if isinstance(value, str) else "")
    if len(text) <= limit and not cut:
        return text
    if isinstance(value, str):
        size = _count(len(value), "character")
    elif isinstance(value, Mapping):
        size = _count(len(value), "key")
    elif isinstance(value, Sized):
        leaves = _leaves(value)
        size = f"more than {_count(COUNT_CAP, 'value')}" if leaves > COUNT_CAP else _count(leaves, "value")
    else:
        size = _count(len(text), "character")
    return f"{text[:max(8, limit - 40)].removesuffix('...')}... (a {type(value).__name__} of {size})"


def one_line(message: str, limit: int = LIMIT) -> str:
    """A message as one line of at most `limit` characters: its lines joined by '; ', the rest cut and counted."""
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    text = "; ".join(lines) if lines else "(no message)"
    if len(text) <= limit:
        return text
    more = len(lines) - 1
    tail = f" ... ({_count(len(text), 'character')} in all" + (f", {_count(more + 1, 'problem')})" if more else ")")
    return text[:max(0, limit - len(tail))].rstrip() + tail

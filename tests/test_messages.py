"""Messages of bounded size: one line, at most a few hundred characters, whatever the input."""

from hypothesis import given
from hypothesis import strategies as st

from harness.base.messages import LIMIT, describe, one_line

values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                      lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=200)


@given(st.text())
def test_any_message_becomes_one_bounded_line(text):
    line = one_line(text)
    assert "\n" not in line and "\r" not in line
    assert 0 < len(line) <= LIMIT


@given(values)
def test_a_value_is_shown_short_with_its_size(value):
    shown = describe(value)
    assert len(shown) <= 120
    if len(repr(value)) <= 60:
        assert shown == _sorted_repr(value)


def _sorted_repr(value):
    """repr with each dict's keys in sorted order, as reprlib shows a dict (hypothesis found {'0': None, '': None})."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_sorted_repr(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_sorted_repr(v) for v in value) + "]"
    return repr(value)


def test_a_million_values_are_counted_not_printed():
    shown = describe(list(range(1_000_000)))
    assert shown.endswith("(a list of 1,000,000 values)") and len(shown) < 100
    assert describe({"k": "v" * 500}).endswith("(a dict of 1 key)")
    nested = [[list(range(100))] * 100] * 100
    assert describe(nested).endswith("(a list of 1,000,000 values)")
    assert describe("x" * 1000).endswith("(a str of 1,000 characters)")


def test_a_long_multi_line_message_says_how_much_was_cut():
    text = "\n".join(f"matrix.yaml: axes.batch_size[{i}]: not an integer" for i in range(50))
    line = one_line(text)
    assert line.startswith("matrix.yaml: axes.batch_size[0]: not an integer; matrix.yaml: axes.batch_size[1]")
    assert line.endswith("in all, 50 problems)") and len(line) <= LIMIT
    assert one_line("short\n\n  second ") == "short; second"

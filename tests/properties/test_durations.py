"""Property: any duration or memory size is a positive number or a one-line ValueError."""

from __future__ import annotations

import math

from hypothesis import example, given
from hypothesis import strategies as st

from dockyard.plan.durations import MIN_MEMORY, parse_duration, parse_memory
from tests.properties.support import PROPERTY, assert_clear

DURATIONS = st.one_of(
    st.from_regex(r"\s?(\d{1,4}(\.\d{1,3})? ?(ms|h|m|s)){1,3}\s?", fullmatch=True),
    st.from_regex(r"\d{1,400}(\.\d{1,5})?(ms|h|m|s)?", fullmatch=True),
    st.text(max_size=12), st.booleans(), st.integers(-(10**400), 10**400), st.floats())
SIZES = st.one_of(
    st.from_regex(r"\s?\d{1,400}(\.\d{1,3})?\s?[kmgtKMGT]?i?[bB]?\s?", fullmatch=True),
    st.text(max_size=12), st.booleans(), st.integers(-(10**400), 10**400))


@PROPERTY
@given(DURATIONS, st.booleans())
# Found here: an integer past any float was an OverflowError.
@example(10**400, False)
def test_any_duration_is_seconds_or_a_clear_error(value: str | float, allow_zero: bool) -> None:
    try:
        seconds = parse_duration(value, allow_zero=allow_zero)
    except ValueError as exc:
        assert_clear(exc)
        return
    assert math.isfinite(seconds)
    assert seconds > 0 or (allow_zero and seconds == 0)


@PROPERTY
@given(SIZES)
# Found here: digits past any float were an OverflowError; a size past int64 was accepted; a
# line break in the value made the message two lines.
@example("9" * 400)
@example("9" * 30 + "T")
@example(2**63)
@example("1\x85")
def test_any_memory_size_is_bytes_or_a_clear_error(value: str | int) -> None:
    try:
        size = parse_memory(value)
    except ValueError as exc:
        assert_clear(exc)
        return
    assert isinstance(size, int)
    assert size >= MIN_MEMORY


@PROPERTY
@given(st.integers(1, 10**6), st.sampled_from(["h", "m", "s", "ms"]))
def test_a_written_duration_reads_back(number: int, unit: str) -> None:
    factor = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    assert parse_duration(f"{number}{unit}") == number * factor

"""What every property test shares: its settings, the clear-error check, JSON-ish values."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Modest by default, so each test takes a few seconds in CI; DOCKYARD_PROPERTY_EXAMPLES=5000
# looks harder on a workstation. CI runs a fixed sequence of examples (a failure reproduces, no
# test turns red by chance); elsewhere each run tries new ones. No example database is written.
EXAMPLES = int(os.environ.get("DOCKYARD_PROPERTY_EXAMPLES", "200"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    # A generous bound (the machine is shared): far above any parse, far below a pathological one.
    deadline=timedelta(seconds=2),
    derandomize=bool(os.environ.get("CI")),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def assert_clear(exc: BaseException) -> None:
    """A clear error: its message is one non-empty line (no newline, no other line break)."""
    message = str(exc)
    assert message.strip(), f"{type(exc).__name__} with an empty message"
    assert len(message.splitlines()) == 1, f"{type(exc).__name__} over several lines: {message!r}"


# JSON values of every shape, small, with keys that are sometimes the ones a reader looks for.
def json_values(keys: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Any]:
    """Arbitrary JSON values (nested objects and arrays, odd numbers and strings)."""
    key = st.text(max_size=8) if keys is None else st.one_of(keys, st.text(max_size=8))
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=4),
                                st.dictionaries(key, inner, max_size=4)),
        max_leaves=12)

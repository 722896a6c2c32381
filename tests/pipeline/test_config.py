"""Config var names, values and `KEY=VALUE` assignments, as plain values: one accepted form,
limits on count and size, clear errors."""

from __future__ import annotations

import re

import pytest

from dockyard.pipeline.config import (
    MAX_TOTAL_BYTES,
    MAX_VALUE_BYTES,
    MAX_VARS,
    RESERVED,
    ConfigError,
    ConfigTooLarge,
    check_name,
    check_values,
    parse_assignments,
)
from dockyard.state.config import Versioned, applied


def test_assignments_split_at_the_first_equals_sign() -> None:
    assert parse_assignments(["A=1", "URL=pg://u:p@h/db?x=y", "EMPTY=", "A=2"]) == {
        "A": "2", "URL": "pg://u:p@h/db?x=y", "EMPTY": ""}
    assert parse_assignments([]) == {}


@pytest.mark.parametrize(("pair", "message"), [
    ("NOVALUE", "'NOVALUE' is not KEY=VALUE"),
    ("=x", "'' is not a valid variable name"),
    ("1A=x", "'1A' is not a valid variable name"),
    ("A-B=x", "'A-B' is not a valid variable name"),
    ("PORT=80", "PORT is set by Dockyard itself and cannot be configured"),
    # `$` alone would let a trailing newline through into the environment of every container.
    ("EVIL\n=1", "'EVIL\\n' is not a valid variable name"),
])
def test_a_bad_assignment_is_named(pair: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_assignments(["OK=1", pair])


def test_names() -> None:
    assert check_name("_private2") == "_private2"
    assert check_name("lower_case") == "lower_case"
    for name in sorted(RESERVED):
        with pytest.raises(ConfigError, match="set by Dockyard itself"):
            check_name(name)
    with pytest.raises(ConfigError, match="not a valid variable name"):
        check_name("A B")


def test_assignments_parse() -> None:
    assert parse_assignments(["A=1", "B_2=x=y", "EMPTY="]) == {"A": "1", "B_2": "x=y", "EMPTY": ""}


@pytest.mark.parametrize("name", ["KEY\n", "1KEY", "K-EY", "", "K EY", "KÉY"])
def test_names_out_of_form_are_refused(name: str) -> None:
    # "KEY\n" passed the `^...$` regex before: `$` matches before a trailing newline.
    with pytest.raises(ConfigError, match="is not a valid variable name"):
        check_name(name)


def test_reserved_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="PORT is set by Dockyard itself"):
        parse_assignments(["PORT=1"])


def test_a_value_too_big_for_an_environment_is_refused() -> None:
    with pytest.raises(ConfigTooLarge) as info:
        parse_assignments([f"BIG={'x' * (MAX_VALUE_BYTES + 1)}"])
    assert str(info.value) == "the value of BIG in bytes is 32,769 (at most 32,768)"
    with pytest.raises(ConfigError, match="the value of NUL holds a NUL byte"):
        parse_assignments(["NUL=a\x00b"])


def test_too_many_vars_are_refused() -> None:
    with pytest.raises(ConfigTooLarge, match=f"the number of config vars is {MAX_VARS + 1} "
                                             f"\\(at most {MAX_VARS}\\)"):
        parse_assignments([f"K{i}=v" for i in range(MAX_VARS + 1)])


def test_a_config_too_big_in_all_is_refused() -> None:
    values = {f"K{i}": "v" * MAX_VALUE_BYTES for i in range(MAX_TOTAL_BYTES // MAX_VALUE_BYTES)}
    with pytest.raises(ConfigTooLarge, match="the config's total size in bytes is"):
        check_values(values)


def test_the_door_refuses_a_change_that_would_go_past_a_limit() -> None:
    head = Versioned(version=3, values={f"K{i}": "v" for i in range(MAX_VARS)})
    with pytest.raises(ConfigTooLarge, match="the number of config vars is 201"):
        applied(head, {"ONE_MORE": "v"}, [])
    assert applied(head, {"K0": "w"}, ["K1"]).values["K0"] == "w"

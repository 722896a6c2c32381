"""Properties of app.json: any text gives hooks or a one-line ManifestError; JSONC blanking
keeps every byte's place."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from dockyard.plan.appjson import AppJsonHooks, parse_app_json
from dockyard.plan.errors import ManifestError
from dockyard.plan.jsonc import UnclosedComment, standardize
from dockyard.plan.lines import split_lines
from tests.properties.support import PROPERTY, assert_clear, json_values

KEYS = st.sampled_from(["scripts", "dokku", "predeploy", "postdeploy", "name", "env"])
SCRIPT = st.one_of(st.none(), st.text(max_size=20), json_values())
# Shaped like an app.json with scripts: every level sometimes of the wrong type.
APP_JSON = st.fixed_dictionaries(
    {},
    optional={
        "name": json_values(),
        "scripts": st.one_of(
            json_values(KEYS),
            st.fixed_dictionaries({}, optional={
                "postdeploy": SCRIPT,
                "dokku": st.one_of(json_values(KEYS), st.fixed_dictionaries(
                    {}, optional={"predeploy": SCRIPT, "postdeploy": SCRIPT})),
            }),
        ),
    },
)
JSONC_NOISE = st.sampled_from(["//", "/*", "*/", "/* x */", "// c\n", ",", "\n", "\r\n", '"',
                               "\\", "{", "}", "[", "]", ":", " ", "\x00", "é", "\u2028"])


def check(text: str) -> AppJsonHooks | None:
    """The parse of a text, its invariants checked; None for a (clear) ManifestError."""
    try:
        hooks = parse_app_json(text)
    except ManifestError as exc:
        assert_clear(exc)
        assert exc.file == "app.json"
        assert exc.line is None or 1 <= exc.line <= max(len(split_lines(text)), 1)
        return None
    assert set(hooks.hooks) <= {"predeploy", "postdeploy"}
    assert set(hooks.hooks) == set(hooks.keys)
    for spec in hooks.hooks.values():
        assert spec.command and spec.command == spec.command.strip()
    return hooks


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A valid app.json, pretty-printed, with JSONC comments, commas or junk put in."""
    text = json.dumps(draw(APP_JSON), indent=draw(st.sampled_from([None, 2])))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(text)))
        how = draw(st.sampled_from(["insert", "delete", "insert"]))
        if how == "insert":
            text = text[:at] + draw(st.one_of(JSONC_NOISE, st.text(max_size=3))) + text[at:]
        else:
            text = text[:at] + text[at + draw(st.integers(1, 3)):]
    return text


@PROPERTY
@given(st.text())
def test_any_text_is_hooks_or_a_clear_error(text: str) -> None:
    check(text)


@PROPERTY
@given(mutated())
def test_mutated_app_json_is_hooks_or_a_clear_error(text: str) -> None:
    check(text)


@PROPERTY
@given(APP_JSON)
def test_any_json_value_in_the_script_keys_is_hooks_or_a_clear_error(value: Any) -> None:
    hooks = check(json.dumps(value))
    scripts = value.get("scripts")
    if hooks is not None and isinstance(scripts, dict) and isinstance(scripts.get("postdeploy"),
                                                                     str):
        # Nothing is lost: a non-blank scripts.postdeploy is always a source of postdeploy.
        assert ("scripts.postdeploy" in hooks.keys.get("postdeploy", [])
                ) == bool(scripts["postdeploy"].strip())


@PROPERTY
@given(st.one_of(st.binary(), mutated().map(str.encode), st.text().map(str.encode)))
def test_jsonc_blanking_keeps_the_length_and_every_line_break(data: bytes) -> None:
    try:
        plain = standardize(data)
    except UnclosedComment as exc:
        assert_clear(exc)
        assert data[exc.offset:exc.offset + 2] == b"/*"
        return
    assert len(plain) == len(data)
    for before, after in zip(data, plain, strict=True):
        assert after in (before, 0x20)  # a byte stays, or is blanked
        if before in b"\r\n":
            assert after == before


@PROPERTY
@given(json_values())
def test_plain_json_is_unchanged_by_jsonc_blanking(value: Any) -> None:
    data = msgspec.json.encode(value)
    assert standardize(data) == data

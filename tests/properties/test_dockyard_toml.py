"""Property: any dockyard.toml text gives a manifest or a one-line ManifestError naming a line
of the file."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from dockyard.contract.phase import HOOK_PHASES
from dockyard.plan.dockyard_toml import DockyardManifest, parse_dockyard_toml
from dockyard.plan.durations import MIN_MEMORY
from dockyard.plan.errors import ManifestError
from dockyard.plan.lines import split_lines
from dockyard.plan.presets import PRESETS
from dockyard.plan.procfile import PROCESS_NAME
from tests.properties.support import PROPERTY, assert_clear
from tests.properties.toml_text import document, value

SCALARS = st.one_of(st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(), st.text(max_size=12))
ANY = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)
DURATIONS = st.one_of(
    st.from_regex(r"\s?(\d{1,4}(\.\d{1,3})?\s?(ms|h|m|s)){1,3}\s?", fullmatch=True),
    st.from_regex(r"\d{1,400}(\.\d{1,5})?[smh]?", fullmatch=True),
    st.integers(-5, 10**400), st.floats(), st.text(max_size=6), ANY)
SIZES = st.one_of(
    st.from_regex(r"\d{1,400}(\.\d{1,3})?\s?[kmgtKMGT]?i?[bB]?", fullmatch=True),
    st.integers(-5, 10**400), st.floats(), st.text(max_size=6), ANY)
TEXTS = st.one_of(st.text(max_size=16), st.sampled_from(["", " ", "true", "/up", "Dockerfile"]))
OPTIONAL_KEY = st.text(max_size=8)


def tables(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A table with some of its fields, now and then one unknown key too."""
    return st.tuples(st.fixed_dictionaries({}, optional=fields),
                     st.dictionaries(OPTIONAL_KEY, ANY, max_size=1)).map(
        lambda pair: {**pair[0], **(pair[1] if len(pair[1]) and pair[0] else {})})


HOOK = tables({"command": TEXTS, "label": TEXTS, "timeout": DURATIONS, "memory": SIZES})
PROCESS = tables({"scale": st.one_of(st.integers(-3, 2**70), ANY), "command": TEXTS})
MANIFEST = st.fixed_dictionaries({}, optional={
    "preset": st.one_of(st.sampled_from(sorted(PRESETS)), TEXTS, ANY),
    "drain": DURATIONS,
    "appjson_postdeploy": st.one_of(st.sampled_from(["first", "every"]), TEXTS),
    **{phase.value: st.one_of(st.lists(HOOK, max_size=3), ANY) for phase in HOOK_PHASES},
    "releas": st.lists(HOOK, min_size=1, max_size=2),  # a misspelt phase
    "health": st.one_of(tables({"path": TEXTS, "timeout": DURATIONS}), ANY),
    "build": st.one_of(tables({"dockerfile": TEXTS, "command": TEXTS, "timeout": DURATIONS}),
                       ANY),
    "processes": st.one_of(st.dictionaries(st.one_of(
        st.from_regex(r"[a-z_-]{1,8}", fullmatch=True), st.text(max_size=6)), PROCESS,
        max_size=3), ANY),
})


@st.composite
def manifests(draw: st.DrawFn) -> str:
    """dockyard.toml text of a near-valid manifest."""
    return document(draw, draw(MANIFEST))


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """Near-valid text with a few characters inserted or deleted."""
    text = draw(manifests())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            noise = st.sampled_from(['"', "'", '"""', "[", "]", "[[", "=", "\n", "#", ".", "\\"])
            text = text[:at] + draw(st.one_of(noise, st.text(max_size=3))) + text[at:]
        else:
            text = text[:at] + text[at + draw(st.integers(1, 4)):]
    return text


def check(text: str) -> DockyardManifest | None:
    """The parse of a text, its invariants checked; None for a (clear) ManifestError."""
    try:
        manifest = parse_dockyard_toml(text)
    except ManifestError as exc:
        assert_clear(exc)
        assert exc.file == "dockyard.toml"
        assert exc.line is None or 1 <= exc.line <= max(len(split_lines(text)), 1)
        return None
    assert set(manifest.hooks) <= set(HOOK_PHASES)
    for specs in manifest.hooks.values():
        for spec in specs:
            assert spec.command and spec.command == spec.command.strip()
            assert spec.timeout is None or (math.isfinite(spec.timeout) and spec.timeout > 0)
            assert spec.memory is None or spec.memory >= MIN_MEMORY
    for process in manifest.processes:
        assert PROCESS_NAME.fullmatch(process.name)
        assert process.scale is None or process.scale >= 0
    assert manifest.drain is None or (math.isfinite(manifest.drain) and manifest.drain >= 0)
    assert manifest.preset is None or manifest.preset in PRESETS
    if manifest.health is not None:
        assert manifest.health.path is None or manifest.health.path.startswith("/")
    return manifest


@PROPERTY
@given(st.text())
# Found here: an integer of 5000 digits was tomllib's ValueError, not a ManifestError.
@example("drain = " + "1" * 5000)
def test_any_text_is_a_manifest_or_a_clear_error(text: str) -> None:
    check(text)


@PROPERTY
@given(manifests())
# Found here: a key or value holding a line break was quoted raw, making the error two lines.
@example('[[predeploy]]\ncommand = "x"\n"\\r" = 1\n')
@example('[health]\npath = "\\u001e"\n')
def test_near_valid_manifests_are_a_manifest_or_a_clear_error(text: str) -> None:
    check(text)


@PROPERTY
@given(mutated())
def test_mutated_manifests_are_a_manifest_or_a_clear_error(text: str) -> None:
    check(text)


@PROPERTY
@given(ANY)
def test_any_value_of_any_top_level_key_is_a_manifest_or_a_clear_error(item: Any) -> None:
    for name in ("preset", "drain", "health", "build", "processes", *HOOK_PHASES):
        check(f"{name} = {value(item)}\n")

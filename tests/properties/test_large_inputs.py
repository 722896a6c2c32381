"""Property: manifests up to their size limit, built from repeated fragments (thousands of
tables, deep nesting, endless comments or strings), are read in bounded time, and deep nesting
is a ManifestError, never a RecursionError."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from dockyard.plan.detect import LISTING
from dockyard.plan.errors import PlanError
from dockyard.plan.merge import MAX_MANIFEST_BYTES, build_plan
from tests.properties.support import PROPERTY, assert_clear

# Each example is a quarter of a megabyte: fewer of them, and more time each (still seconds).
LARGE = settings(PROPERTY, max_examples=max(PROPERTY.max_examples // 10, 10),
                 deadline=timedelta(seconds=10))
FRAGMENTS: dict[str, list[str]] = {
    "Procfile": ["web: run {i}\n", "p{i}: x\n", "# {i}\n", "\n", "a:" , "\r\n"],
    "app.json": ["[", "{{\"a{i}\":", "/*", "*/", "//", "\n", "\"", ",", " ", "{{}}", "]", "}}"],
    "dockyard.toml": ["[[release]]\ncommand = \"x{i}\"\n", "[processes.p{i}]\ncommand = \"x\"\n",
                      "a{i} = [", "[", "{{b = ", "\"\"\"", "'''", "\n", "# {i}\n", "x = 1\n"],
    "package.json": ["[", "{{\"a\":", "1", ",", "]", "}}"],
    "pyproject.toml": ["a = [", "[", "{{b = ", "[project]\n", "dependencies = [\"x\"]\n"],
    "Pipfile.lock": ["{{\"default\": {{\"a\": {{\"b\": ", "[", "{{\"a\":"],
}


@st.composite
def large(draw: st.DrawFn) -> dict[str, str]:
    """One file of the plan made of one to three fragments repeated up to the size limit."""
    name = draw(st.sampled_from(sorted(FRAGMENTS)))
    parts = draw(st.lists(st.sampled_from(FRAGMENTS[name]), min_size=1, max_size=3))
    size = draw(st.integers(1, MAX_MANIFEST_BYTES))
    text, i = [], 0
    while size > 0:
        piece = parts[i % len(parts)].format(i=i)
        text.append(piece)
        size -= len(piece)
        i += 1
    files = {name: "".join(text)}
    if name in ("package.json", "pyproject.toml", "Pipfile.lock"):
        files[LISTING] = name
    return files


def deep(name: str, opening: str, depth: int = 100_000) -> dict[str, str]:
    """A file nesting `opening` depth times (and the listing that makes detection read it)."""
    return {name: opening * depth, LISTING: name}


@LARGE
@given(large())
# Found here: nesting past Python's recursion limit was a RecursionError in every reader of
# JSON or TOML; a dockyard.toml of thousands of tables took minutes (each table re-indexed the
# whole text to find its line).
@example(deep("app.json", "["))
@example(deep("app.json", '{"a":'))
@example(deep("package.json", "["))
@example({"Pipfile.lock": '{"default": {"a": {"b": ' + "[" * 100_000, LISTING: "Pipfile.lock"})
@example({"dockyard.toml": "a = " + "[" * 100_000})
@example({"dockyard.toml": "a = " + "{b = " * 50_000})
@example({"pyproject.toml": "a = " + "[" * 100_000, LISTING: "pyproject.toml"})
@example({"dockyard.toml": '[[release]]\ncommand = "x"\n' * (MAX_MANIFEST_BYTES // 26)})
def test_large_and_deep_manifests_are_a_plan_or_a_clear_error(files: dict[str, str]) -> None:
    try:
        build_plan(files)
    except PlanError as exc:
        assert_clear(exc)

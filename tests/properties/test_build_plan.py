"""Property: any set of manifests, build files and operator hooks gives a Plan that survives the
bus (encode, decode) or a one-line PlanError."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
from hypothesis import example, given
from hypothesis import strategies as st

from dockyard.contract import codec
from dockyard.contract.manifest import OperatorHook
from dockyard.contract.phase import HOOK_PHASES
from dockyard.contract.plan import Plan
from dockyard.plan import node
from dockyard.plan.detect import LISTING
from dockyard.plan.errors import PlanError
from dockyard.plan.merge import build_plan
from dockyard.plan.operator import validate_hook
from tests.properties import test_appjson, test_dockyard_toml, test_procfile
from tests.properties.support import PROPERTY, assert_clear, json_values
from tests.properties.toml_text import document

TOP_NAMES = ["requirements.txt", "pyproject.toml", "uv.lock", "Pipfile.lock", "package.json",
             "package-lock.json", "yarn.lock", "pnpm-lock.yaml", "index.html", "Dockerfile",
             "server.js", "app.py", "main.py", "site/wsgi.py", ".python-version", "runtime.txt",
             "Procfile"]
REQUIREMENT_LINES = st.one_of(
    st.sampled_from(["flask==3.0.3", "-r base.txt", "--requirement=x.txt", "-c c.txt", "-e .",
                     ".", "../lib", "git+https://x/y", "--index-url https://i", "# note",
                     "<<<<<<< HEAD", "uvicorn", "gunicorn", ""]),
    st.text(max_size=12))
RANGES = st.one_of(
    st.from_regex(r"(\^|~|>=|<=|>|<|=)? ?v?(\d{1,3}|x|\*)(\.(\d{1,3}|x|\*)){0,2}(-[a-z0-9.]{1,4})?",
                  fullmatch=True),
    st.sampled_from(["", "*", "x", "latest", "18.x || 20.x", "1 - 2", ">=18 <21", "1.2 - 2.3.4",
                     "^0.0.1", "~1", "||", " - ", ">= 18"]),
    st.text(max_size=10))
PACKAGE_JSON = st.one_of(json_values(st.sampled_from(["scripts", "engines", "start", "build"])),
                         st.fixed_dictionaries({}, optional={
                             "scripts": st.one_of(json_values(), st.dictionaries(
                                 st.sampled_from(["start", "build", "test"]), st.text(max_size=8))),
                             "engines": st.one_of(json_values(), st.fixed_dictionaries(
                                 {}, optional={"node": RANGES}))}))
PIN = st.fixed_dictionaries({}, optional={
    "version": st.one_of(st.from_regex(r"==\d{1,2}\.\d{1,2}", fullmatch=True), json_values()),
    "extras": st.one_of(st.lists(st.text(max_size=5), max_size=2), json_values()),
    "markers": st.one_of(st.text(max_size=10), json_values())})
PIPFILE_LOCK = st.one_of(json_values(), st.fixed_dictionaries(
    {}, optional={"default": st.one_of(json_values(), st.dictionaries(st.text(max_size=6), PIN,
                                                                      max_size=3))}))
PYPROJECT = st.one_of(json_values(st.sampled_from(["project", "dependencies"])).filter(
    lambda v: isinstance(v, dict)), st.fixed_dictionaries({}, optional={
        "project": st.one_of(json_values(), st.fixed_dictionaries({}, optional={
            "dependencies": st.one_of(st.lists(REQUIREMENT_LINES, max_size=3), json_values())}))}))


def _toml(draw: st.DrawFn, value: Any) -> str:
    """A dict as TOML text (null has no TOML spelling: dropped)."""
    def drop_none(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: drop_none(v) for k, v in item.items() if v is not None}
        if isinstance(item, list):
            return [drop_none(v) for v in item if v is not None]
        return item
    return document(draw, drop_none(value))


@st.composite
def source_files(draw: st.DrawFn) -> dict[str, str]:
    """The texts build_plan reads: manifests, the tree's listing and detection's small files."""
    files: dict[str, str] = {}
    names = draw(st.lists(st.one_of(st.sampled_from(TOP_NAMES), st.text(max_size=6)),
                          max_size=6))
    if draw(st.booleans()):
        files[LISTING] = "\n".join(names)
    makers: dict[str, st.SearchStrategy[str]] = {
        "Procfile": st.one_of(test_procfile.near_valid(), st.text(max_size=40)),
        "app.json": st.one_of(test_appjson.mutated(), st.text(max_size=20)),
        "dockyard.toml": st.one_of(test_dockyard_toml.manifests(), test_dockyard_toml.mutated()),
        "requirements.txt": st.lists(REQUIREMENT_LINES, max_size=5).map("\n".join),
        "package.json": st.one_of(PACKAGE_JSON.map(json.dumps), st.text(max_size=10)),
        "Pipfile.lock": st.one_of(PIPFILE_LOCK.map(json.dumps), st.text(max_size=10)),
        ".python-version": st.one_of(st.from_regex(r"3(\.\d{1,2}){0,2}\n?", fullmatch=True),
                                     st.text(max_size=8)),
        "runtime.txt": st.one_of(st.from_regex(r"python-3(\.\d{1,2}){0,2}", fullmatch=True),
                                 st.text(max_size=8)),
    }
    for name, maker in makers.items():
        if name in names or draw(st.integers(0, 3)) == 0:
            files[name] = draw(maker)
    if "pyproject.toml" in names or draw(st.integers(0, 3)) == 0:
        files["pyproject.toml"] = draw(st.one_of(PYPROJECT.map(lambda v: _toml(draw, v)),
                                                 st.text(max_size=20)))
    return files


OPERATOR_HOOKS = st.lists(st.builds(
    OperatorHook,
    phase=st.one_of(st.sampled_from([p.value for p in HOOK_PHASES]), st.text(max_size=6)),
    label=st.text(max_size=8), command=st.text(max_size=12),
    timeout=st.one_of(st.none(), st.floats()),
    memory=st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))), max_size=3)


def check(files: dict[str, str], operator: list[OperatorHook]) -> Plan | None:
    """The plan of some files, its invariants checked; None for a (clear) PlanError."""
    try:
        plan = build_plan(files, operator)
    except PlanError as exc:
        assert_clear(exc)
        return None
    # What the builder publishes in build.succeeded reads back the same on every consumer.
    assert codec.decode_as(codec.encode(plan), Plan) == plan
    names = [p.name for p in plan.processes]
    assert len(names) == len(set(names))
    for phase in HOOK_PHASES:
        for command in plan.commands(phase):
            assert command.timeout > 0 and math.isfinite(command.timeout)
    assert plan.drain >= 0 and math.isfinite(plan.drain)
    return plan


@PROPERTY
@given(source_files(), OPERATOR_HOOKS.map(lambda hooks: [
    h for h in hooks if h.timeout is None or (math.isfinite(h.timeout) and h.timeout > 0)]))
# Found here: `project = true` in pyproject.toml was an AttributeError; an integer of 5000
# digits in a TOML file was tomllib's ValueError, not a ManifestError.
@example({LISTING: "pyproject.toml", "pyproject.toml": "project = true"}, [])
@example({LISTING: "pyproject.toml", "pyproject.toml": "x = " + "1" * 5000}, [])
@example({"dockyard.toml": "drain = " + "1" * 5000}, [])
def test_any_source_is_a_plan_or_a_clear_error(files: dict[str, str],
                                               operator: list[OperatorHook]) -> None:
    check(files, operator)


@PROPERTY
@given(st.dictionaries(st.sampled_from([*TOP_NAMES, LISTING, "app.json", "dockyard.toml"]),
                       st.text(max_size=30), max_size=5))
def test_any_texts_are_a_plan_or_a_clear_error(files: dict[str, str]) -> None:
    check(files, [])


@PROPERTY
@given(OPERATOR_HOOKS)
# Found here: an infinite timeout was valid, and stored as JSON null it read back as no timeout.
@example([OperatorHook(phase="predeploy", label="0", command="0", timeout=math.inf)])
def test_any_operator_hook_is_valid_or_a_clear_error(hooks: list[OperatorHook]) -> None:
    for hook in hooks:
        try:
            valid = validate_hook(hook)
        except PlanError as exc:
            assert_clear(exc)
            continue
        assert valid.label and valid.command and valid.phase in HOOK_PHASES
        assert msgspec.json.decode(msgspec.json.encode(valid), type=OperatorHook) == valid


@PROPERTY
@given(RANGES, st.from_regex(r"v?\d{1,3}\.\d{1,3}\.\d{1,3}", fullmatch=True))
def test_any_engines_node_range_is_an_answer_or_a_clear_reason(spec: str, have: str) -> None:
    reason = node.check_engine(spec, have)
    if reason is not None:
        assert_clear(ValueError(reason))

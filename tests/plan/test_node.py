"""npm ranges, engines.node and the Node.js build steps, as values."""

from __future__ import annotations

import pytest

from dockyard.contract.plan import BuildStep
from dockyard.plan.node import check_engine, parse_version, render, satisfies


@pytest.mark.parametrize(("version", "spec", "ok"), [
    ("20.11.1", ">=18", True), ("16.20.0", ">=18", False), ("20.1.0", "^20.1", True),
    ("21.0.0", "^20.1", False), ("18.19.0", "18.x", True), ("19.0.0", "18.x", False),
    ("20.5.0", "18.x || 20.x", True), ("20.5.0", "~20.4", False), ("20.4.9", "~20.4.1", True),
    ("20.0.0", ">=18 <20", False), ("19.9.9", ">= 18 < 20", True), ("1.5.0", "1 - 2", True),
    ("3.0.0", "1 - 2", False), ("2.3.0", "1 - 2.3.0", True), ("0.2.5", "^0.2.3", True),
    ("0.3.0", "^0.2.3", False), ("20.11.1", "20", True), ("20.11.1", "*", True),
    ("20.11.1", "=20.11.1", True), ("20.11.2", "<=20.11", True), ("20.12.0", "<=20.11", False),
    ("20.11.1", ">20", False), ("21.0.0", ">20", True), ("20.11.1", "v20.11.1", True),
])
def test_satisfies(version: str, spec: str, ok: bool) -> None:
    assert satisfies(parse_version(version), spec) is ok


def test_engine_check_messages() -> None:
    assert check_engine(">=18", "v20.19.2") is None
    assert check_engine(">=22", "v20.19.2") == (
        "package.json: engines.node asks for '>=22', and the Node.js here is v20.19.2; install "
        "a matching Node.js or change engines.node")
    assert check_engine("banana", "v20.0.0") == (
        "package.json: engines.node: not a version range: 'banana'")


def test_steps_render() -> None:
    assert render(BuildStep(label="", kind="npm-ci"), "/usr/bin/npm") == [
        ["/usr/bin/npm", "ci", "--no-audit", "--no-fund"]]
    assert render(BuildStep(label="", kind="npm-install")) == [
        ["npm", "install", "--no-audit", "--no-fund"]]
    assert render(BuildStep(label="", kind="npm-build")) == [["npm", "run", "build"]]
    with pytest.raises(ValueError, match="not a Node.js build step"):
        render(BuildStep(label="", kind="python-venv"))

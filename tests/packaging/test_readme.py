"""README opens with the two commands, and CI runs exactly the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def commands() -> list[str]:
    return re.findall(r"```sh\n(.+?)\n```", (ROOT / "README.md").read_text())[:2]


def test_readme_opens_with_demo_and_tests() -> None:
    demo, tests = commands()
    assert demo.endswith("dockyard demo")
    # Type checks, lint and import contracts first, then the tests: one command, as CI runs it.
    assert tests.endswith(".venv/bin/mypy && .venv/bin/ruff check && .venv/bin/lint-imports"
                          " && .venv/bin/pytest")


def test_ci_runs_the_readme_test_command() -> None:
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines[-1] == commands()[1]

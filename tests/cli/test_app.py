"""The command tree: every command's `--help` runs and shows an example; `--version`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from dockyard import __version__
from dockyard.cli.app import app

DOCKYARD = str(Path(sys.executable).parent / "dockyard")


def command_paths(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every leaf command, as the words that name it (typer's own click: groups by shape)."""
    found: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            found += command_paths(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


COMMANDS = command_paths(typer.main.get_command(app))


def test_every_command_group_is_there() -> None:
    assert {p[0] for p in COMMANDS} == {
        "up", "service", "demo", "deploy", "apps", "ps", "cancel", "logs", "events", "status",
        "deployments", "releases", "rollback", "destroy", "config", "hooks", "notify",
        "maintenance", "rollout", "bus", "run", "scale", "restart"}
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_runs_and_shows_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, result.output
    assert f"dockyard {' '.join(path)}" in result.output, result.output


def test_version_answers_through_the_real_executable() -> None:
    for args in (["--version"], ["--version", "--help"]):
        done = subprocess.run([DOCKYARD, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"dockyard {__version__}\n"


def test_help_through_the_real_executable_lists_the_commands() -> None:
    done = subprocess.run([DOCKYARD, "--help"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    for word in ("deploy", "logs", "status", "config", "--version"):
        assert word in done.stdout

"""`dockyard run`: what it exits with, and what it refuses before reaching the bus."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from dockyard.cli.app import app
from dockyard.cli.oneoff import exit_code_of


def test_a_run_s_exit_code_is_passed_through_as_a_shell_would_say_it() -> None:
    assert [exit_code_of(c) for c in (0, 3, 255, -9, -15, 300, -200)] == [
        0, 3, 255, 137, 143, 1, 1]


def test_a_bad_app_name_or_no_command_is_one_line_and_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["run", "Bad_Name", "--data-dir", str(tmp_path), "--", "ls"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    blank = runner.invoke(app, ["run", "shop", "--data-dir", str(tmp_path), "--", " "])
    assert blank.exit_code == 2 and "no command to run" in blank.output

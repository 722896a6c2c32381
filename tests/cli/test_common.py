"""Running a command's coroutine: user-caused errors are one line and exit 2, Ctrl-C 130;
anything else (a bug) is not hidden."""

from __future__ import annotations

import sys

import pytest
import typer

from dockyard.cli.common import bus_failure, expected_errors, run
from dockyard.cli.errors import CliError, UnknownApp


def exit_code(coro: object, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(typer.Exit) as caught:
        run(coro)  # type: ignore[arg-type]
    return caught.value.exit_code, capsys.readouterr().err


def test_a_cli_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    async def body() -> None:
        raise UnknownApp("typoapp", can_create=True)

    code, err = exit_code(body(), capsys)
    assert code == 2
    assert err == ("error: no app named 'typoapp': it has no deployments, config, hooks or "
                   "notifications; check the name, or add --create to set it up before its "
                   "first deploy\n")


def test_errors_of_loaded_modules_are_expected(capsys: pytest.CaptureFixture[str]) -> None:
    from dockyard.settings import SettingsError

    assert SettingsError in expected_errors() and CliError in expected_errors()

    async def body() -> None:
        raise SettingsError("DOCKYARD_HTTP_PORT must be a whole number, got 'x'")

    assert exit_code(body(), capsys) == (
        2, "error: DOCKYARD_HTTP_PORT must be a whole number, got 'x'\n")


def test_a_bus_failure_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import nats.errors

    assert bus_failure(ValueError("x")) is None

    async def body() -> None:
        raise nats.errors.TimeoutError

    code, err = exit_code(body(), capsys)
    assert code == 2 and err.startswith("error: the bus did not answer as expected: ")
    assert err.count("\n") == 1


def test_the_machine_refusing_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    async def body() -> None:
        raise PermissionError(13, "Permission denied", "/srv/dockyard")

    assert exit_code(body(), capsys) == (
        2, "error: [Errno 13] Permission denied: '/srv/dockyard'\n")


def test_ctrl_c_exits_130_quietly(capsys: pytest.CaptureFixture[str]) -> None:
    async def body() -> None:
        raise KeyboardInterrupt

    assert exit_code(body(), capsys) == (130, "")


def test_a_bug_is_not_hidden() -> None:
    async def body() -> None:
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        run(body())


def test_the_check_loads_nothing() -> None:
    before = set(sys.modules)
    expected_errors()
    assert set(sys.modules) == before

"""Structured logs to stderr, at the level asked for (or DOCKYARD_LOG_LEVEL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from dockyard.log_config import configure_logging


@pytest.fixture(autouse=True)
def restore_structlog() -> Iterator[None]:
    """Each test configures structlog; the suite gets its defaults back."""
    yield
    structlog.reset_defaults()


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_the_level_given_filters(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("warning")
    log = structlog.get_logger()
    log.info("quiet detail")
    log.warning("loud problem", app="shop")
    [line] = lines(capsys)
    assert "loud problem" in line and "app=shop" in line and "warning" in line


def test_the_level_from_the_environment(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_LOG_LEVEL", "ERROR")
    configure_logging()
    structlog.get_logger().warning("not shown")
    structlog.get_logger().error("shown")
    assert [("shown" in line) for line in lines(capsys)] == [True]


def test_info_by_default_and_for_an_unknown_level(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKYARD_LOG_LEVEL", raising=False)
    for level in (None, "chatty"):
        configure_logging(level)
        structlog.get_logger().debug("hidden")
        structlog.get_logger().info("visible")
        assert len([line for line in lines(capsys) if "visible" in line]) == 1
        structlog.reset_defaults()


def test_context_variables_are_merged_into_every_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")
    with structlog.contextvars.bound_contextvars(deployment_id="d42"):
        structlog.get_logger().info("building")
    [line] = lines(capsys)
    assert "deployment_id=d42" in line

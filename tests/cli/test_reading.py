"""The records as the CLI shows them (every value whole) and where an app answers."""

from __future__ import annotations

from dockyard.cli.reading import (
    deployment_rows,
    maintenance_line,
    release_rows,
    status_style,
    url_line,
)

DEP = "f3ccf8d37f6f4ffc815af2a0b1c2d3e4"
WHEN = "2026-11-22T13:13:24.600287Z"
URL = "http://shop.localhost:8080/"


def test_deployment_rows_keep_every_value_whole() -> None:
    reason = "postdeploy `smoke test of every page of the shop` exited with code 3 " * 3
    rows = deployment_rows([
        {"id": DEP, "release": 4, "status": "hook-error", "reason": reason, "created_at": WHEN},
        {"id": "0" * 32, "release": 0, "status": "cancelled", "reason": None,
         "created_at": WHEN}])
    assert rows == [[DEP, "v4", "hook-error", reason, WHEN],
                    ["0" * 32, "-", "cancelled", "", WHEN]]


def test_release_rows_mark_the_live_one() -> None:
    rows = release_rows([{"number": 2, "build_id": "v2-f3ccf8d3", "kind": "config",
                          "config_version": 3, "deployment_id": DEP, "created_at": WHEN,
                          "live": True}])
    assert rows == [["v2", "v2-f3ccf8d3", "config", 3, DEP, WHEN, "yes"]]


def test_the_url_line_says_when_there_is_no_route() -> None:
    web = {"live_release": 2, "instances": [{"release": 2, "process": "web"},
                                            {"release": 2, "process": "worker"}]}
    assert url_line(web, URL) == f"url: {URL}"
    workers = {"live_release": 2, "instances": [{"release": 2, "process": "worker"},
                                                {"release": 1, "process": "web"}]}
    assert url_line(workers, URL).startswith("url: none: the live release has no web process")
    assert "503" in url_line(None, URL) and URL in url_line(None, URL)
    assert url_line({"live_release": None, "instances": []}, URL).startswith(f"url: {URL}")


def test_status_colours() -> None:
    assert status_style("succeeded") == "green" and status_style("hook-error") == "red"
    assert status_style("cancelled") == "yellow" and status_style("odd") == "white"


def test_status_says_when_an_app_is_in_maintenance() -> None:
    assert maintenance_line("shop", None) is None
    assert maintenance_line("shop", {"enabled": False, "since": WHEN}) is None
    assert maintenance_line("shop", {"enabled": True, "since": "2025-01-01T00:00:00Z",
                                     "message": "back at 10"}) == (
        "maintenance: on since 2025-01-01T00:00:00Z (back at 10): the host answers 503 until "
        "`dockyard maintenance off shop`")

"""What `notify ls` may show of a sink (never its secret nor its URL's path) and how it has
answered lately."""

from __future__ import annotations

from datetime import UTC, datetime

from dockyard.cli.notify import sink_row, sink_view
from dockyard.contract.sinks import Sink, SinkStatus

SLACK = Sink(name="ops", url="https://hooks.example.com/T000/B000/XXXXpathkey", kind="slack",
             secret="whsec_c2VjcmV0", events=["deploy.*"])


def test_a_sink_is_shown_without_its_secret_or_path() -> None:
    view = sink_view(SLACK)
    assert view == {"name": "ops", "kind": "slack", "host": "hooks.example.com",
                    "events": ["deploy.*"], "signed": True, "failures": 0, "given_up": 0,
                    "last_error": None, "last_failure_at": None, "last_delivered_at": None}
    assert "pathkey" not in repr(view) and "whsec_" not in repr(view)
    assert sink_view(Sink(name="x", url="http://h:1/p"))["signed"] is False
    assert sink_row(view) == ["ops", "slack", "hooks.example.com", "deploy.*", "yes", "0", ""]


def test_a_failing_sink_shows_its_failures_and_last_error_whole() -> None:
    when = datetime(2026, 11, 22, 13, 45, 7, 123456, tzinfo=UTC)
    view = sink_view(SLACK, SinkStatus(failures=2, given_up=1, last_error="HTTP 500",
                                       last_failure_at=when))
    assert view["failures"] == 2 and view["last_failure_at"] == "2026-11-22T13:45:07.123456Z"
    assert sink_row(view)[5:] == ["2 (1 events given up)",
                                  "HTTP 500 at 2026-11-22T13:45:07.123456Z"]

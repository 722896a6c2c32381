"""The sentences chat sinks show."""

from __future__ import annotations

from typing import Any

import msgspec

from dockyard.contract.events import (
    AfterSwitchFailed,
    BuildStarted,
    DeployFailed,
    DeployQueued,
    DeploySucceeded,
    HookFailed,
)
from dockyard.notifier.slack import escape, payload, text
from tests.events import make

ENV: dict[str, Any] = {"source": "t", "app": "shop", "deployment_id": "1a2b3c4d5e6f"}


def test_queued() -> None:
    assert text(make(DeployQueued, id="x", **ENV)) == \
        ":hourglass_flowing_sand: shop deploy 1a2b3c4d queued"


def test_succeeded_names_the_release() -> None:
    assert text(make(DeploySucceeded, id="x", release=3, **ENV)) == \
        ":white_check_mark: shop v3 deployed"
    assert text(make(DeploySucceeded, id="x", **ENV)) == \
        ":white_check_mark: shop deploy 1a2b3c4d deployed"


def test_failed_gives_status_exit_code_and_reason() -> None:
    event = make(DeployFailed, id="x", status="hook-error", reason="postdeploy failed", exit_code=1,
                         **ENV)
    assert text(event) == ":x: shop deploy 1a2b3c4d failed: hook-error (exit 1) — postdeploy failed"
    bare = make(DeployFailed, id="x", status="cancelled", reason="", **ENV)
    assert text(bare) == ":x: shop deploy 1a2b3c4d failed: cancelled"


def test_phase_failure_names_the_phase() -> None:
    event = make(HookFailed, id="x", status="hook-error", reason="", exit_code=-128, **ENV)
    assert text(event) == ":x: shop deploy 1a2b3c4d failed at hook: hook-error (exit -128)"
    after = make(AfterSwitchFailed, id="x", status="hook-error", reason="", exit_code=6, **ENV)
    assert text(after) == ":x: shop deploy 1a2b3c4d failed at after_switch: hook-error (exit 6)"


def test_other_events_get_a_plain_line() -> None:
    assert text(make(BuildStarted, id="x", **ENV)) == "shop: build started (deploy 1a2b3c4d)"


def test_reason_is_escaped_for_mrkdwn() -> None:
    event = make(DeployFailed, id="x", status="build-error", reason="<script> & co", **ENV)
    assert text(event).endswith("— &lt;script&gt; &amp; co")
    assert escape("a<b>&") == "a&lt;b&gt;&amp;"


def test_payload_is_a_text_object() -> None:
    body = payload(make(DeployQueued, id="x", **ENV))
    assert msgspec.json.decode(body) == {
        "text": ":hourglass_flowing_sand: shop deploy 1a2b3c4d queued"}

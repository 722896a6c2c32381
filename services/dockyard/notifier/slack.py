"""Slack-compatible chat messages: one human sentence per event, as `{"text": ...}`."""

from __future__ import annotations

from typing import Any

import msgspec

from dockyard.contract.events import (
    DeployQueued,
    DeploySucceeded,
    Event,
    FailureData,
    TrafficSwitched,
)

SHORT_ID = 8


class SlackMessage(msgspec.Struct, frozen=True):
    """The body Slack's incoming webhooks (and Mattermost, Rocket.Chat...) accept."""

    text: str


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def short(deployment_id: str) -> str:
    """A deployment id short enough for a chat line."""
    return deployment_id[:SHORT_ID]


def text(event: Event[Any]) -> str:
    """The sentence a person reads for this event."""
    app = escape(event.app)
    dep = short(event.deployment_id)
    version = f"v{event.release}" if event.release else f"deploy {dep}"
    if isinstance(event, DeployQueued):
        return f":hourglass_flowing_sand: {app} deploy {dep} queued"
    if isinstance(event, DeploySucceeded):
        return f":white_check_mark: {app} {version} deployed"
    if isinstance(event, TrafficSwitched):
        previous = event.data.previous_release
        was = f" (was v{previous})" if previous else ""
        return f":twisted_rightwards_arrows: {app} now serves v{event.release}{was}"
    if isinstance(event.data, FailureData):
        failed = event.data
        where = "" if event.topic == "deploy" else f" at {event.topic}"
        exit_code = f" (exit {failed.exit_code})" if failed.exit_code is not None else ""
        reason = f" — {escape(failed.reason)}" if failed.reason else ""
        return f":x: {app} deploy {dep} failed{where}: {failed.status}{exit_code}{reason}"
    return f"{app}: {event.topic} {event.outcome} (deploy {dep})"


def payload(event: Event[Any]) -> bytes:
    """The JSON body posted to a Slack-compatible sink."""
    return msgspec.json.encode(SlackMessage(text=text(event)))

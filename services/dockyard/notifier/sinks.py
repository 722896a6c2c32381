"""Where notifications go: per-app sinks (stored through the sinks door) plus a global sink.

A sink is a generic webhook (the event's own CloudEvents JSON, signed per Standard Webhooks) or a
Slack-compatible chat webhook (`{"text": ...}`). Notification events themselves are never sent,
to any sink, whatever its patterns: a failing sink would otherwise notify about itself forever.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

from dockyard.contract import codec
from dockyard.contract.events import Event
from dockyard.contract.sinks import (
    GLOBAL_SINK,
    NOTIFICATION_PREFIX,
    TYPE_PREFIX,
    Sink,
    validate,
)
from dockyard.notifier import signing, slack


def global_sink(url: str, secret: str = "") -> Sink | None:
    """The sink configured by DOCKYARD_WEBHOOK_URL/SECRET, validated (InvalidSink), if set."""
    if not url:
        return None
    return validate(Sink(name=GLOBAL_SINK, url=url, secret=secret or None))


def is_notification(event_type: str) -> bool:
    """Whether an event is about notifications (never notified, to avoid loops)."""
    return event_type.startswith(NOTIFICATION_PREFIX)


def matches(sink: Sink, event_type: str) -> bool:
    """Whether one of the sink's patterns matches the event type."""
    return any(fnmatch.fnmatchcase(event_type, _full(p)) for p in sink.events)


def select(sinks: Sequence[Sink], event_type: str) -> list[Sink]:
    """The sinks that get an event of this type."""
    if is_notification(event_type):
        return []
    return [s for s in sinks if matches(s, event_type)]


def _full(pattern: str) -> str:
    return pattern if pattern.startswith(TYPE_PREFIX) else TYPE_PREFIX + pattern






# ---------------------------------------------------------------- what a sink receives


def request(sink: Sink, event: Event[Any],
            timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """Body and headers for one delivery: the signed event JSON, or a Slack text message."""
    if sink.kind == "slack":
        return slack.payload(event), {}
    body = codec.encode(event)
    # webhook-id is the event id on every attempt, so receivers can deduplicate retries.
    return body, signing.webhook_headers(sink.secret, event.id, body, timestamp)

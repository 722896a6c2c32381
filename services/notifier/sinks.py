"""Where notifications go: per-app sinks in the notify KV bucket, plus a global sink from settings.

A sink is a generic webhook (the event's own CloudEvents JSON, signed per Standard Webhooks) or a
Slack-compatible chat webhook (`{"text": ...}`). Its `events` are glob patterns over event types
(`dockyard.deploy.*`; a pattern without the `dockyard.` prefix gets it). By default a sink hears
what a person watching deploys wants and nothing chatty: `deploy.queued`, `deploy.succeeded`,
`deploy.failed` (every failed or cancelled end), `hook.failed` (the postdeploy gate said no) and
`traffic.switched` (the new release serves). Notification events themselves are never sent, to
any sink, whatever its patterns: a failing sink would otherwise notify about itself forever.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal
from urllib.parse import urlsplit

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from dockyard.notifier import signing, slack
from dockyard.notifier.delivery import DEFAULT_ATTEMPTS, DEFAULT_BACKOFF
from dockyard.notifier.errors import ConcurrentUpdate, InvalidSink, SinkNotFound
from dockyard.schemas import codec
from dockyard.schemas.events import (
    DeployFailed,
    DeployQueued,
    DeploySucceeded,
    Event,
    HookFailed,
    NotificationAttempted,
    TrafficSwitched,
    type_of,
)

SinkKind = Literal["webhook", "slack"]
TYPE_PREFIX = "dockyard."
DEFAULT_EVENTS: tuple[str, ...] = tuple(
    type_of(c) for c in (DeployQueued, DeploySucceeded, DeployFailed, HookFailed, TrafficSwitched)
)
# Every notification.* type shares this prefix (derived, so no literal drifts from the schema).
NOTIFICATION_PREFIX = type_of(NotificationAttempted).rsplit(".", 1)[0] + "."
GLOBAL_SINK = "global"
DEFAULT_TIMEOUT = 10.0
# Deliveries run inside one handler call, which must end within the consumer's ack wait (30 s).
MAX_TIMEOUT = 20.0
_NAME = re.compile(r"^[a-zA-Z0-9][-_a-zA-Z0-9]{0,63}$")
_KEY = re.compile(r"^[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)*$")
_CAS_TRIES = 10


class Sink(msgspec.Struct, frozen=True, kw_only=True):
    """One destination of notifications."""

    name: str
    url: str
    kind: SinkKind = "webhook"
    secret: str | None = None
    events: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_EVENTS))
    max_attempts: int = DEFAULT_ATTEMPTS
    backoff: float = DEFAULT_BACKOFF
    timeout: float = DEFAULT_TIMEOUT

    def __repr__(self) -> str:
        # Never show the secret, nor a URL path (a Slack webhook URL is itself a credential).
        host = urlsplit(self.url).netloc
        return f"Sink(name={self.name!r}, kind={self.kind!r}, host={host!r})"


class Sinks(msgspec.Struct, frozen=True, kw_only=True):
    """Every sink of one app (the value under key = app in the notify bucket)."""

    sinks: list[Sink] = []


def validate(sink: Sink) -> Sink:
    """The sink itself, or InvalidSink saying what is wrong with it."""
    if not _NAME.match(sink.name):
        raise InvalidSink(sink.name, "name must be 1-64 of letters, digits, - and _")
    if sink.kind not in ("webhook", "slack"):
        raise InvalidSink(sink.name, f"kind must be webhook or slack, got {sink.kind!r}")
    parts = urlsplit(sink.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidSink(sink.name, "url must be an absolute http(s) URL")
    if not sink.events:
        raise InvalidSink(sink.name, "events must list at least one pattern")
    if sink.max_attempts < 1:
        raise InvalidSink(sink.name, "max_attempts must be at least 1")
    if sink.backoff <= 0 or not 0 < sink.timeout <= MAX_TIMEOUT:
        raise InvalidSink(sink.name, f"backoff must be positive, timeout in (0, {MAX_TIMEOUT}]")
    return sink


def global_sink(url: str, secret: str = "") -> Sink | None:
    """The sink configured by DOCKYARD_WEBHOOK_URL/SECRET, applying to every app, if set."""
    if not url:
        return None
    return Sink(name=GLOBAL_SINK, url=url, secret=secret or None)


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


# ---------------------------------------------------------------- the notify bucket


_decoder = msgspec.json.Decoder(Sinks)


async def list_sinks(kv: KeyValue, app: str) -> list[Sink]:
    """The app's own sinks (not the global one)."""
    current, _ = await _read(kv, app)
    return list(current.sinks)


async def add_sink(kv: KeyValue, app: str, sink: Sink) -> None:
    """Add or replace (by name) one sink of the app."""
    validate(sink)
    if sink.name == GLOBAL_SINK:
        raise InvalidSink(sink.name, "the name is reserved for the sink from settings")
    if not _KEY.match(app):
        raise InvalidSink(sink.name, f"app name {app!r} cannot be a bucket key")

    def change(current: Sinks) -> Sinks:
        return Sinks(sinks=[s for s in current.sinks if s.name != sink.name] + [sink])

    await _modify(kv, app, change)


async def remove_sink(kv: KeyValue, app: str, name: str) -> None:
    """Remove one sink of the app; SinkNotFound if it has none of that name."""

    def change(current: Sinks) -> Sinks:
        if not any(s.name == name for s in current.sinks):
            raise SinkNotFound(app, name)
        return Sinks(sinks=[s for s in current.sinks if s.name != name])

    await _modify(kv, app, change)


async def _read(kv: KeyValue, app: str) -> tuple[Sinks, int | None]:
    if not _KEY.match(app):
        # No sink can be stored under such a name, so an event about it has none.
        return Sinks(), None
    try:
        entry = await kv.get(app)
    except KeyNotFoundError:
        return Sinks(), None
    if not entry.value:
        return Sinks(), entry.revision
    return _decoder.decode(entry.value), entry.revision


async def _modify(kv: KeyValue, app: str, change: Callable[[Sinks], Sinks]) -> None:
    """Read, change, write back only if nobody wrote in between (else read again)."""
    for _ in range(_CAS_TRIES):
        current, revision = await _read(kv, app)
        value = msgspec.json.encode(change(current))
        write: Awaitable[int] = (kv.create(app, value) if revision is None
                                 else kv.update(app, value, last=revision))
        try:
            await write
            return
        except KeyWrongLastSequenceError:
            continue
    raise ConcurrentUpdate(app, _CAS_TRIES)


# ---------------------------------------------------------------- what a sink receives


def request(sink: Sink, event: Event, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """Body and headers for one delivery: the signed event JSON, or a Slack text message."""
    if sink.kind == "slack":
        return slack.payload(event), {}
    body = codec.encode(event)
    # webhook-id is the event id on every attempt, so receivers can deduplicate retries.
    return body, signing.webhook_headers(sink.secret, event.id, body, timestamp)

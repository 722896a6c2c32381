"""Notification sinks as stored per app: generic webhooks (Standard Webhooks) and chat webhooks.

A sink's `events` are glob patterns over event types (`dockyard.deploy.*`; a pattern without the
`dockyard.` prefix gets it). By default a sink hears what a person watching deploys wants and
nothing chatty: `deploy.queued`, `deploy.succeeded`, `deploy.failed`, `hook.failed` and
`traffic.switched`.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from dockyard.contract.events import (
    DeployFailed,
    DeployQueued,
    DeploySucceeded,
    HookFailed,
    NotificationAttempted,
    TrafficSwitched,
    type_of,
)

DEFAULT_ATTEMPTS = 5
# A refusing sink is retried this often at most: with the backoff capped at 10 minutes, about an
# hour and a half of attempts for one event.
MAX_ATTEMPTS = 12
SECRET_PREFIX = "whsec_"
DEFAULT_BACKOFF = 2.0
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


class SinkError(ValueError):
    """A sink change that cannot be made."""


class InvalidSink(SinkError):
    """A sink that cannot be stored (bad name, kind, URL, attempts...)."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"sink {name!r}: {problem}")


class SinkNotFound(SinkError):
    """No sink of that name is registered for the app."""

    def __init__(self, app: str, name: str) -> None:
        self.app = app
        self.name = name
        super().__init__(f"app {app!r} has no sink named {name!r}")


# The official `standardwebhooks` libraries take a secret only as `whsec_<base64 key>` (they
# base64-decode what follows the prefix, or the whole string), so that form is what is stored and
# what a receiver is given.
def webhook_secret(name: str, secret: str) -> str:
    """A signing secret as `whsec_<base64 key>` (a plain string's key is its UTF-8 bytes)."""
    if not secret.startswith(SECRET_PREFIX):
        if not secret.strip():
            raise InvalidSink(name, "secret must not be empty (leave it out for unsigned events)")
        return SECRET_PREFIX + base64.b64encode(secret.encode("utf-8")).decode("ascii")
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        # The message may reach logs and events: it describes the secret, never quotes it.
        padded = encoded + "=" * (-len(encoded) % 4)
        hint = ("; add the '=' padding" if padded != encoded and _decodes(padded) else "")
        raise InvalidSink(name, f"secret: what follows whsec_ is not valid base64 ({exc}{hint});"
                          " to use a plain string as the key, give it without whsec_") from None
    if not key:
        raise InvalidSink(name, "secret: whsec_ must be followed by the key in base64")
    return secret


def _decodes(encoded: str) -> bool:
    """Whether a text is strict base64 (standard alphabet, padded)."""
    try:
        base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def validate(sink: Sink) -> Sink:
    """The sink as stored (its secret in whsec_ form), or InvalidSink saying what is wrong."""
    if not _NAME.fullmatch(sink.name):
        raise InvalidSink(sink.name, "name must be 1-64 of letters, digits, - and _")
    if sink.kind not in ("webhook", "slack"):
        raise InvalidSink(sink.name, f"kind must be webhook or slack, got {sink.kind!r}")
    try:
        parts = urlsplit(sink.url)
        parts.port  # noqa: B018 (parsing the port is what raises on a bad one)
    except ValueError as exc:
        raise InvalidSink(sink.name, f"url is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.netloc or not parts.hostname:
        raise InvalidSink(sink.name, "url must be an absolute http(s) URL")
    if any(c.isspace() or not c.isprintable() for c in sink.url):
        raise InvalidSink(sink.name, "url must not hold spaces or control characters")
    if not sink.events:
        raise InvalidSink(sink.name, "events must list at least one pattern")
    if not 1 <= sink.max_attempts <= MAX_ATTEMPTS:
        raise InvalidSink(sink.name, f"max_attempts must be from 1 to {MAX_ATTEMPTS}")
    if sink.backoff <= 0 or not 0 < sink.timeout <= MAX_TIMEOUT:
        raise InvalidSink(sink.name, f"backoff must be positive, timeout in (0, {MAX_TIMEOUT}]")
    if sink.secret is None:
        return sink
    if sink.kind == "slack":
        raise InvalidSink(sink.name, "a slack sink is not signed: leave the secret out")
    return msgspec.structs.replace(sink, secret=webhook_secret(sink.name, sink.secret))


def with_sink(current: Sinks, sink: Sink) -> Sinks:
    """The sinks with one added (validated, as stored), or replaced by name."""
    sink = validate(sink)
    if sink.name == GLOBAL_SINK:
        raise InvalidSink(sink.name, "the name is reserved for the sink from settings")
    return Sinks(sinks=[s for s in current.sinks if s.name != sink.name] + [sink])


def without_sink(current: Sinks, app: str, name: str) -> Sinks:
    """The sinks without the one of that name; SinkNotFound if there is none."""
    if not any(s.name == name for s in current.sinks):
        raise SinkNotFound(app, name)
    return Sinks(sinks=[s for s in current.sinks if s.name != name])


class SinkStatus(msgspec.Struct, frozen=True, kw_only=True):
    """How one app's sink has answered lately (the notifier writes it, `notify ls` shows it)."""

    # Failed attempts since the last delivery, and the events given up since then (each got a
    # notification.failed).
    failures: int = 0
    given_up: int = 0
    last_error: str | None = None
    last_failure_at: datetime | None = None
    last_delivered_at: datetime | None = None

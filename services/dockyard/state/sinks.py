"""Where each app's events are delivered: its notification sinks, in the `sinks` bucket by app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from dockyard.contract import subjects
from dockyard.contract.sinks import Sinks
from dockyard.state import kv
from dockyard.state.door import Door, Grant

_decoder = msgspec.json.Decoder(Sinks)


class SinkReader(Protocol):
    """Reads an app's sinks."""

    async def load(self, app: str) -> Sinks:
        """The app's own sinks (not the global one)."""


class SinkStore(SinkReader, Protocol):
    """Reads and changes an app's sinks."""

    async def change(self, app: str, fn: Callable[[Sinks], Sinks]) -> Sinks:
        """Apply fn atomically (fn may raise to refuse); the sinks after."""


class SinkForgetter(Protocol):
    """Forgets an app's sinks without reading them (the builder, destroying an app)."""

    async def forget(self, app: str) -> bool:
        """Remove every sink of an app; whether it had any."""


class NatsSinkStore:
    """SinkStore on the `sinks` bucket."""

    def __init__(self, js: JetStreamContext, bucket: KeyValue) -> None:
        self.js = js
        self.kv = bucket

    async def load(self, app: str) -> Sinks:
        """The app's own sinks."""
        raw, _ = await kv.read(self.kv, app)
        return _decoder.decode(raw) if raw else Sinks()

    async def change(self, app: str, fn: Callable[[Sinks], Sinks]) -> Sinks:
        """Apply fn atomically; the sinks after."""
        _, after = await kv.change(self.kv, subjects.KV_SINKS, app,
                                   lambda raw: _decoder.decode(raw) if raw else Sinks(), fn,
                                   msgspec.json.encode)
        return after

    async def forget(self, app: str) -> bool:
        """Purge the app's sinks; whether it had any."""
        return bool(await kv.purge(self.js, self.kv, subjects.KV_SINKS, app))


async def open_sink_store(js: JetStreamContext, service: str) -> SinkStore:
    """Sinks, writable."""
    del service
    return NatsSinkStore(js, await js.key_value(subjects.KV_SINKS))


async def open_sink_forgetter(js: JetStreamContext, service: str) -> SinkForgetter:
    """Sinks, forgettable only (no sink, secret or URL is read through this door)."""
    del service
    return NatsSinkStore(js, await js.key_value(subjects.KV_SINKS))


async def open_sink_reader(js: JetStreamContext, service: str) -> SinkReader:
    """Sinks, read-only."""
    return await open_sink_store(js, service)


STORE = Door(SinkStore, open_sink_store, (Grant("kv", subjects.KV_SINKS, "write"),))
FORGETTER = Door(SinkForgetter, open_sink_forgetter, (Grant("kv", subjects.KV_SINKS, "forget"),))
READER = Door(SinkReader, open_sink_reader, (Grant("kv", subjects.KV_SINKS, "read"),))

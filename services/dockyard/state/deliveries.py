"""Where delivering each (event, sink) stands, and how each app's sink has answered lately, in
the `deliveries` bucket (the notifier's own; `notify ls` reads the sink statuses)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from dockyard.contract import subjects
from dockyard.contract.sinks import SinkStatus
from dockyard.contract.state import DeliveryState
from dockyard.state import kv
from dockyard.state.door import Door, Grant

_decoder = msgspec.json.Decoder(DeliveryState)
_status = msgspec.json.Decoder(SinkStatus)
STATUS = "sink"
_KEY_SAFE = frozenset("-_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def key_part(text: str) -> str:
    """One KV key token: other characters (`.`, `=` too) become `=xx` bytes, so it is injective."""
    return "".join(c if c in _KEY_SAFE else "".join(f"={b:02x}" for b in c.encode())
                   for c in text)


def status_key(app: str, sink: str) -> str:
    """Key of one app's sink status."""
    return f"{STATUS}.{key_part(app)}.{key_part(sink)}"


class Conflict(Exception):
    """Another notifier instance recorded an attempt of the same delivery first."""

    def __init__(self, key: str) -> None:
        super().__init__(f"delivery {key!r} changed concurrently")
        self.key = key


class SinkStatusReader(Protocol):
    """Reads how an app's sinks have answered lately."""

    async def statuses(self, app: str, sinks: Sequence[str]) -> dict[str, SinkStatus]:
        """The status of each named sink of the app (a fresh one where none is recorded)."""


class Deliveries(SinkStatusReader, Protocol):
    """Delivery states, written with optimistic concurrency; sink statuses."""

    async def load(self, key: str) -> tuple[DeliveryState, int]:
        """The state under key (fresh if none) and its revision (0 if absent)."""

    async def save(self, key: str, state: DeliveryState, revision: int) -> None:
        """Write the state if the key is still at revision, else Conflict."""

    async def change_status(self, app: str, sink: str,
                            fn: Callable[[SinkStatus], SinkStatus]) -> SinkStatus:
        """Apply fn to the sink's status atomically; the status after."""

    async def forget_statuses(self, app: str) -> None:
        """Remove the status of every sink of an app (the app is destroyed)."""


class NatsDeliveries:
    """Deliveries on the `deliveries` bucket."""

    def __init__(self, js: JetStreamContext, bucket: KeyValue) -> None:
        self.js = js
        self.kv = bucket

    async def load(self, key: str) -> tuple[DeliveryState, int]:
        """The state under key (fresh if none) and its revision (0 if absent)."""
        raw, revision = await kv.read(self.kv, key)
        return (_decoder.decode(raw) if raw else DeliveryState()), revision

    async def save(self, key: str, state: DeliveryState, revision: int) -> None:
        """Write the state if the key is still at revision, else Conflict."""
        if not await kv.write(self.kv, key, msgspec.json.encode(state), revision):
            raise Conflict(key)

    async def change_status(self, app: str, sink: str,
                            fn: Callable[[SinkStatus], SinkStatus]) -> SinkStatus:
        """Apply fn to the sink's status atomically; the status after."""
        _, after = await kv.change(self.kv, subjects.KV_DELIVERIES, status_key(app, sink),
                                   lambda raw: _status.decode(raw) if raw else SinkStatus(), fn,
                                   msgspec.json.encode)
        return after

    async def forget_statuses(self, app: str) -> None:
        """Purge the status of every sink of an app."""
        await kv.purge(self.js, self.kv, subjects.KV_DELIVERIES, f"{STATUS}.{key_part(app)}.*")

    async def statuses(self, app: str, sinks: Sequence[str]) -> dict[str, SinkStatus]:
        """The status of each named sink of the app (a fresh one where none is recorded)."""
        found: dict[str, SinkStatus] = {}
        for name in sinks:
            raw, _ = await kv.read(self.kv, status_key(app, name))
            found[name] = _status.decode(raw) if raw else SinkStatus()
        return found


async def open_deliveries(js: JetStreamContext, service: str) -> Deliveries:
    """The delivery states."""
    del service
    return NatsDeliveries(js, await js.key_value(subjects.KV_DELIVERIES))


async def open_status_reader(js: JetStreamContext, service: str) -> SinkStatusReader:
    """The sink statuses, read-only."""
    return await open_deliveries(js, service)


DOOR = Door(Deliveries, open_deliveries, (Grant("kv", subjects.KV_DELIVERIES, "write"),))
# Sink statuses only: the per-event delivery records stay the notifier's.
STATUS_READER = Door(SinkStatusReader, open_status_reader,
                     (Grant("kv", subjects.KV_DELIVERIES, "read", keys=STATUS),))

"""Which apps are in maintenance (the `maintenance` bucket, key `<app>`): their host answers 503
with a maintenance page while their instances keep running.

The cli and the api write it; the router follows it (and rebuilds from it on start).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Protocol

import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from dockyard.contract import subjects
from dockyard.contract.state import Maintenance
from dockyard.state import kv
from dockyard.state.door import Door, Grant

MAX_MESSAGE = 200


class MaintenanceError(ValueError):
    """A maintenance message that cannot be shown as asked."""


def check_message(message: str | None) -> str | None:
    """A message fit for the maintenance page: one line of printable text, no braces (Caddy
    would read `{...}` as a placeholder), at most MAX_MESSAGE characters; None when blank."""
    if message is None or not message.strip():
        return None
    text = message.strip()
    if len(text) > MAX_MESSAGE:
        raise MaintenanceError(f"the maintenance message is {len(text)} characters long; "
                               f"at most {MAX_MESSAGE} are shown")
    if any(not c.isprintable() or c in "{}" for c in text):
        raise MaintenanceError("the maintenance message must be one line of printable text "
                               "without { or }")
    return text


def turned(current: Maintenance, enabled: bool, message: str | None,
           now: datetime) -> Maintenance:
    """The record after turning maintenance on or off; unchanged when it already is so (a
    message given again with `on` replaces the shown one)."""
    shown = check_message(message) if enabled else None
    if current.enabled == enabled and current.message == shown:
        return current
    since = current.since if current.enabled == enabled and current.since else now
    return Maintenance(app=current.app, enabled=enabled, since=since, message=shown)


class MaintenanceReader(Protocol):
    """Reads which apps are in maintenance."""

    async def get(self, app: str) -> Maintenance:
        """The app's record (off, with no `since`, when never set)."""

    async def all_on(self) -> dict[str, Maintenance]:
        """Every app in maintenance, by app."""

    def updates(self) -> contextlib.AbstractAsyncContextManager[AsyncIterator[Maintenance]]:
        """Every app's record as it is, then every change of one (off when forgotten)."""


class MaintenanceStore(MaintenanceReader, Protocol):
    """Reads and turns maintenance on and off (the cli and the api)."""

    async def turn(self, app: str, enabled: bool, message: str | None = None) -> Maintenance:
        """Turn the app's maintenance on or off (MaintenanceError for a bad message)."""


class MaintenanceForgetter(Protocol):
    """Forgets an app's maintenance flag without reading it (the builder, destroying an app)."""

    async def forget(self, app: str) -> bool:
        """Purge the app's record; whether there was one."""


_decoder = msgspec.json.Decoder(Maintenance)


def _record(key: str, value: bytes | None) -> Maintenance | None:
    """The record a change of the bucket's key says (None: not a record of ours)."""
    if value is None:
        return Maintenance(app=key)
    try:
        return _decoder.decode(value)
    except msgspec.DecodeError:  # a record no writer of ours made: left out
        return None


class NatsMaintenance:
    """MaintenanceStore on the `maintenance` bucket."""

    def __init__(self, js: JetStreamContext, bucket: KeyValue) -> None:
        self.js = js
        self.kv = bucket

    async def get(self, app: str) -> Maintenance:
        """The app's record (off, with no `since`, when never set)."""
        raw, _ = await kv.read(self.kv, app)
        return _decoder.decode(raw) if raw else Maintenance(app=app)

    async def all_on(self) -> dict[str, Maintenance]:
        """Every app in maintenance, by app."""
        records = await kv.read_all(self.js, self.kv, subjects.KV_MAINTENANCE, "*")
        return {r.app: r for r in map(_decoder.decode, records) if r.enabled}

    async def turn(self, app: str, enabled: bool, message: str | None = None) -> Maintenance:
        """Turn the app's maintenance on or off (compare-and-set on its key)."""
        check_message(message)
        changed: tuple[Maintenance, Maintenance] = await kv.change(
            self.kv, subjects.KV_MAINTENANCE, app,
            lambda raw: _decoder.decode(raw) if raw else Maintenance(app=app),
            lambda current: turned(current, enabled, message, datetime.now(UTC)),
            msgspec.json.encode)
        return changed[1]

    async def forget(self, app: str) -> bool:
        """Purge the app's record (history too); whether there was one."""
        return bool(await kv.purge(self.js, self.kv, subjects.KV_MAINTENANCE, app))

    @contextlib.asynccontextmanager
    async def updates(self) -> AsyncIterator[AsyncIterator[Maintenance]]:
        """Every app's record as it is, then every change of one (off when forgotten), for as
        long as the block runs."""
        async with kv.updates(self.kv) as entries:
            yield (record async for key, value in entries
                   if (record := _record(key, value)) is not None)


async def open_maintenance_store(js: JetStreamContext, service: str) -> MaintenanceStore:
    """Maintenance, readable and writable (the cli, the api)."""
    del service
    return NatsMaintenance(js, await js.key_value(subjects.KV_MAINTENANCE))


async def open_maintenance_reader(js: JetStreamContext, service: str) -> MaintenanceReader:
    """Maintenance, read-only (the router)."""
    return await open_maintenance_store(js, service)


async def open_maintenance_forgetter(js: JetStreamContext, service: str) -> MaintenanceForgetter:
    """Maintenance, forgettable only (the builder destroying an app)."""
    del service
    return NatsMaintenance(js, await js.key_value(subjects.KV_MAINTENANCE))


FORGETTER = Door(MaintenanceForgetter, open_maintenance_forgetter,
                 (Grant("kv", subjects.KV_MAINTENANCE, "forget"),))
STORE = Door(MaintenanceStore, open_maintenance_store,
             (Grant("kv", subjects.KV_MAINTENANCE, "write"),))
READER = Door(MaintenanceReader, open_maintenance_reader,
              (Grant("kv", subjects.KV_MAINTENANCE, "read"),))

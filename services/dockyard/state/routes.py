"""Where each app's traffic goes: its live release, or a pending first deploy (the `routes` bucket).

Only the router writes here, after the proxy confirmed a change; everyone may read it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Protocol

import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from dockyard.contract import subjects
from dockyard.contract.state import LiveRelease, Pending
from dockyard.state import kv
from dockyard.state.door import Door, Grant

LIVE = "live"
PENDING = "pending"


def live_key(app: str) -> str:
    """Key of an app's live release record."""
    return f"{LIVE}.{app}"


def pending_key(app: str) -> str:
    """Key marking an app whose first deploy is running (its host answers 503)."""
    return f"{PENDING}.{app}"


_live = msgspec.json.Decoder(LiveRelease)
_pending = msgspec.json.Decoder(Pending)


class RouteGone(msgspec.Struct, frozen=True, kw_only=True):
    """An app's live record or pending mark was deleted (its app destroyed, its deploy ended)."""

    app: str
    kind: str  # LIVE or PENDING


RouteUpdate = LiveRelease | Pending | RouteGone


def route_update(key: str, value: bytes | None) -> RouteUpdate | None:
    """What a change of a key of the bucket says; None for a key of no known kind."""
    kind, _, app = key.partition(".")
    if kind not in (LIVE, PENDING) or not app:
        return None
    if value is None:
        return RouteGone(app=app, kind=kind)
    try:
        return _live.decode(value) if kind == LIVE else _pending.decode(value)
    except msgspec.DecodeError:  # a record no writer of ours made: left out
        return None


class RouteReader(Protocol):
    """Reads where traffic goes."""

    async def live(self, app: str) -> LiveRelease | None:
        """The app's live release, if it has one."""

    async def pending_mark(self, app: str) -> Pending | None:
        """The app's pending first deploy, if one runs."""

    async def live_history(self, app: str) -> list[LiveRelease]:
        """Every kept version of the app's live record, oldest first."""

    async def all_live(self) -> dict[str, LiveRelease]:
        """Every app's live release, by app."""

    async def all_pending(self) -> dict[str, Pending]:
        """Every pending first deploy, by app."""


class RouteWriter(RouteReader, Protocol):
    """Reads and records where traffic goes (the router alone)."""

    async def set_live(self, record: LiveRelease) -> None:
        """Record the app's live release (after the proxy confirmed it)."""

    async def set_pending(self, record: Pending) -> None:
        """Record that an app's first deploy runs."""

    async def clear_pending(self, app: str) -> None:
        """The app's first deploy ended."""

    async def forget(self, app: str) -> list[str]:
        """Purge the app's live record (its history too) and pending mark; the keys purged."""

    def updates(self) -> contextlib.AbstractAsyncContextManager[AsyncIterator[RouteUpdate]]:
        """Every record as it is, then every change of one (made by any router instance)."""


class NatsRoutes:
    """RouteWriter on the `routes` bucket."""

    def __init__(self, js: JetStreamContext, bucket: KeyValue) -> None:
        self.js = js
        self.kv = bucket

    async def live(self, app: str) -> LiveRelease | None:
        """The app's live release, if it has one."""
        raw, _ = await kv.read(self.kv, live_key(app))
        return _live.decode(raw) if raw else None

    async def pending_mark(self, app: str) -> Pending | None:
        """The app's pending first deploy, if one runs."""
        raw, _ = await kv.read(self.kv, pending_key(app))
        return _pending.decode(raw) if raw else None

    async def live_history(self, app: str) -> list[LiveRelease]:
        """Every kept version of the app's live record, oldest first."""
        return [_live.decode(v) for v in await kv.history(self.kv, live_key(app))]

    async def all_live(self) -> dict[str, LiveRelease]:
        """Every app's live release, by app."""
        records = await kv.read_all(self.js, self.kv, subjects.KV_ROUTES, f"{LIVE}.*")
        return {record.app: record for record in map(_live.decode, records)}

    async def all_pending(self) -> dict[str, Pending]:
        """Every pending first deploy, by app."""
        records = await kv.read_all(self.js, self.kv, subjects.KV_ROUTES, f"{PENDING}.*")
        return {record.app: record for record in map(_pending.decode, records)}

    async def set_live(self, record: LiveRelease) -> None:
        """Record the app's live release."""
        await self.kv.put(live_key(record.app), msgspec.json.encode(record))

    async def set_pending(self, record: Pending) -> None:
        """Record that an app's first deploy runs."""
        await self.kv.put(pending_key(record.app), msgspec.json.encode(record))

    async def clear_pending(self, app: str) -> None:
        """The app's first deploy ended."""
        raw, _ = await kv.read(self.kv, pending_key(app))
        if raw is not None:
            await self.kv.delete(pending_key(app))

    async def forget(self, app: str) -> list[str]:
        """Purge the app's live record (its history too) and pending mark; the keys purged."""
        return await kv.purge(self.js, self.kv, subjects.KV_ROUTES, live_key(app),
                              pending_key(app))

    @contextlib.asynccontextmanager
    async def updates(self) -> AsyncIterator[AsyncIterator[RouteUpdate]]:
        """Every record as it is, then every change of one, for as long as the block runs."""
        async with kv.updates(self.kv) as entries:
            yield (update async for key, value in entries
                   if (update := route_update(key, value)) is not None)


async def open_route_writer(js: JetStreamContext, service: str) -> RouteWriter:
    """The routes, writable (the router)."""
    del service
    return NatsRoutes(js, await js.key_value(subjects.KV_ROUTES))


async def open_route_reader(js: JetStreamContext, service: str) -> RouteReader:
    """The routes, read-only."""
    return await open_route_writer(js, service)


WRITER = Door(RouteWriter, open_route_writer, (Grant("kv", subjects.KV_ROUTES, "write"),))
READER = Door(RouteReader, open_route_reader, (Grant("kv", subjects.KV_ROUTES, "read"),))

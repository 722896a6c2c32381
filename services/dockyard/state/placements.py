"""Where each release's instances run, as the scheduler started them (the `placements` bucket).

The key `<app>.<release>` is written by the scheduler once its start phase succeeded, before it
publishes start.succeeded; the router reads it before a switch and routes only to these.
"""

from __future__ import annotations

from typing import Protocol

import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from dockyard.contract import subjects
from dockyard.contract.events import InstanceRef
from dockyard.state import kv
from dockyard.state.door import Door, Grant


class Placement(msgspec.Struct, frozen=True, kw_only=True):
    """The instances one release of an app runs, and the deployment that started them."""

    app: str
    release: int
    deployment_id: str
    instances: list[InstanceRef]
    # The scale or restart that last changed the release's instances (none: as its deploy
    # started them).
    operation_id: str | None = None


def key(app: str, release: int) -> str:
    """KV key of one release's placement."""
    return f"{app}.{release}"


class PlacementReader(Protocol):
    """Reads where releases run."""

    async def get(self, app: str, release: int) -> Placement | None:
        """The recorded placement of a release, if any."""


class PlacementWriter(PlacementReader, Protocol):
    """Records where releases run (the scheduler alone)."""

    async def record(self, placement: Placement) -> None:
        """Record the instances a release's start phase started."""


_decoder = msgspec.json.Decoder(Placement)


class PlacementKeeper(PlacementWriter, Protocol):
    """Placements the scheduler records and forgets."""

    async def forget(self, app: str) -> list[int]:
        """Remove every placement of an app; the releases whose placement was removed."""


class NatsPlacements:
    """PlacementWriter on the `placements` bucket."""

    def __init__(self, js: JetStreamContext, bucket: KeyValue) -> None:
        self.js = js
        self.kv = bucket

    async def get(self, app: str, release: int) -> Placement | None:
        """The recorded placement of a release, if any."""
        raw, _ = await kv.read(self.kv, key(app, release))
        return None if raw is None else _decoder.decode(raw)

    async def record(self, placement: Placement) -> None:
        """Record the instances a release's start phase started."""
        await self.kv.put(key(placement.app, placement.release), msgspec.json.encode(placement))

    async def forget(self, app: str) -> list[int]:
        """Purge every placement of an app."""
        gone = await kv.purge(self.js, self.kv, subjects.KV_PLACEMENTS, f"{app}.*")
        return sorted(int(name.rsplit(".", 1)[1]) for name in gone)


async def open_placement_writer(js: JetStreamContext, service: str) -> PlacementKeeper:
    """The placements, writable (the scheduler)."""
    del service
    return NatsPlacements(js, await js.key_value(subjects.KV_PLACEMENTS))


async def open_placement_reader(js: JetStreamContext, service: str) -> PlacementReader:
    """The placements, read-only (the router)."""
    return await open_placement_writer(js, service)


WRITER = Door(PlacementKeeper, open_placement_writer,
              (Grant("kv", subjects.KV_PLACEMENTS, "write"),))
READER = Door(PlacementReader, open_placement_reader,
              (Grant("kv", subjects.KV_PLACEMENTS, "read"),))

"""How many instances of each process type an app runs (the `formation` bucket, key `<app>`).

The scheduler alone writes it, when a scale's new instances are placed (before it publishes
scale.placed); every later deploy starts the release's process types at these counts (a type
not in it at its plan's scale). The cli and the api read it for `ps`.
"""

from __future__ import annotations

from typing import Protocol

import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from dockyard.contract import subjects
from dockyard.state import kv
from dockyard.state.door import Door, Grant


class Formation(msgspec.Struct, frozen=True, kw_only=True):
    """An app's desired count per process type, as its last scale set it."""

    app: str
    counts: dict[str, int]
    operation_id: str = ""


class FormationReader(Protocol):
    """Reads apps' formations."""

    async def get(self, app: str) -> Formation | None:
        """The app's formation, if it was ever scaled."""


class FormationWriter(FormationReader, Protocol):
    """Records apps' formations (the scheduler alone)."""

    async def record(self, formation: Formation) -> None:
        """Record the app's formation."""

    async def forget(self, app: str) -> bool:
        """Remove the app's formation (the app is destroyed); whether it had one."""


_decoder = msgspec.json.Decoder(Formation)


class NatsFormations:
    """FormationWriter on the `formation` bucket."""

    def __init__(self, bucket: KeyValue) -> None:
        self.kv = bucket

    async def get(self, app: str) -> Formation | None:
        """The app's formation, if it was ever scaled."""
        raw, _ = await kv.read(self.kv, app)
        return None if raw is None else _decoder.decode(raw)

    async def record(self, formation: Formation) -> None:
        """Record the app's formation."""
        await self.kv.put(formation.app, msgspec.json.encode(formation))

    async def forget(self, app: str) -> bool:
        """Purge the app's formation (history too); whether it had one."""
        had = (await kv.read(self.kv, app))[0] is not None
        await self.kv.purge(app)
        return had


async def open_formation_writer(js: JetStreamContext, service: str) -> FormationWriter:
    """The formations, writable (the scheduler)."""
    del service
    return NatsFormations(await js.key_value(subjects.KV_FORMATION))


async def open_formation_reader(js: JetStreamContext, service: str) -> FormationReader:
    """The formations, read-only (the cli and the api)."""
    return await open_formation_writer(js, service)


WRITER = Door(FormationWriter, open_formation_writer,
              (Grant("kv", subjects.KV_FORMATION, "write"),))
READER = Door(FormationReader, open_formation_reader,
              (Grant("kv", subjects.KV_FORMATION, "read"),))

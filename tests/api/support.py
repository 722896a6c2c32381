"""The api's routes over a SQLite store and in-memory doors, commands and streams (unit tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.api.feeds import Command, Kept, Stop
from dockyard.api.http import Backend
from dockyard.api.operations import ApiDoors, Operations
from dockyard.archive import Limits
from dockyard.bus.permissions import matches
from dockyard.store import Store, migrate, open_store
from tests import fakes

TOKEN = "t0ken-for-tests"


@dataclass
class FakeCommands:
    """Commands: every one sent, with its message id."""

    sent: list[tuple[Command, str]] = field(default_factory=list)

    async def send(self, command: Command, msg_id: str) -> None:
        self.sent.append((command, msg_id))


@dataclass
class FakeStreams:
    """Streams: (stream, subject, data) in publish order; sequences count from 1."""

    kept: list[tuple[str, str, bytes]] = field(default_factory=list)
    added: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, stream: str, subject: str, data: bytes) -> None:
        self.kept.append((stream, subject, data))
        self.added.set()

    async def follow(self, stream: str, subject: str, after: int, stop: Stop,
                     idle: float = 0.5) -> AsyncIterator[Kept]:
        seen = after
        while True:
            found = [(seq, data) for seq, (s, subj, data) in enumerate(self.kept, start=1)
                     if seq > seen and s == stream and matches(subject, subj)]
            for seq, data in found:
                seen = seq
                yield Kept(seq=seq, data=data)
            if found:
                continue
            self.added.clear()
            try:
                await asyncio.wait_for(self.added.wait(), idle)
            except TimeoutError:
                if await stop():
                    return


@dataclass
class Parts:
    """Everything behind one test app, for a test to set up and look at."""

    store: Store
    doors: ApiDoors
    commands: FakeCommands
    streams: FakeStreams
    backend: Backend
    config: fakes.FakeConfig
    hooks: fakes.FakeHooks
    sinks: fakes.FakeSinks
    statuses: fakes.FakeDeliveries
    sources: fakes.FakeSources
    manifests: fakes.FakeManifests
    routes: fakes.FakeRoutes
    maintenance: fakes.FakeMaintenance
    rollouts: fakes.FakeRollouts


def sqlite_store(tmp_path: Path) -> Store:
    """A migrated SQLite store in tmp_path."""
    store = open_store(f"sqlite:///{tmp_path / 'dockyard.db'}")
    migrate(store.engine)
    return store


def parts(store: Store, limits: Limits | None = None) -> Parts:
    """A backend over the store and fresh fakes."""
    config, hooks, sinks = fakes.FakeConfig(), fakes.FakeHooks(), fakes.FakeSinks()
    statuses, sources = fakes.FakeDeliveries(), fakes.FakeSources()
    manifests, routes = fakes.FakeManifests(), fakes.FakeRoutes()
    maintenance, rollouts = fakes.FakeMaintenance(), fakes.FakeRollouts()
    doors = ApiDoors(config=config, hooks=hooks, sinks=sinks, sink_status=statuses,
                     sources=sources, manifests=manifests, routes=routes, maintenance=maintenance,
                     formation=fakes.FakeFormations(), rollouts=rollouts)
    commands, streams = FakeCommands(), FakeStreams()
    operations = Operations(store=store, doors=doors, commands=commands,
                            limits=limits or Limits())
    backend = Backend(store=store, operations=operations, streams=streams, token=TOKEN, idle=0.05)
    return Parts(store=store, doors=doors, commands=commands, streams=streams, backend=backend,
                 config=config, hooks=hooks, sinks=sinks, statuses=statuses, sources=sources,
                 manifests=manifests, routes=routes, maintenance=maintenance,
                 rollouts=rollouts)

"""Shared fixtures: a real nats-server per test session, fresh JetStream state per test."""

from __future__ import annotations

import asyncio
import os
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from faststream.nats import NatsBroker
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from dockyard.bus.broker import make_broker
from dockyard.bus.embedded import EmbeddedNats, start_nats
from dockyard.bus.permissions import ADMIN, Permissions
from dockyard.bus.service import connect
from dockyard.bus.topology import provision
from dockyard.client import ClientDoors, DockyardClient
from dockyard.settings import Settings
from dockyard.stack import identities
from dockyard.state.registry import open_doors
from tests.leftovers import Snapshot
from tests.postgres import Postgres
from tests.postgres import Unavailable as PgUnavailable
from tests.postgres import from_env as pg_from_env
from tests.postgres import throwaway as pg_throwaway

IN_CI = bool(os.environ.get("CI"))
S = TypeVar("S")
# The harness's own identity on the test servers (never on a real stack): a test of one service
# plays the others, so it publishes any event and opens any door.
TEST = "test"
HARNESS = Permissions(publish=(">",), subscribe=(">",))


def harness_identities() -> dict[str, Permissions]:
    """The real identities, plus the harness's."""
    return {**identities(), TEST: HARNESS}


async def provision_bus(server: EmbeddedNats) -> None:
    """Provision the streams, buckets and stores on a bus as `admin`, as `dockyard up` does."""
    nc = await connect(server.url, "dockyard-provision", server.credentials(ADMIN))
    try:
        await provision(nc)
    finally:
        await nc.close()


def provision_sync(server: EmbeddedNats) -> None:
    """provision_bus from a thread with a loop of its own (callable inside a running loop too)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(provision_bus(server))
        except BaseException as exc:  # noqa: BLE001 (re-raised in the caller's thread)
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def start_provisioned_nats(store_dir: Path) -> EmbeddedNats:
    """A real nats-server (JetStream on, every client authenticated) on a free loopback port,
    its topology provisioned; its seeds are in `server.keys_dir`."""
    server = start_nats(store_dir, harness_identities())
    try:
        provision_sync(server)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """A real provisioned nats-server on a free loopback port, for the whole session."""
    server = start_provisioned_nats(tmp_path_factory.mktemp("nats"))
    yield server
    server.stop()


@pytest.fixture
def fresh_nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A real provisioned nats-server of this test's own, for tests that stop or restart it."""
    server = start_provisioned_nats(tmp_path / "nats")
    yield server
    server.stop()


@dataclass
class Bus:
    """A connection to the session's bus, whose topology is provisioned (as the harness)."""

    nc: Client
    js: JetStreamContext
    # Publishes any event, as the services under test never may.
    broker: NatsBroker

    async def doors(self, door_set: type[S], service: str = "test") -> S:
        """Open a door set (a dataclass of door interfaces) as `service`."""
        return await open_doors(door_set, self.js, service)

    async def kv(self, bucket: str) -> KeyValue:
        """The raw KV bucket, for a test that looks under a door."""
        return await self.js.key_value(bucket)


async def harness_on(server: EmbeddedNats) -> AsyncIterator[Bus]:
    """A connection to a provisioned server, as the harness."""
    credentials = server.credentials(TEST)
    nc = await connect(server.url, "dockyard-test", credentials)
    broker = make_broker(server.url, "test", credentials=credentials)
    await broker.connect()
    yield Bus(nc=nc, js=nc.jetstream(), broker=broker)
    await broker.stop()
    await nc.drain()


@pytest.fixture
async def bus(nats_server: EmbeddedNats) -> AsyncIterator[Bus]:
    """A connection to the session's (provisioned) server, as the harness."""
    async for connected in harness_on(nats_server):
        yield connected


@pytest.fixture
async def fresh_harness(fresh_nats: EmbeddedNats) -> AsyncIterator[Bus]:
    """The harness on this test's own server."""
    async for connected in harness_on(fresh_nats):
        yield connected


@pytest.fixture
async def client(bus: Bus, tmp_path: Path) -> DockyardClient:
    """A Dockyard client on the session's bus, as the CLI opens it (its connection is the bus's)."""
    doors = await bus.doors(ClientDoors, "cli")
    return DockyardClient(bus.nc, doors, Settings(data_dir=tmp_path / "client"))


@pytest.fixture(scope="session", autouse=True)
def nothing_outlives_the_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the whole suite no process, container, image, network, volume or file the tests
    made is left outside their temp dirs (tests/leftovers.py): what is left is listed; in CI,
    where the suite is alone on the machine, it is removed and the list fails the run."""
    before = Snapshot.take(tmp_path_factory.getbasetemp())
    yield
    report = before.check(remove=IN_CI)
    if not report:
        return
    if IN_CI:
        pytest.fail("the suite left these behind (now removed):\n" + "\n".join(report),
                    pytrace=False)
    # On a shared workstation other work may have made them: say so, remove nothing, pass.
    warnings.warn("new since the suite started (the suite's, or other work's; nothing removed):"
                  "\n" + "\n".join(report), stacklevel=1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """The tests' PostgreSQL: DOCKYARD_TEST_PG, else a throwaway server of this session's own.
    None to be had: a failure when CI is set, a skip saying why otherwise."""
    given = pg_from_env()
    if given is not None:
        yield given
        return
    try:
        with pg_throwaway() as server:
            yield server
    except PgUnavailable as exc:
        if IN_CI:
            pytest.fail(f"CI is set but there is no PostgreSQL to test against: {exc}",
                        pytrace=False)
        pytest.skip(f"no PostgreSQL to test against: {exc}")

"""Shared fixtures: a real nats-server per test session, fresh JetStream state per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dockyard.bus.embedded import EmbeddedNats, start_nats
from dockyard.bus.topology import Stores, connect_stores

IN_CI = bool(os.environ.get("CI"))


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """A real nats-server (JetStream on) on a free loopback port, for the whole session."""
    server = start_nats(tmp_path_factory.mktemp("nats"))
    yield server
    server.stop()


@pytest.fixture
def fresh_nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A real nats-server of this test's own, for tests that stop or restart it."""
    server = start_nats(tmp_path / "nats")
    yield server
    server.stop()


@pytest.fixture
async def stores(nats_server: EmbeddedNats) -> AsyncIterator[Stores]:
    """Connected JetStream handles (topology ensured) on the session server."""
    s = await connect_stores(nats_server.url, name="dockyard-test")
    yield s
    await s.close()

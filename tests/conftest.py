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


def _docker(*args: str) -> list[str]:
    import subprocess

    try:
        out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="session", autouse=True)
def no_container_outlives_the_suite() -> Iterator[None]:
    """After the whole suite, `docker ps -a` shows no container the tests created."""
    before = set(_docker("ps", "-aq", "--no-trunc", "--filter", "label=dockyard.app"))
    images_before = set(_docker("images", "-q", "--no-trunc", "--filter", "label=dockyard.app"))
    yield
    if not IN_CI:
        # On a shared workstation another suite may be running: only CI, where this suite is
        # alone on the engine, can tell its own leftovers from someone else's containers.
        return
    left = set(_docker("ps", "-aq", "--no-trunc", "--filter", "label=dockyard.app")) - before
    described = []
    if left:
        described = _docker("inspect", "--format",
                            "{{.Name}} {{.State.Status}} {{json .Config.Labels}}", *left)
        _docker("rm", "-f", *left)  # leave the machine clean, then report it
    # Images the deploys built are not containers, but they pile up: remove ours.
    images = set(_docker("images", "-q", "--no-trunc", "--filter", "label=dockyard.app"))
    if images - images_before:
        _docker("rmi", "-f", *(images - images_before))
    assert not left, "containers the tests created outlived the suite:\n" + "\n".join(described)

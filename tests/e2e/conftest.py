"""The real stack for end-to-end tests: nats-server, Caddy, every service, a real runtime."""

from __future__ import annotations

import itertools
import secrets
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from dockyard.bus.auth import Credentials
from dockyard.bus.embedded import free_port
from dockyard.bus.service import SERVICES, connect
from dockyard.client import DockyardClient
from dockyard.runtime.apptree import remove_tree
from dockyard.runtime.select import Runtimes
from dockyard.settings import Settings
from dockyard.stack import Stack, start_stack
from tests.docker_support import ensure_test_image, require_docker, require_swarm

RUNTIMES = ["process", "docker"]
# Runtimes whose apps are images built from a Dockerfile (tests/e2e/apps.py makes one).
CONTAINER_RUNTIMES = ("docker", "swarm")
_names = itertools.count(1)
# Apps of two suites sharing one engine (a developer's run beside CI's) must never share a name:
# their images, containers and networks are found by the app's label.
_SUITE = secrets.token_hex(2)


@dataclass
class Running:
    """A started stack and a client on its bus."""

    stack: Stack
    client: DockyardClient
    settings: Settings
    runtime: str
    port: int
    apps: set[str] = field(default_factory=set)
    # Connections as other identities (a test looking at a service's state, as that service).
    peers: dict[str, Client] = field(default_factory=dict)

    def app_name(self, stem: str) -> str:
        """A fresh app name for one test (remembered, so its instances are stopped at the end)."""
        name = f"{stem}-{self.runtime[0]}{_SUITE}{next(_names)}"
        self.apps.add(name)
        return name

    async def js_as(self, identity: str) -> JetStreamContext:
        """JetStream as one of the stack's identities (its seed is in the data dir)."""
        if identity not in self.peers:
            self.peers[identity] = await connect(
                self.settings.bus_servers(), f"test-as-{identity}",
                Credentials.load(self.settings.keys_dir, identity))
        return self.peers[identity].jetstream()

    async def instances(self, app: str) -> list:  # type: ignore[type-arg]
        """The app's instances as the runtime sees them."""
        runtimes = Runtimes(self.settings)
        try:
            return await (await runtimes.get(self.runtime)).list_instances(app)
        finally:
            await runtimes.close()


async def start_running(tmp: Path, runtime: str, services: tuple[str, ...] = SERVICES,
                        **overrides: object) -> Running:
    """Start a stack with short drain and kill grace, on a free HTTP port."""
    if runtime in CONTAINER_RUNTIMES:
        require_swarm() if runtime == "swarm" else require_docker()
        ensure_test_image()
    port = free_port()
    # The apps' trees must be reachable by the apps' own users (process runtime as root):
    # pytest's tmp dirs are root's alone (0700), so they get a directory of their own.
    if "apps_dir" not in overrides:
        overrides["apps_dir"] = tempfile.mkdtemp(prefix="dockyard-apps-")
    settings = Settings.from_env(env={}, data_dir=tmp / "data", http_port=port, runtime=runtime,
                                 drain=0.5, kill_grace=2.0, **overrides)
    stack = await start_stack(settings, services)
    client = await DockyardClient.connect(stack.settings)
    return Running(stack=stack, client=client, settings=stack.settings, runtime=runtime,
                   port=port)


async def stop_running(running: Running) -> None:
    """Stop the stack and every app instance it started."""
    runtimes = Runtimes(running.settings)
    try:
        await running.client.close()
        for peer in running.peers.values():
            await peer.close()
        rt = await runtimes.get(running.runtime)
        for app in _apps(running):
            for ref in await rt.list_instances(app):
                await rt.stop_instance(ref, 1.0)
        for app in _apps(running):
            await rt.remove_app(app)  # its tree and its user, or its images and network
    finally:
        await runtimes.close()
        await running.stack.stop()
        remove_tree(running.settings.apps_root)


def _apps(running: Running) -> set[str]:
    names = set(running.apps)
    for root in (running.settings.data_dir / "process" / "instances", running.settings.apps_root):
        names |= {p.name for p in root.iterdir() if p.is_dir()} if root.exists() else set()
    return names


async def module_stack(request: pytest.FixtureRequest,
                       tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """A stack on the runtime the fixture's param names, for a whole module."""
    r = await start_running(tmp_path_factory.mktemp(f"stack-{request.param}"), request.param)
    yield r
    await stop_running(r)


@pytest.fixture(scope="module", params=RUNTIMES)
async def running(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """One stack per test module and runtime."""
    async for r in module_stack(request, tmp_path_factory):
        yield r

"""Router test helpers: tiny real upstream HTTP servers, events and the records that vouch for
them, a real Caddy per test, and a fake admin API and emitter for handler unit tests."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.nats import NatsBroker
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from dockyard.bus.broker import make_broker
from dockyard.bus.embedded import EmbeddedNats, free_port
from dockyard.bus.emit import Emitter
from dockyard.contract import codec, subjects
from dockyard.contract.events import (
    AnyEvent,
    DeployQueued,
    DeploySpec,
    Event,
    HookSucceeded,
    InstanceRef,
    new_id,
)
from dockyard.contract.plan import Plan
from dockyard.router.app import SERVICE, RouterDoors
from dockyard.router.caddy import (
    CaddyAdmin,
    CaddyProcess,
    CaddyRefused,
    CaddyUnreachable,
    bootstrap_config,
    caddy_binary,
    start_caddy,
)
from dockyard.router.verify import POSTDEPLOY_STEP
from dockyard.state.placements import Placement, PlacementWriter, open_placement_writer
from dockyard.state.steps import StepRecords, open_steps
from tests.conftest import TEST, Bus
from tests.events import make


@dataclass
class Upstream:
    """A tiny HTTP/1.1 server answering its name; `/slow` answers after one second, `/error`
    with a 500 (and so does every `fail_every`-th request)."""

    name: str
    port: int = 0
    server: asyncio.Server | None = None
    hits: int = 0
    fail_every: int = 0  # every n-th request answers 500 (0: none)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> Upstream:
        """Listen on a free loopback port."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and close kept-alive connections."""
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                self.hits += 1
                if path.startswith(b"/slow"):
                    await asyncio.sleep(1.0)
                body = self.name.encode()
                failing = path.startswith(b"/error") or (
                    self.fail_every > 0 and self.hits % self.fail_every == 0)
                status = b"500 Internal Server Error" if failing else b"200 OK"
                writer.write(b"HTTP/1.1 %s\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    def instance(self, release: int) -> InstanceRef:
        """The web InstanceRef pointing at this server."""
        return InstanceRef(id=f"{self.name}-web-1", process="web", release=release,
                           host="127.0.0.1", port=self.port)


@pytest.fixture
async def upstreams() -> AsyncIterator[Callable[[str], Awaitable[Upstream]]]:
    """Factory of started upstreams, all stopped after the test."""
    started: list[Upstream] = []

    async def make(name: str) -> Upstream:
        up = await Upstream(name).start()
        started.append(up)
        return up

    yield make
    for up in started:
        await up.stop()


@pytest.fixture
async def caddy(tmp_path: Path) -> AsyncIterator[CaddyProcess]:
    """A real Caddy of this test's own, stopped after it."""
    process = await start_caddy(tmp_path / "caddy-data")
    yield process
    await process.stop()


@pytest.fixture
async def tcp_admin_caddy(tmp_path: Path) -> AsyncIterator[str]:
    """A Caddy someone else runs with its admin API on TCP (DOCKYARD_CADDY_ADMIN as a URL)."""
    listen = f"127.0.0.1:{free_port()}"
    config = tmp_path / "operator.json"
    config.write_text(json.dumps(bootstrap_config(listen)))
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    process = await asyncio.create_subprocess_exec(
        caddy_binary(), "run", "--config", str(config), env=env, cwd=tmp_path,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://{listen}"

    async def answers() -> bool:
        try:
            await CaddyAdmin(url, timeout=1).config()
        except CaddyUnreachable:
            return False
        return True

    try:
        await wait_for(answers, within=15)
        yield url
    finally:
        process.terminate()
        await process.wait()


@pytest.fixture
def http_port() -> int:
    """A free loopback port for Caddy's HTTP server."""
    return free_port()


def spec() -> DeploySpec:
    """A minimal deploy spec."""
    return DeploySpec(runtime="process", build_id="b1", artifact="/tmp/artifact", plan=Plan())


def hook_succeeded(app: str, deployment_id: str, release: int,
                   instances: list[InstanceRef]) -> HookSucceeded:
    """The event that opens the gate for a switch."""
    return make(HookSucceeded, app=app, deployment_id=deployment_id, release=release,
                spec=spec(), instances=instances)


async def open_gate(steps: StepRecords, placements: PlacementWriter, event: HookSucceeded,
                    instances: list[InstanceRef] | None = None) -> None:
    """Record what the scheduler and the hook-runner record before a genuine hook.succeeded:
    the release's placement (`instances`, the event's by default), then the postdeploy outcome."""
    await placements.record(Placement(
        app=event.app, release=event.release, deployment_id=event.deployment_id,
        instances=list(event.data.instances if instances is None else instances)))
    await steps.finish(event.deployment_id, POSTDEPLOY_STEP, event)


def deployment() -> str:
    """A fresh deployment id, in its one accepted form."""
    return new_id()


def deploy_queued(app: str, deployment_id: str) -> DeployQueued:
    """The event of a queued deploy."""
    return make(DeployQueued, app=app, deployment_id=deployment_id)


def app_name(prefix: str = "app") -> str:
    """A unique app name (a DNS label), so tests sharing the session's bus never collide."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def stream_events(js: JetStreamContext, subject: str, wait: float = 0.5) -> list[AnyEvent]:
    """Every event kept on the events stream under subject, oldest first."""
    sub = await js.pull_subscribe(subject, stream=subjects.STREAM_EVENTS)
    found: list[AnyEvent] = []
    try:
        while True:
            try:
                batch = await sub.fetch(100, timeout=wait)
            except (TimeoutError, NatsTimeoutError):  # nats-py raises either
                break
            found.extend(codec.decode_event(m.data) for m in batch)
    finally:
        await sub.unsubscribe()
    return found


async def wait_for(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll check until it holds, failing after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def get(http_port: int, host: str, path: str = "/") -> httpx.Response:
    """GET through Caddy with an explicit Host header."""
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(f"http://127.0.0.1:{http_port}{path}", headers={"Host": host})


@dataclass
class FakeAdmin(CaddyAdmin):
    """Caddy's admin API in memory: keeps every config loaded, or refuses, or does not answer."""

    url: str = "/nonexistent/fake-admin.sock"
    refuse: bool = False
    unreachable: bool = False
    configs: list[Any] = field(default_factory=list)

    async def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        if self.unreachable:
            raise CaddyUnreachable(self.url, "ConnectError: nobody listens")
        if method == "POST":
            if self.refuse:
                raise CaddyRefused(self.url, 400, "loading new config: address already in use")
            self.configs.append(body)
        return httpx.Response(200, json=self.configs[-1] if self.configs else {})


class RecordingEmitter(Emitter):
    """The router's emitter, keeping what it would publish instead of publishing it."""

    def __init__(self) -> None:
        super().__init__(None, SERVICE.name, SERVICE.publishes)  # type: ignore[arg-type]
        self.emitted: list[Event[Any]] = []

    async def emit(self, event: Event[Any]) -> Event[Any]:
        self.emitted.append(event)
        return event


# ------------------------------------------------------------------ real Caddy, real bus


@dataclass
class Gate:
    """The scheduler's and the hook-runner's records, written on the real bus."""

    steps: StepRecords
    placements: PlacementWriter

    async def open(self, event: HookSucceeded) -> HookSucceeded:
        await open_gate(self.steps, self.placements, event)
        return event


@pytest.fixture
async def broker(nats_server: EmbeddedNats) -> AsyncIterator[NatsBroker]:
    """A connected broker to publish with."""
    b = make_broker(nats_server.url, "router-test",
                    credentials=nats_server.credentials(TEST))
    await b.start()
    yield b
    await b.stop()


@pytest.fixture
async def doors(bus: Bus) -> RouterDoors:
    """The router's doors, as the router service opens them."""
    return await bus.doors(RouterDoors, SERVICE.name)


@pytest.fixture
async def gate(bus: Bus) -> Gate:
    return Gate(steps=await open_steps(bus.js, "hook-runner"),
                placements=await open_placement_writer(bus.js, "scheduler"))

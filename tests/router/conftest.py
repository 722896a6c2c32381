"""Router test helpers: tiny real upstream HTTP servers, events, a real Caddy per test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from dockyard.bus.embedded import free_port
from dockyard.router.caddy import CaddyProcess, start_caddy
from dockyard.schemas import codec, subjects
from dockyard.schemas.events import (
    AnyEvent,
    DeployQueued,
    DeploySpec,
    HookSucceeded,
    InstanceRef,
    event_id,
)
from dockyard.schemas.plan import Plan


@dataclass
class Upstream:
    """A tiny HTTP/1.1 server answering its name; `/slow` answers after one second."""

    name: str
    port: int = 0
    server: asyncio.Server | None = None
    hits: int = 0
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
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
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
def http_port() -> int:
    """A free loopback port for Caddy's HTTP server."""
    return free_port()


def spec() -> DeploySpec:
    """A minimal deploy spec."""
    return DeploySpec(runtime="process", build_id="b1", artifact="/tmp/artifact", plan=Plan())


def hook_succeeded(app: str, deployment_id: str, release: int,
                   instances: list[InstanceRef]) -> HookSucceeded:
    """The event that opens the gate for a switch."""
    return HookSucceeded(id=event_id(deployment_id, "dockyard.hook.succeeded"), source="test",
                         subject=app, deployment_id=deployment_id, release=release,
                         spec=spec(), instances=instances)


def deploy_queued(app: str, deployment_id: str) -> DeployQueued:
    """The event of a queued deploy."""
    return DeployQueued(id=event_id(deployment_id, "dockyard.deploy.queued"), source="test",
                        subject=app, deployment_id=deployment_id)


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


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll check until it holds, failing after timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def get(http_port: int, host: str, path: str = "/") -> httpx.Response:
    """GET through Caddy with an explicit Host header."""
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(f"http://127.0.0.1:{http_port}{path}", headers={"Host": host})

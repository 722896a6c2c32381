"""The api service: every event in (projected into the store); the HTTP API and the dashboard
served from it, its operations through its doors and the commands it may send."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from dockyard.api.auth import load_or_create_token
from dockyard.api.feeds import NatsCommands, NatsStreams
from dockyard.api.http import Backend, make_app
from dockyard.api.operations import ApiDoors as ApiDoors  # the service's door set, re-exported
from dockyard.api.operations import Operations
from dockyard.archive import Limits
from dockyard.bus.service import On, Service, ServiceContext
from dockyard.bus.topology import STREAM_FEED
from dockyard.contract import subjects
from dockyard.contract.events import (
    AnyEvent,
    CancelRequested,
    DeployRequested,
    DestroyRequested,
    ScaleRequested,
)
from dockyard.settings import Settings
from dockyard.store import Store, migrate, open_store, project

URL_FILE = "api.url"


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the service process owns SIGINT/SIGTERM."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def previous_port(data_dir: Path) -> int | None:
    """The port a previous api recorded in the data dir (a restart keeps it)."""
    url = read_api_url(data_dir)
    if url is None:
        return None
    port = url.rsplit(":", 1)[-1]
    return int(port) if port.isdigit() else None


def listen(host: str, port: int, previous: int | None) -> socket.socket:
    """A bound socket: the configured port; else the previous one if free; else any free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for candidate in ([port] if port else [p for p in (previous, 0) if p is not None]):
        sock = socket.socket(family)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError:
            sock.close()
            if candidate == port or candidate == 0:
                raise
            continue
        return sock
    raise AssertionError("unreachable: binding port 0 either succeeds or raises")


def read_api_url(data_dir: Path) -> str | None:
    """The base URL a running api service recorded in the data dir."""
    path = data_dir / URL_FILE
    return path.read_text().strip() if path.exists() else None


@dataclass
class Projection:
    """Every event into the store."""

    store: Store

    async def on_event(self, event: AnyEvent) -> None:
        """Apply one event (undecodable ones never get here: they are dead-lettered)."""
        await asyncio.to_thread(project, self.store, event)


def limits(settings: Settings) -> Limits:
    """What an uploaded archive may hold (DOCKYARD_ARCHIVE_*)."""
    return Limits(max_bytes=settings.archive_max_bytes, max_entries=settings.archive_max_entries,
                  max_path=settings.archive_max_path, max_depth=settings.archive_max_depth)


async def make(ctx: ServiceContext, doors: ApiDoors) -> Projection:
    """Open and migrate the store, start the HTTP server, project every event."""
    store = open_store(ctx.settings.store_url)
    await asyncio.to_thread(migrate, store.engine)

    host = ctx.settings.api_host
    sock = listen(host, ctx.settings.api_port, previous_port(ctx.settings.data_dir))
    port = sock.getsockname()[1]
    token = load_or_create_token(ctx.settings.api_token_file, ctx.settings.api_token)
    operations = Operations(store=store, doors=doors, commands=NatsCommands(ctx.js),
                            limits=limits(ctx.settings),
                            keep_releases=ctx.settings.keep_releases)
    backend = Backend(store=store, operations=operations, streams=NatsStreams(ctx.js),
                      token=token)
    server = _EmbeddedServer(uvicorn.Config(make_app(backend),
                                            log_level="warning", lifespan="on",
                                            access_log=False))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            serving.result()  # raises why uvicorn could not start
        await asyncio.sleep(0.01)
    url_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in url_host:
        url_host = f"[{url_host}]"
    url = f"http://{url_host}:{port}"
    ctx.settings.data_dir.mkdir(parents=True, exist_ok=True)
    (ctx.settings.data_dir / URL_FILE).write_text(url + "\n")
    ctx.log.info("api listening", url=url, store=store.dialect)

    async def stop() -> None:
        server.should_exit = True
        await serving
        sock.close()
        store.close()

    ctx.on_stop(stop)
    return Projection(store)


SERVICE = Service(
    name="api",
    doors=ApiDoors,
    subscribes=(On(None, "on_event"),),
    publishes=(),
    make=make,
    commands=(DeployRequested, CancelRequested, ScaleRequested, DestroyRequested),
    reads=(STREAM_FEED, subjects.STREAM_LOGS),
)

"""Wiring of the `api` service: project every event into the store and serve it over HTTP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from dockyard.api.http import make_app
from dockyard.bus.broker import durable_subscriber
from dockyard.bus.service import ServiceContext
from dockyard.schemas import subjects
from dockyard.schemas.events import AnyEvent
from dockyard.store import migrate, open_store, project

DURABLE = "api-projection"
URL_FILE = "api.url"


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the service process owns SIGINT/SIGTERM."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def read_api_url(data_dir: Path) -> str | None:
    """The base URL a running api service recorded in the data dir."""
    path = data_dir / URL_FILE
    return path.read_text().strip() if path.exists() else None


async def setup(ctx: ServiceContext) -> None:
    """Open and migrate the store, subscribe the projection, start the HTTP server."""
    store = open_store(ctx.settings.store_url)
    await asyncio.to_thread(migrate, store.engine)

    async def on_event(event: AnyEvent) -> None:
        # Undecodable payloads never get here: the broker's middleware dead-letters them.
        await asyncio.to_thread(project, store, event)

    durable_subscriber(ctx.broker, subjects.EVT_ALL, DURABLE, subjects.STREAM_EVENTS)(on_event)

    host = ctx.settings.http_host
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, ctx.settings.api_port))  # port 0: the kernel picks a free one
    port = sock.getsockname()[1]
    server = _EmbeddedServer(uvicorn.Config(make_app(store), log_level="warning",
                                            lifespan="off", access_log=False))
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
        (ctx.settings.data_dir / URL_FILE).unlink(missing_ok=True)

    ctx.on_stop(stop)

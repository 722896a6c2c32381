"""Run one service: connect, wire its handlers on a broker, start, stop cleanly."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from faststream.nats import NatsBroker

from dockyard.bus.broker import make_broker
from dockyard.bus.topology import Stores, connect_stores
from dockyard.settings import Settings

SERVICES = ("builder", "hook-runner", "scheduler", "router", "notifier", "api")
_MODULES = {name: f"dockyard.{name.replace('-', '_')}.app" for name in SERVICES}

Cleanup = Callable[[], Awaitable[None]]


class UnknownServiceError(ValueError):
    """A service name that is not one of SERVICES."""


@dataclass
class ServiceContext:
    """What a service's wiring receives: settings, its broker, the JetStream stores, a logger."""

    name: str
    settings: Settings
    broker: NatsBroker
    stores: Stores
    log: Any
    cleanups: list[Cleanup] = field(default_factory=list)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def on_stop(self, cleanup: Cleanup) -> None:
        """Run cleanup when the service stops (last registered, first run)."""
        self.cleanups.append(cleanup)

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run a background task that is cancelled when the service stops."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


@dataclass
class RunningService:
    """A started service."""

    ctx: ServiceContext

    async def stop(self) -> None:
        """Stop consuming, run cleanups, close connections."""
        await self.ctx.broker.stop()
        for task in list(self.ctx.tasks):
            task.cancel()
        if self.ctx.tasks:
            await asyncio.gather(*self.ctx.tasks, return_exceptions=True)
        for cleanup in reversed(self.ctx.cleanups):
            try:
                await cleanup()
            except Exception:
                self.ctx.log.exception("cleanup failed")
        await self.ctx.stores.close()


async def start_service(name: str, settings: Settings) -> RunningService:
    """Start one service against the bus in settings; its module's `setup(ctx)` wires it."""
    if name not in _MODULES:
        raise UnknownServiceError(f"unknown service {name!r}: choose one of {', '.join(SERVICES)}")
    url = settings.bus_url()
    stores = await connect_stores(url, name=f"dockyard-{name}")
    broker = make_broker(url, name, ack_wait=settings.ack_wait)
    ctx = ServiceContext(name=name, settings=settings, broker=broker, stores=stores,
                         log=structlog.get_logger().bind(service=name))
    module = importlib.import_module(_MODULES[name])
    await module.setup(ctx)
    await broker.start()
    ctx.log.info("service started", instance=settings.instance)
    return RunningService(ctx)

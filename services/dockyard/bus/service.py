"""A service is a table of its doors: what it subscribes to, what it publishes, which state it uses.

Each service's `app.py` declares one `Service`; `start_service` wires it the same way for all,
and the bus permissions of its identity are generated from the same declaration.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import nats
import structlog
from faststream.nats import NatsBroker
from nats.aio.client import Client
from nats.js import JetStreamContext

from dockyard.bus import metrics, tracing
from dockyard.bus.auth import Credentials
from dockyard.bus.broker import durable_subscriber, make_broker
from dockyard.bus.emit import Emitter
from dockyard.contract import subjects
from dockyard.contract.events import Event, Message
from dockyard.settings import Settings
from dockyard.state.registry import open_doors

SERVICES = ("builder", "hook-runner", "scheduler", "router", "notifier", "api")
_MODULES = {name: f"dockyard.{name.replace('-', '_')}.app" for name in SERVICES}

Cleanup = Callable[[], Awaitable[None]]
DS = TypeVar("DS")


class UnknownServiceError(ValueError):
    """A service name that is not one of SERVICES."""


@dataclass(frozen=True)
class On:
    """One subscription: a message type (None: every event) and the handler method taking it."""

    message: type[Message] | None
    handler: str
    # A first-time consumer starts at new messages instead of replaying the stream's history.
    new_only: bool = False

    @property
    def subject(self) -> str:
        """The subject (pattern) this subscription reads."""
        if self.message is None:
            return subjects.EVT_ALL
        if issubclass(self.message, Event):
            return subjects.events_of(self.message.topic, self.message.outcome)
        # getattr: only commands have `subject` (a ClassVar); Message's type has none.
        return str(getattr(self.message, "subject"))  # noqa: B009

    @property
    def stream(self) -> str:
        """The JetStream stream holding those messages."""
        if self.message is None or issubclass(self.message, Event):
            return subjects.STREAM_EVENTS
        return subjects.STREAM_COMMANDS

    def durable(self, service: str) -> str:
        """The durable consumer name, shared by every instance of the service."""
        if self.message is None:
            return f"{service}-all"
        if issubclass(self.message, Event):
            return f"{service}-{self.message.topic}-{self.message.outcome}"
        return f"{service}-{self.subject.rsplit('.', 1)[-1]}"


@dataclass(frozen=True)
class Service(Generic[DS]):
    """Everything a service touches on the bus, declared in one place."""

    name: str
    doors: type[DS]
    subscribes: tuple[On, ...]
    publishes: tuple[type[Event[Any]], ...]
    # Builds the object whose methods the subscriptions name.
    make: Callable[[ServiceContext, DS], Awaitable[object]]
    # Writes deploy log lines (dockyard.log.<deployment>).
    logs: bool = False
    # Ships the running instances' output (dockyard.applog.<app>.<process>.<instance>).
    app_logs: bool = False
    # Commands it may publish (the api's HTTP operations ask the pipeline through them).
    commands: tuple[type[Message], ...] = ()
    # Streams it follows through ordered consumers of its own (the api's live SSE views: the
    # readers' FEED mirror and the deploy LOGS), as the CLI does; never where durables live.
    reads: tuple[str, ...] = ()


@dataclass
class ServiceContext:
    """What a service's wiring receives: settings, its broker and connection, an emitter, a log."""

    name: str
    settings: Settings
    broker: NatsBroker
    nc: Client
    js: JetStreamContext
    emitter: Emitter
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
            await asyncio.wait(self.ctx.tasks, timeout=10)
        for cleanup in reversed(self.ctx.cleanups):
            try:
                await cleanup()
            except Exception:
                self.ctx.log.exception("cleanup failed")
        await self.ctx.nc.drain()


def declaration(name: str) -> Service[Any]:
    """The declared table of one service."""
    if name not in _MODULES:
        raise UnknownServiceError(f"unknown service {name!r}: choose one of {', '.join(SERVICES)}")
    service: Service[Any] = importlib.import_module(_MODULES[name]).SERVICE
    return service


async def connect(servers: str | list[str], name: str, credentials: Credentials) -> Client:
    """A connection as one identity to one server or any of a cluster's (failing over to the
    others), that keeps trying to reconnect for as long as it lives."""
    return await nats.connect(servers, name=name, max_reconnect_attempts=-1,
                              reconnect_time_wait=0.5, **credentials.options())


async def start_service(name: str, settings: Settings, *,
                        serve_metrics: bool = True) -> RunningService:
    """Start one service against the bus in settings, wired from its declaration (its metrics
    served on DOCKYARD_METRICS_ADDR, if set, unless a stack serves them for all)."""
    service = declaration(name)
    tracing.configure(settings.otlp_endpoint)
    servers = settings.bus_servers()
    # Every service connects as its own identity, whose permissions follow from `service`.
    credentials = Credentials.load(settings.keys_dir, name)
    nc = await connect(servers, f"dockyard-{name}", credentials)
    js = nc.jetstream()
    broker = make_broker(servers, name, ack_wait=settings.ack_wait, credentials=credentials)
    ctx = ServiceContext(name=name, settings=settings, broker=broker, nc=nc, js=js,
                         emitter=Emitter(broker, name, service.publishes),
                         log=structlog.get_logger().bind(service=name))
    ctx.on_stop(tracing.flush)
    try:
        if serve_metrics and (listen := settings.metrics_listen) is not None:
            ctx.on_stop(metrics.serve(*listen).stop)
        doors = await open_doors(service.doors, js, name)
        handlers = await service.make(ctx, doors)
        for on in service.subscribes:
            durable_subscriber(broker, on.subject, on.durable(name), on.stream,
                               new_only=on.new_only)(getattr(handlers, on.handler))
        await broker.start()
    except BaseException:
        await RunningService(ctx).stop()
        raise
    ctx.log.info("service started", instance=settings.instance)
    return RunningService(ctx)

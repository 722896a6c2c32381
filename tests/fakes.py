"""In-memory fakes of every door and of a runtime, for unit tests of one handler or module.

Each fake keeps its state in plain dicts a test can read and set. They follow the NATS
implementations' semantics (compare-and-set, re-entrant locks, "deleted reads as absent"), not
their I/O. Tests that claim to test the bus use the real doors on a real nats-server instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import structlog
from faststream.nats import NatsBroker, TestNatsBroker
from faststream.nats.annotations import NatsMessage
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from dockyard.bus.auth import Credentials, new_seed
from dockyard.bus.broker import MAX_PAYLOAD, durable_subscriber, make_broker, publish
from dockyard.bus.emit import Emitter
from dockyard.bus.service import Service, ServiceContext
from dockyard.contract import codec, subjects
from dockyard.contract.events import EVENT_TYPES, AnyEvent, Event, InstanceRef, LogLine, Message
from dockyard.contract.manifest import OperatorHooks
from dockyard.contract.plan import Buildpack
from dockyard.contract.sinks import Sinks, SinkStatus
from dockyard.contract.state import (
    DeliveryState,
    InFlight,
    LiveRelease,
    Maintenance,
    Pending,
    Queue,
    RolloutAction,
    RolloutOrder,
    RolloutProgress,
    TimedOut,
)
from dockyard.runtime.base import (
    TIMEOUT_EXIT_CODE,
    InstanceSpec,
    LogSink,
    OneOffResult,
    OneOffSpec,
    OutputLine,
    Runtime,
    StartError,
)
from dockyard.runtime.select import Runtimes, UnknownRuntimeError
from dockyard.settings import Settings
from dockyard.state.config import UnknownVersion, Versioned, applied
from dockyard.state.deliveries import Conflict
from dockyard.state.formation import Formation
from dockyard.state.locks import LockLost
from dockyard.state.maintenance import turned
from dockyard.state.placements import Placement
from dockyard.state.rollouts import NoRollout
from dockyard.state.routes import RouteUpdate
from dockyard.state.sources import SourceMissing


@dataclass
class FakeLocks:
    """AppLocks: app -> holding deployment."""

    held: dict[str, str] = field(default_factory=dict)
    refreshed: int = 0
    # (app, deployment) of every `hold` block running now.
    holding: set[tuple[str, str]] = field(default_factory=set)

    async def holder(self, app: str) -> str | None:
        return self.held.get(app)

    async def acquire(self, app: str, deployment_id: str) -> bool:
        current = self.held.setdefault(app, deployment_id)
        return current == deployment_id

    async def refresh(self, app: str, deployment_id: str) -> None:
        current = self.held.setdefault(app, deployment_id)
        if current != deployment_id:
            raise LockLost(app, current)
        self.refreshed += 1

    async def renew(self, app: str, deployment_id: str) -> bool:
        current = self.held.get(app)
        if current is None:
            return False
        if current != deployment_id:
            raise LockLost(app, current)
        self.refreshed += 1
        return True

    async def release(self, app: str, deployment_id: str) -> None:
        if self.held.get(app) == deployment_id:
            del self.held[app]

    @contextlib.asynccontextmanager
    async def hold(self, app: str, deployment_id: str) -> AsyncIterator[None]:
        await self.refresh(app, deployment_id)
        self.holding.add((app, deployment_id))
        try:
            yield
        finally:
            self.holding.discard((app, deployment_id))


@dataclass
class FakeCancels:
    """CancelMarkers: deployment -> reason."""

    reasons: dict[str, str] = field(default_factory=dict)
    # The events of the `watching` blocks running now: a request sets them (the NATS door
    # notices within its poll period; here at once).
    watchers: dict[str, list[asyncio.Event]] = field(default_factory=dict)

    async def request(self, deployment_id: str, reason: str) -> None:
        self.reasons[deployment_id] = reason or "cancelled"
        for cancelled in self.watchers.get(deployment_id, []):
            cancelled.set()

    async def reason(self, deployment_id: str) -> str | None:
        return self.reasons.get(deployment_id)

    @contextlib.asynccontextmanager
    async def watching(self, deployment_id: str) -> AsyncIterator[asyncio.Event]:
        cancelled = asyncio.Event()
        if deployment_id in self.reasons:
            cancelled.set()
        self.watchers.setdefault(deployment_id, []).append(cancelled)
        try:
            yield cancelled
        finally:
            self.watchers[deployment_id].remove(cancelled)


@dataclass
class FakeInFlight:
    """InFlightRecords: app -> record, deployment -> the watchdog's verdict."""

    records: dict[str, InFlight] = field(default_factory=dict)
    verdicts: dict[str, TimedOut] = field(default_factory=dict)

    async def timed_out(self, deployment_id: str) -> TimedOut | None:
        return self.verdicts.get(deployment_id)

    async def get(self, app: str) -> InFlight | None:
        return self.records.get(app)

    async def all(self) -> list[InFlight]:
        return [self.records[a] for a in sorted(self.records)]

    async def change(self, app: str,
                     fn: Callable[[InFlight | None], InFlight | None]) -> InFlight | None:
        after = fn(self.records.get(app))
        if after is None:
            self.records.pop(app, None)
        else:
            self.records[app] = after
        return after

    async def end(self, app: str, deployment_id: str) -> None:
        if (r := self.records.get(app)) is not None and r.deployment_id == deployment_id:
            del self.records[app]

    async def time_out(self, verdict: TimedOut) -> TimedOut:
        return self.verdicts.setdefault(verdict.deployment_id, verdict)


@dataclass
class FakeSteps:
    """StepRecords of one service: (deployment, step) -> bytes."""

    records: dict[tuple[str, str], bytes] = field(default_factory=dict)

    async def get(self, deployment_id: str, step: str) -> bytes | None:
        return self.records.get((deployment_id, step))

    async def put(self, deployment_id: str, step: str, result: bytes) -> None:
        self.records[(deployment_id, step)] = result

    async def outcome(self, deployment_id: str, step: str) -> AnyEvent | None:
        data = await self.get(deployment_id, step)
        return None if data is None else codec.decode_event(data)

    async def finish(self, deployment_id: str, step: str, event: Event[Any]) -> None:
        await self.put(deployment_id, step, codec.encode(event))


@dataclass
class FakeConfig:
    """ConfigStore: app -> every version, oldest first."""

    versions: dict[str, list[Versioned]] = field(default_factory=dict)

    async def current(self, app: str) -> Versioned:
        kept = self.versions.get(app)
        return kept[-1] if kept else Versioned()

    async def at_version(self, app: str, version: int) -> dict[str, str]:
        if version == 0:
            return {}
        for v in self.versions.get(app, []):
            if v.version == version:
                return dict(v.values)
        raise UnknownVersion(app, version)

    async def change(self, app: str, set_: dict[str, str], unset: list[str]) -> Versioned:
        new = applied(await self.current(app), set_, unset)
        self.versions.setdefault(app, []).append(new)
        return new

    async def forget(self, app: str) -> int:
        return len(self.versions.pop(app, []))


@dataclass
class FakeRoutes:
    """RouteWriter: live records (with history) and pending markers."""

    history: dict[str, list[LiveRelease]] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)
    delivered: list[RouteUpdate] = field(default_factory=list)  # what updates() yields

    async def live(self, app: str) -> LiveRelease | None:
        kept = self.history.get(app)
        return kept[-1] if kept else None

    async def pending_mark(self, app: str) -> Pending | None:
        return self.pending.get(app)

    async def live_history(self, app: str) -> list[LiveRelease]:
        return list(self.history.get(app, []))

    async def all_live(self) -> dict[str, LiveRelease]:
        return {app: kept[-1] for app, kept in self.history.items() if kept}

    async def all_pending(self) -> dict[str, Pending]:
        return dict(self.pending)

    async def set_live(self, record: LiveRelease) -> None:
        self.history.setdefault(record.app, []).append(record)

    async def set_pending(self, record: Pending) -> None:
        self.pending[record.app] = record

    async def clear_pending(self, app: str) -> None:
        self.pending.pop(app, None)

    async def forget(self, app: str) -> list[str]:
        gone = ([f"live.{app}"] if self.history.pop(app, None) else []) + \
            ([f"pending.{app}"] if self.pending.pop(app, None) else [])
        return gone

    @contextlib.asynccontextmanager
    async def updates(self) -> AsyncIterator[AsyncIterator[RouteUpdate]]:
        """What a test queued in `delivered`, as a watcher would deliver it; then the end."""
        async def queued() -> AsyncIterator[RouteUpdate]:
            for update in self.delivered:
                yield update

        yield queued()


@dataclass
class FakeMaintenance:
    """MaintenanceStore: one record per app."""

    records: dict[str, Maintenance] = field(default_factory=dict)

    async def get(self, app: str) -> Maintenance:
        return self.records.get(app, Maintenance(app=app))

    async def all_on(self) -> dict[str, Maintenance]:
        return {app: r for app, r in self.records.items() if r.enabled}

    async def turn(self, app: str, enabled: bool, message: str | None = None) -> Maintenance:
        self.records[app] = turned(await self.get(app), enabled, message, datetime.now(UTC))
        return self.records[app]

    async def forget(self, app: str) -> bool:
        return self.records.pop(app, None) is not None

    @contextlib.asynccontextmanager
    async def updates(self) -> AsyncIterator[AsyncIterator[Maintenance]]:
        async def none() -> AsyncIterator[Maintenance]:
            return
            yield  # pragma: no cover

        yield none()


@dataclass
class FakeRollouts:
    """RolloutBoard and RolloutControl: states and orders by app."""

    states: dict[str, RolloutProgress] = field(default_factory=dict)
    orders: dict[str, RolloutOrder] = field(default_factory=dict)

    async def show(self, progress: RolloutProgress) -> None:
        self.states[progress.app] = progress

    async def done(self, app: str) -> None:
        self.states.pop(app, None)
        self.orders.pop(app, None)

    async def order(self, app: str) -> RolloutOrder | None:
        return self.orders.get(app)

    async def progress(self, app: str) -> RolloutProgress | None:
        return self.states.get(app)

    async def give(self, app: str, action: RolloutAction) -> RolloutProgress:
        progress = self.states.get(app)
        if progress is None:
            raise NoRollout(app)
        self.orders[app] = RolloutOrder(app=app, deployment_id=progress.deployment_id,
                                        action=action)
        return progress


@dataclass
class FakePlacements:
    """PlacementWriter: (app, release) -> the instances its start phase started."""

    placed: dict[tuple[str, int], Placement] = field(default_factory=dict)

    async def get(self, app: str, release: int) -> Placement | None:
        return self.placed.get((app, release))

    async def record(self, placement: Placement) -> None:
        self.placed[(placement.app, placement.release)] = placement

    async def forget(self, app: str) -> list[int]:
        gone = sorted(release for (a, release) in self.placed if a == app)
        for release in gone:
            del self.placed[(app, release)]
        return gone


@dataclass
class FakeFormations:
    """FormationWriter: app -> its formation."""

    formations: dict[str, Formation] = field(default_factory=dict)

    async def get(self, app: str) -> Formation | None:
        return self.formations.get(app)

    async def record(self, formation: Formation) -> None:
        self.formations[formation.app] = formation

    async def forget(self, app: str) -> bool:
        return self.formations.pop(app, None) is not None


@dataclass
class FakeQueue:
    """DeployQueue: app -> queue."""

    queues: dict[str, Queue] = field(default_factory=dict)

    async def load(self, app: str) -> Queue:
        return self.queues.get(app, Queue())

    async def change(self, app: str, fn: Callable[[Queue], Queue]) -> tuple[Queue, Queue]:
        before = await self.load(app)
        after = fn(before)
        self.queues[app] = after
        return before, after

    async def forget_if_empty(self, app: str) -> bool:
        if (await self.load(app)).entries:
            return False
        self.queues.pop(app, None)
        return True


@dataclass
class FakeReleases:
    """ReleaseNumbers: app -> last number, (app, deployment) -> its number."""

    last: dict[str, int] = field(default_factory=dict)
    given: dict[tuple[str, str], int] = field(default_factory=dict)

    async def allocate(self, app: str, deployment_id: str) -> int:
        if (app, deployment_id) not in self.given:
            self.last[app] = self.last.get(app, 0) + 1
            self.given[(app, deployment_id)] = self.last[app]
        return self.given[(app, deployment_id)]

    async def forget(self, app: str) -> None:
        self.last.pop(app, None)
        self.given = {k: v for k, v in self.given.items() if k[0] != app}


@dataclass
class FakeHooks:
    """HookStore: app -> operator hooks."""

    hooks: dict[str, OperatorHooks] = field(default_factory=dict)

    async def load(self, app: str) -> OperatorHooks:
        return self.hooks.get(app, OperatorHooks())

    async def change(self, app: str,
                     fn: Callable[[OperatorHooks], OperatorHooks]) -> OperatorHooks:
        self.hooks[app] = fn(await self.load(app))
        return self.hooks[app]

    async def forget(self, app: str) -> None:
        self.hooks.pop(app, None)


@dataclass
class FakeSinks:
    """SinkStore: app -> sinks."""

    sinks: dict[str, Sinks] = field(default_factory=dict)

    async def load(self, app: str) -> Sinks:
        return self.sinks.get(app, Sinks())

    async def change(self, app: str, fn: Callable[[Sinks], Sinks]) -> Sinks:
        self.sinks[app] = fn(await self.load(app))
        return self.sinks[app]

    async def forget(self, app: str) -> bool:
        return self.sinks.pop(app, None) is not None


@dataclass
class FakeDeliveries:
    """Deliveries: key -> (state, revision); (app, sink) -> sink status."""

    states: dict[str, tuple[DeliveryState, int]] = field(default_factory=dict)
    sink_statuses: dict[tuple[str, str], SinkStatus] = field(default_factory=dict)

    async def load(self, key: str) -> tuple[DeliveryState, int]:
        return self.states.get(key, (DeliveryState(), 0))

    async def save(self, key: str, state: DeliveryState, revision: int) -> None:
        _, current = self.states.get(key, (DeliveryState(), 0))
        if current != revision:
            raise Conflict(key)
        self.states[key] = (state, revision + 1)

    async def change_status(self, app: str, sink: str,
                            fn: Callable[[SinkStatus], SinkStatus]) -> SinkStatus:
        self.sink_statuses[app, sink] = fn(self.sink_statuses.get((app, sink), SinkStatus()))
        return self.sink_statuses[app, sink]

    async def statuses(self, app: str, sinks: Sequence[str]) -> dict[str, SinkStatus]:
        return {name: self.sink_statuses.get((app, name), SinkStatus()) for name in sinks}

    async def forget_statuses(self, app: str) -> None:
        for key in [k for k in self.sink_statuses if k[0] == app]:
            del self.sink_statuses[key]


@dataclass
class FakeSources:
    """SourceReader and SourceUploads: object name -> archive bytes."""

    objects: dict[str, bytes] = field(default_factory=dict)

    async def fetch(self, name: str, into: Path) -> Path:
        if name not in self.objects:
            raise SourceMissing(name)
        into.write_bytes(self.objects[name])  # noqa: ASYNC240 (a small local file)
        return into

    async def upload(self, app: str, deployment_id: str, data: bytes) -> str:
        name = f"{app}/{deployment_id}.tar.gz"
        self.objects[name] = data
        return name

    async def forget(self, app: str, keep: Collection[str] = ()) -> int:
        gone = [n for n in self.objects if n.startswith(f"{app}/") and n not in keep]
        for name in gone:
            del self.objects[name]
        return len(gone)


@dataclass
class FakeManifests:
    """ManifestStore: (app, build) -> manifest files."""

    kept: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    async def manifest(self, app: str, build_id: str) -> dict[str, str]:
        return dict(self.kept.get((app, build_id), {}))

    async def keep(self, app: str, build_id: str, files: dict[str, str]) -> None:
        self.kept[(app, build_id)] = dict(files)

    async def forget(self, app: str) -> int:
        gone = [k for k in self.kept if k[0] == app]
        for k in gone:
            del self.kept[k]
        return len(gone)


@dataclass
class FakeRuntime:
    """A Runtime whose one-offs end with the exit codes a test gives, by command text.

    `on_call` runs inside every build, one-off and instance start (with the operation's name
    and its spec), so a test can look at the locks, or cancel, while the phase runs. With
    `serve_web`, each `web` instance listens on a real loopback port, so health checks pass.
    """

    name: str = "process"
    tcp_settle: float = 0.0
    exit_codes: dict[str, int] = field(default_factory=dict)
    ran: list[OneOffSpec] = field(default_factory=list)
    instances: dict[str, list[InstanceRef]] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    removed_apps: list[str] = field(default_factory=list)
    # What remove_app finds of each app (images, release dirs...), as it reports them.
    leftovers: dict[str, list[str]] = field(default_factory=dict)
    fail_start: bool = False
    built: list[str] = field(default_factory=list)
    started: list[InstanceSpec] = field(default_factory=list)
    # Raised by build (a BuildError is the app's fault; anything else the runtime's).
    build_error: Exception | None = None
    # Commands whose one-off raises instead of running (the runtime itself failed).
    raising: dict[str, Exception] = field(default_factory=dict)
    # Commands that run past their timeout.
    timeouts: set[str] = field(default_factory=set)
    remove_error: Exception | None = None
    on_call: Callable[[str, object], Awaitable[None]] | None = None
    serve_web: bool = False
    servers: dict[str, asyncio.Server] = field(default_factory=dict)
    # Each instance's output lines (follow_output), by instance id.
    outputs: dict[str, list[str]] = field(default_factory=dict)

    async def _called(self, operation: str, spec: object) -> None:
        if self.on_call is not None:
            await self.on_call(operation, spec)

    async def build(self, app: str, build_id: str, source: Path, log: LogSink, *,
                    dockerfile: str = "Dockerfile", command: str | None = None,
                    time_limit: float = 1800.0, buildpack: Buildpack | None = None) -> str:
        self.built.append(build_id)
        await log.line(f"building {build_id}")
        await self._called("build", build_id)
        if self.build_error is not None:
            raise self.build_error
        return f"artifact-{app}-{build_id}"

    async def run_oneoff(self, spec: OneOffSpec, log: LogSink,
                         cancel: asyncio.Event | None = None) -> OneOffResult:
        self.ran.append(spec)
        await log.line(f"ran {spec.command}")
        await self._called("run_oneoff", spec)
        if spec.command in self.raising:
            raise self.raising[spec.command]
        if cancel is not None and cancel.is_set():
            return OneOffResult(exit_code=-128, duration=0.0, cancelled=True)
        if spec.command in self.timeouts:
            return OneOffResult(exit_code=TIMEOUT_EXIT_CODE, duration=spec.timeout,
                                timed_out=True)
        code = self.exit_codes.get(spec.command, 0)
        artifact = f"{spec.artifact}+{spec.container}" if spec.commit and code == 0 else None
        return OneOffResult(exit_code=code, duration=0.01, artifact=artifact)

    def follow_output(self, app: str, ref: InstanceRef,
                      cursor: str | None = None) -> AsyncIterator[OutputLine]:
        """`outputs[ref.id]`, after the line number `cursor` names, then what a test appends."""
        return self._follow(ref, int(cursor) if cursor else 0)

    async def _follow(self, ref: InstanceRef, done: int) -> AsyncIterator[OutputLine]:
        while True:
            lines = self.outputs.get(ref.id, [])
            while done < len(lines):
                done += 1
                yield OutputLine(text=lines[done - 1], cursor=str(done))
            await asyncio.sleep(0.01)

    async def start_instance(self, spec: InstanceSpec) -> InstanceRef:
        self.started.append(spec)
        await self._called("start_instance", spec)
        if self.fail_start:
            raise StartError(f"{spec.process}.{spec.index} exited at once with code 1")
        ident = f"{spec.app}-{spec.release}-{spec.process}-{spec.index}"
        port = None if spec.process != "web" else 40000 + spec.release
        if spec.process == "web" and self.serve_web:
            server = await asyncio.start_server(_hold_open, "127.0.0.1", 0)
            self.servers[ident] = server
            port = server.sockets[0].getsockname()[1]
        ref = InstanceRef(id=ident, process=spec.process, release=spec.release, port=port)
        self.instances.setdefault(spec.app, []).append(ref)
        return ref

    async def stop_instance(self, ref: InstanceRef, grace: float) -> None:
        self.stopped.append(ref.id)
        await self._called("stop_instance", ref)
        if (server := self.servers.pop(ref.id, None)) is not None:
            server.close()
            await server.wait_closed()
        for refs in self.instances.values():
            if ref in refs:
                refs.remove(ref)

    async def list_instances(self, app: str) -> list[InstanceRef]:
        return list(self.instances.get(app, []))

    async def remove_artifact(self, artifact: str) -> None:
        if self.remove_error is not None:
            raise self.remove_error
        self.removed.append(artifact)

    async def remove_app(self, app: str) -> list[str]:
        self.removed_apps.append(app)
        return self.leftovers.pop(app, [])

    async def close(self) -> None:
        for server in self.servers.values():
            server.close()
            await server.wait_closed()
        self.servers.clear()


async def _hold_open(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A `web` instance: keeps a connection open until the client closes it (TCP healthy)."""
    await reader.read()
    writer.close()


class FakeRuntimes(Runtimes):
    """Runtimes that hand out one FakeRuntime under its name (others are unknown)."""

    def __init__(self, runtime: FakeRuntime) -> None:
        super().__init__(Settings(runtime=runtime.name))
        self.runtime = runtime

    async def default_name(self) -> str:
        return self.runtime.name

    async def get(self, name: str | None = None) -> Runtime:
        if name not in (None, self.runtime.name):
            raise UnknownRuntimeError(f"unknown runtime {name!r}")
        return self.runtime

    async def close(self) -> None:
        await self.runtime.close()


class RecordingLog:
    """A LogSink (and DeployLog stand-in) that keeps every line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.secrets: list[str] = []

    async def line(self, text: str, stream: str = "out") -> None:
        self.lines.append((stream, text))

    async def system(self, text: str) -> None:
        await self.line(text, "system")

    def take_tail(self) -> list[str]:
        return [t for _, t in self.lines[-100:]]

    async def flush(self) -> None:
        return None


def roundtrip(value: Any, type_: type[Any]) -> Any:
    """A value through JSON, as it would travel."""
    return msgspec.json.decode(msgspec.json.encode(value), type=type_)


class Crash(BaseException):
    """The service died here (no handler code catches it, as none catches a killed process)."""


@dataclass
class Published:
    """One message a service published, as it went to the broker."""

    subject: str
    stream: str | None
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> AnyEvent:
        """The body as the event it is."""
        return codec.decode_event(self.body)


@dataclass
class RecordingBroker:
    """The part of a NatsBroker the emitter publishes through: keeps every message.

    `crash_on` holds event types whose next publish dies with Crash (once each), as when a
    service is killed between recording an outcome and publishing it.
    """

    published: list[Published] = field(default_factory=list)
    crash_on: set[type[Event[Any]]] = field(default_factory=set)

    async def publish(self, message: bytes, subject: str, *, stream: str | None = None,
                      headers: dict[str, str] | None = None) -> None:
        decoded = codec.decode_any(message)
        if type(decoded) in self.crash_on:
            self.crash_on.discard(type(decoded))
            raise Crash(f"killed while publishing {decoded.type}")
        self.published.append(Published(subject=subject, stream=stream, headers=headers or {},
                                        body=message))

    @property
    def events(self) -> list[AnyEvent]:
        """Every event published, in order."""
        return [p.event for p in self.published]

    def clear(self) -> None:
        """Forget what was published so far."""
        self.published.clear()


@dataclass
class FakeNats:
    """The part of a nats-py Client a DeployLog uses: keeps every log line, and answers the
    LOGS stream's last message of a subject (whose headers carry the log's byte count)."""

    lines: list[LogLine] = field(default_factory=list)
    flushes: int = 0
    # subject -> the headers of its last line, as the LOGS stream keeps them.
    last_headers: dict[str, dict[str, str]] = field(default_factory=dict)

    async def publish(self, subject: str, payload: bytes = b"",
                      headers: dict[str, str] | None = None) -> None:
        line = msgspec.json.decode(payload, type=LogLine)
        assert subject == subjects.log(line.deployment_id)
        self.lines.append(line)
        self.last_headers[subject] = dict(headers or {})

    def jetstream(self) -> FakeNats:
        """Itself: get_last_msg is all a DeployLog asks of JetStream."""
        return self

    async def get_last_msg(self, stream: str, subject: str) -> Any:
        """The last line's headers (NotFoundError when the subject has none)."""
        assert stream == subjects.STREAM_LOGS
        if subject not in self.last_headers:
            raise NotFoundError
        return SimpleNamespace(headers=self.last_headers[subject])

    async def flush(self) -> None:
        self.flushes += 1

    def texts(self, deployment_id: str) -> list[str]:
        """The lines of one deployment's log."""
        return [line.text for line in self.lines if line.deployment_id == deployment_id]


@dataclass
class Metadata:
    """The JetStream metadata a handler reads of its message."""

    timestamp: datetime
    num_delivered: int = 1


@dataclass
class RawMessage:
    """The raw nats-py message under a FastStream message."""

    metadata: Metadata


class FakeMessage:
    """A JetStream message as a handler sees it: in-progress beats and nacks are kept."""

    def __init__(self, stored_at: datetime | None = None, delivered: int = 1) -> None:
        self.raw_message = RawMessage(Metadata(timestamp=stored_at or datetime.now(UTC),
                                               num_delivered=delivered))
        self.beats = 0
        self.nacks: list[float | None] = []

    async def in_progress(self) -> None:
        self.beats += 1

    async def nack(self, delay: float | None = None) -> None:
        self.nacks.append(delay)

    def as_message(self) -> NatsMessage:
        """Typed as the FastStream message the handlers take."""
        return cast(NatsMessage, self)


def service_context(service: Service[Any], broker: RecordingBroker, nc: FakeNats,
                    settings: Settings | None = None) -> ServiceContext:
    """What start_service hands a service's `make`, with a recording broker and connection."""
    nats_broker = cast(NatsBroker, broker)
    return ServiceContext(name=service.name, settings=settings or Settings(), broker=nats_broker,
                          nc=cast(Client, nc), js=cast(JetStreamContext, None),
                          emitter=Emitter(nats_broker, service.name, service.publishes),
                          log=structlog.get_logger().bind(service=service.name))


class RecordedHandlers:
    """Stands in for a service's handler object: each declared method records what it got.

    The recorders carry the real methods' signatures (functools.wraps), so FastStream decodes
    each message into the type the real method takes.
    """

    def __init__(self, service: Service[Any], handlers: object) -> None:
        self.calls: list[tuple[str, Any]] = []
        for on in service.subscribes:
            setattr(self, on.handler, self._recorder(on.handler, getattr(handlers, on.handler)))

    def _recorder(self, name: str, method: Callable[..., Awaitable[None]]
                  ) -> Callable[..., Awaitable[None]]:
        signature = inspect.signature(method)

        @functools.wraps(method)
        async def record(*args: Any, **kwargs: Any) -> None:
            given = signature.bind(*args, **kwargs).arguments
            self.calls.append((name, next(iter(given.values()))))

        return record


def subscribe_declared(broker: NatsBroker, service: Service[Any], handlers: object) -> None:
    """Subscribe a handler object as start_service does: one durable consumer per `On`."""
    for on in service.subscribes:
        durable_subscriber(broker, on.subject, on.durable(service.name), on.stream,
                           new_only=on.new_only)(getattr(handlers, on.handler))


async def delivered_on_test_broker(service: Service[Any], handler_class: type[Any],
                                   messages: Sequence[Message]) -> list[tuple[str, Any]]:
    """(handler method, what it got) for each message published to the service's wiring.

    The service's declared subscriptions are wired on FastStream's TestNatsBroker (in memory)
    to recorders standing in for the methods of `handler_class`.
    """
    broker = offline_broker(service.name)
    # Never initialised: only its methods' signatures are used.
    recorded = RecordedHandlers(service, object.__new__(handler_class))
    subscribe_declared(broker, service, recorded)
    async with TestNatsBroker(broker) as test_broker:
        # Its connection is a mock, whose max_payload would read as 1 byte: give it the
        # server's default, so publish's size check passes as on a real bus.
        cast(Any, test_broker.connection).max_payload = MAX_PAYLOAD
        for message in messages:
            await publish(test_broker, message)
    return recorded.calls


def undeclared_events(service: Service[Any]) -> list[type[Event[Any]]]:
    """Every event type the service does not declare it publishes."""
    return [cls for cls in EVENT_TYPES if cls not in service.publishes]


def offline_broker(identity: str) -> Any:
    """A broker never connected (FastStream's TestNatsBroker, or its methods' signatures only)."""
    return make_broker("nats://127.0.0.1:4222", identity,
                       credentials=Credentials(identity, new_seed()))

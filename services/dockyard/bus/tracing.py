"""OpenTelemetry tracing: one deploy is one trace, whose id is the deployment id, its context
carried in NATS headers by FastStream's middleware from hop to hop; exported over OTLP when an
endpoint is set, off otherwise (no middleware, no exporter)."""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import msgspec
from faststream import BaseMiddleware
from faststream.message import StreamMessage
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from faststream.response import PublishCommand
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

# How long a stopping service, or the process at exit, waits for its last spans to leave (a
# collector may be down: an export tries for 10 s).
FLUSH_SECONDS = 2.0
_HEX = frozenset("0123456789abcdef")

# The deployment of the message at hand: a trace begun here takes its id.
_SEED: ContextVar[int | None] = ContextVar("dockyard_trace_seed", default=None)


class _Ids(msgspec.Struct):
    """The deployment id of a command (`deployment_id`) or an event (`deploymentid`)."""

    deployment_id: str = ""
    deploymentid: str = ""


def trace_id(deployment_id: str) -> int | None:
    """The trace id of a deployment: its 32 hex digits (None for anything else)."""
    if len(deployment_id) != 32 or not set(deployment_id) <= _HEX:
        return None
    return int(deployment_id, 16) or None


def seed_of(body: bytes) -> int | None:
    """The trace id of the deployment a message is about, if it names one."""
    try:
        ids = msgspec.json.decode(body, type=_Ids)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return trace_id(ids.deployment_id or ids.deploymentid)


class DeploymentTraceIds(RandomIdGenerator):
    """A trace begun while a deployment's message is at hand gets the deployment's id, so even
    a hop whose headers carry no context (the CLI's request, a redelivery) joins its trace."""

    def generate_trace_id(self) -> int:
        """The deployment's id, else a random one."""
        return _SEED.get() or super().generate_trace_id()


class TraceSeed(BaseMiddleware):
    """Tells the id generator which deployment the message consumed or published is about."""

    async def consume_scope(self, call_next: Callable[..., Awaitable[Any]],
                            msg: StreamMessage[Any]) -> Any:
        body = msg.body if isinstance(msg.body, bytes) else b""
        token = _SEED.set(seed_of(body))
        try:
            return await call_next(msg)
        finally:
            _SEED.reset(token)

    async def publish_scope(self, call_next: Callable[..., Awaitable[Any]],
                            cmd: PublishCommand) -> Any:
        body = cmd.body if isinstance(cmd.body, bytes) else b""
        token = _SEED.set(seed_of(body) or _SEED.get())
        try:
            return await call_next(cmd)
        finally:
            _SEED.reset(token)


class _Provider(TracerProvider):
    """A tracer provider whose forked child does not rebuild its resource."""

    def _handle_fork(self) -> None:
        # The SDK's own runs resource detectors on a thread pool in the child, which deadlocks
        # a child forked to run a hook command (preexec_fn) when that pool's module registered
        # its fork handlers after the provider; our resource has nothing process-dependent.
        self._tracers_lock = threading.Lock()


@dataclass
class _Exporting:
    """Where spans go, and each service's provider (its resource names the service)."""

    processor: SpanProcessor
    providers: dict[str, TracerProvider] = field(default_factory=dict)


_exporting: list[_Exporting] = []  # at most one: the process's


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a base endpoint (as OTEL_EXPORTER_OTLP_ENDPOINT means it)."""
    return endpoint.rstrip("/") + "/v1/traces"


def configure(endpoint: str) -> None:
    """Export over OTLP/HTTP to the endpoint, if one is set (once per process)."""
    if endpoint and not _exporting:
        export_to(OTLPSpanExporter(endpoint=traces_url(endpoint)))


def export_to(exporter: SpanExporter, *, batch: bool = True) -> None:
    """Send every service's spans to an exporter (batched in a thread, or as each ends)."""
    stop_exporting()
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    _exporting.append(_Exporting(processor))


def _bounded(work: Callable[[], object]) -> None:
    """Run work in a thread of its own for at most FLUSH_SECONDS (the SDK's force_flush and
    shutdown wait for an export in progress, whatever timeout they are given)."""
    thread = threading.Thread(target=work, name="dockyard-trace-flush", daemon=True)
    thread.start()
    thread.join(FLUSH_SECONDS)


def stop_exporting() -> None:
    """Tracing off: brokers made from now on carry no tracing middleware."""
    while _exporting:
        _bounded(_exporting.pop().processor.shutdown)


def enabled() -> bool:
    """Whether spans are exported."""
    return bool(_exporting)


def provider(service: str) -> TracerProvider | None:
    """The service's tracer provider, None when tracing is off."""
    if not _exporting:
        return None
    state = _exporting[0]
    if service not in state.providers:
        made = _Provider(resource=Resource({"service.name": f"dockyard-{service}",
                                                 "service.namespace": "dockyard"}),
                              id_generator=DeploymentTraceIds(), shutdown_on_exit=False)
        made.add_span_processor(state.processor)
        state.providers[service] = made
    return state.providers[service]


def middlewares(service: str) -> list[Any]:
    """The broker middlewares that trace a service's messages (none when tracing is off)."""
    traced = provider(service)
    if traced is None:
        return []
    return [TraceSeed, NatsTelemetryMiddleware(tracer_provider=traced)]


async def flush() -> None:
    """Send the spans not yet exported (bounded: a stopping service does not hang on them)."""
    if _exporting:
        await asyncio.to_thread(_bounded, _exporting[0].processor.force_flush)


# The providers do not shut the shared processor down themselves: it is done once, here.
atexit.register(stop_exporting)

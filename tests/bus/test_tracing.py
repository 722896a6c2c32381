"""Tracing: off unless asked for; on a real nats-server, a deployment's messages are one trace
whose id is the deployment id, the context carried hop to hop in NATS headers, and spans leave
over OTLP/HTTP when an endpoint is set."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dockyard.bus import tracing
from dockyard.bus.auth import Credentials, new_seed
from dockyard.bus.broker import durable_subscriber, make_broker, publish
from dockyard.bus.embedded import EmbeddedNats, free_port
from dockyard.contract import codec, subjects
from dockyard.contract.events import BuildSucceeded, DeployRequested, ReleaseSucceeded, new_id
from tests.conftest import TEST, Bus
from tests.events import make

SPEC = {"runtime": "process", "build_id": "v1-abc", "artifact": "/a",
        "plan": {"processes": [{"name": "web", "command": "x"}]}}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, every span kept in memory as it ends; off again afterwards."""
    exporter = InMemorySpanExporter()
    tracing.export_to(exporter, batch=False)
    yield exporter
    tracing.stop_exporting()


async def until(check: Callable[[], bool], within: float = 15.0) -> None:
    """Wait for a condition, within a bound."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_off_unless_an_endpoint_is_set() -> None:
    tracing.configure("")
    assert not tracing.enabled()
    assert tracing.middlewares("builder") == []
    broker = make_broker("nats://127.0.0.1:4222", "builder",
                         credentials=Credentials("builder", new_seed()))
    assert not any(isinstance(m, NatsTelemetryMiddleware) for m in broker.middlewares)


@pytest.mark.parametrize(("text", "expected"), [
    ("0123456789abcdef0123456789abcdef", 0x0123456789ABCDEF0123456789ABCDEF),
    ("0" * 32, None),  # not a valid trace id
    ("0123456789ABCDEF0123456789ABCDEF", None),
    ("0123456789abcdef", None),
    ("../../etc", None),
    ("", None),
])
def test_a_deployment_id_is_its_trace_id(text: str, expected: int | None) -> None:
    assert tracing.trace_id(text) == expected


def test_the_deployment_a_message_is_about() -> None:
    deployment = new_id()
    command = codec.encode(DeployRequested(deployment_id=deployment, app="shop"))
    event = codec.encode(make(BuildSucceeded, deployment_id=deployment, spec=SPEC))
    assert tracing.seed_of(command) == tracing.seed_of(event) == int(deployment, 16)
    assert tracing.seed_of(b"garbage") is None
    assert tracing.seed_of(b'{"deployment_id": 5}') is None
    assert tracing.seed_of(b'{"deploymentid": "x>"}') is None


# A process that traces, then forks a command with a preexec_fn (as the process runtime runs a
# hook under its memory limit), after a thread pool's module registered its fork handlers (as
# the first asyncio.to_thread does).
FORK_AFTER_TRACING = """
import subprocess
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from dockyard.bus import tracing
tracing.export_to(InMemorySpanExporter(), batch=False)
tracing.provider("hook-runner")
import concurrent.futures.thread
subprocess.run(["true"], preexec_fn=lambda: None, check=True)
print("ran")
"""


def test_a_hook_command_is_forked_while_tracing_is_on() -> None:
    # Its own session: a child hung in the fork is killed with it, never left behind.
    proc = subprocess.Popen([sys.executable, "-c", FORK_AFTER_TRACING], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("forking a command hung in the tracer provider's fork handler")
    assert (proc.returncode, out.strip()) == (0, "ran")


# ------------------------------------------------------------------ on a real nats-server


@contextlib.asynccontextmanager
async def two_hops(nats_server: EmbeddedNats, app: str) -> AsyncIterator[list[str]]:
    """Two made-up services: one turns BuildSucceeded into ReleaseSucceeded, the other takes
    ReleaseSucceeded; yields the deployment ids the second one saw."""
    tag = uuid.uuid4().hex[:8]
    first = make_broker(nats_server.url, f"hop1-{tag}", credentials=nats_server.credentials(TEST))
    second = make_broker(nats_server.url, f"hop2-{tag}", credentials=nats_server.credentials(TEST))
    seen: list[str] = []

    async def release(event: BuildSucceeded) -> None:
        await publish(first, make(ReleaseSucceeded, app=app, deployment_id=event.deployment_id,
                                  spec=SPEC))

    async def done(event: ReleaseSucceeded) -> None:
        seen.append(event.deployment_id)

    durable_subscriber(first, subjects.event(app, "build", "succeeded"), f"hop1-{tag}",
                       subjects.STREAM_EVENTS, new_only=True)(release)
    durable_subscriber(second, subjects.event(app, "release", "succeeded"), f"hop2-{tag}",
                       subjects.STREAM_EVENTS, new_only=True)(done)
    await first.start()
    await second.start()
    try:
        yield seen
    finally:
        await first.stop()
        await second.stop()


def of_trace(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans()
            if s.context is not None and s.context.trace_id == trace_id]


def service_of(span: ReadableSpan) -> str:
    return str(span.resource.attributes["service.name"])


async def _first_hop(bus: Bus, app: str, deployment: str, headers: dict[str, str]) -> None:
    body = codec.encode(make(BuildSucceeded, app=app, deployment_id=deployment, spec=SPEC))
    await bus.js.publish(subjects.event(app, "build", "succeeded"), body,
                         headers={"Nats-Msg-Id": new_id(), **headers})


@pytest.mark.parametrize("headers", [
    {},  # the CLI's request carries no trace context
    {"traceparent": "00-not-a-trace-context-01"},  # garbage: ignored, never an error
    {"traceparent": "00-00000000000000000000000000000000-0000000000000000-01"},
])
async def test_a_deployments_hops_are_one_trace_whose_id_is_the_deployment_id(
        spans: InMemorySpanExporter, nats_server: EmbeddedNats, bus: Bus,
        headers: dict[str, str]) -> None:
    app = f"t{uuid.uuid4().hex[:8]}"
    deployment = new_id()
    async with two_hops(nats_server, app) as seen:
        await _first_hop(bus, app, deployment, headers)
        await until(lambda: seen == [deployment])
        trace = int(deployment, 16)
        await until(lambda: len(processed(of_trace(spans, trace))) == 2)
    found = of_trace(spans, trace)
    assert sorted(service_of(s).split("-")[1] for s in processed(found)) == ["hop1", "hop2"]
    ids = {s.context.span_id for s in found if s.context is not None}
    second = next(s for s in processed(found) if "hop2" in service_of(s))
    # The second hop continues the context the first one put in the headers.
    assert second.parent is not None and second.parent.is_remote
    assert second.parent.span_id in ids


def processed(found: list[ReadableSpan]) -> list[ReadableSpan]:
    """The spans of handlers processing a message."""
    return [s for s in found if s.name.endswith(" process")]


async def test_a_context_from_outside_is_continued(
        spans: InMemorySpanExporter, nats_server: EmbeddedNats, bus: Bus) -> None:
    app = f"c{uuid.uuid4().hex[:8]}"
    deployment = new_id()
    outside = new_id()  # a CI pipeline's trace, say
    parent = "00-" + outside + "-00f067aa0ba902b7-01"
    async with two_hops(nats_server, app) as seen:
        await _first_hop(bus, app, deployment, {"traceparent": parent})
        await until(lambda: seen == [deployment])
        await until(lambda: len(processed(of_trace(spans, int(outside, 16)))) == 2)
        assert of_trace(spans, int(deployment, 16)) == []


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that keeps what it is sent."""

    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    received: list[tuple[str, bytes]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()
    thread.join()


async def test_spans_are_exported_over_otlp_http_when_an_endpoint_is_set(
        collector: tuple[str, list[tuple[str, bytes]]], nats_server: EmbeddedNats,
        bus: Bus) -> None:
    endpoint, received = collector
    tracing.configure(endpoint + "/")
    try:
        assert tracing.enabled()
        app = f"o{uuid.uuid4().hex[:8]}"
        deployment = new_id()
        async with two_hops(nats_server, app) as seen:
            await _first_hop(bus, app, deployment, {})
            await until(lambda: seen == [deployment])
        await tracing.flush()
    finally:
        tracing.stop_exporting()
    assert not tracing.enabled()
    requests = [ExportTraceServiceRequest.FromString(body) for path, body in received
                if path == "/v1/traces"]
    exported = [(resource.resource, span) for request in requests
                for resource in request.resource_spans
                for scope in resource.scope_spans for span in scope.spans]
    ours = [(r, s) for r, s in exported if s.trace_id == bytes.fromhex(deployment)]
    names = {a.value.string_value for r, _ in ours for a in r.attributes
             if a.key == "service.name"}
    assert {n.split("-")[1] for n in names} == {"hop1", "hop2"}


async def test_an_unreachable_collector_costs_a_deploy_nothing(nats_server: EmbeddedNats,
                                                               bus: Bus) -> None:
    tracing.configure(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    try:
        app = f"u{uuid.uuid4().hex[:8]}"
        deployment = new_id()
        async with two_hops(nats_server, app) as seen:
            started = time.monotonic()
            await _first_hop(bus, app, deployment, {})
            await until(lambda: seen == [deployment])
            # Spans leave from a thread: the hops never wait on the collector (an export
            # tries for 10 s before it gives up).
            assert time.monotonic() - started < 5
        started = time.monotonic()
        await tracing.flush()  # what a stopping service waits: bounded
        assert time.monotonic() - started < tracing.FLUSH_SECONDS + 1
        started = time.monotonic()
    finally:
        tracing.stop_exporting()
    assert time.monotonic() - started < tracing.FLUSH_SECONDS + 1  # at exit too

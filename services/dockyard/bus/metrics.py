"""Prometheus metrics of every service: one registry per process, bounded labels, served over
HTTP; counted where messages are consumed and published, so handlers stay as they are."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Any
from wsgiref.simple_server import WSGIServer

import msgspec
import structlog
from faststream import BaseMiddleware
from faststream.message import StreamMessage
from faststream.nats.prometheus.provider import NatsMetricsSettingsProvider
from faststream.prometheus import ConsumeAttrs, PrometheusMiddleware
from faststream.response import PublishCommand
from nats.aio.msg import Msg
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)

from dockyard.contract import subjects
from dockyard.contract.events import COMMAND_TYPES, EVENT_TYPES, FAILED_STATUSES
from dockyard.contract.phase import HOOK_PHASES, Phase
from dockyard.settings import SettingsError

log = structlog.get_logger()

# One registry per process: `dockyard up` runs every service in one process and serves them all.
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

# Phases last from seconds (a switch) to an hour (a long release command).
SECONDS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
OTHER = "other"

DEPLOYS = Counter("dockyard_deploys", "Deploys ended, by status (once per deployment, where "
                  "its terminal event is first published)", ["status"], registry=REGISTRY)
PHASE_SECONDS = Histogram("dockyard_phase_duration_seconds", "How long each phase took, from "
                          "its trigger's delivery to its outcome's publish", ["phase"],
                          buckets=SECONDS, registry=REGISTRY)
HOOK_SECONDS = Histogram("dockyard_hook_command_duration_seconds", "How long each hook command "
                         "ran, by hook phase", ["phase"], buckets=SECONDS, registry=REGISTRY)
HOOK_COMMANDS = Counter("dockyard_hook_commands", "Hook commands that ended, by hook phase and "
                        "result (ok, failed, timeout)", ["phase", "result"], registry=REGISTRY)
# App names are a label here alone: a series exists only while the app has deploys waiting.
QUEUE_DEPTH = Gauge("dockyard_queue_depth", "Deploy requests waiting for their turn, per app "
                    "with any waiting", ["app"], registry=REGISTRY)
REDELIVERIES = Counter("dockyard_redeliveries", "Messages delivered again (num_delivered > 1; "
                       "includes the builder's looks at a waiting queue)", ["service", "subject"],
                       registry=REGISTRY)
DEAD_LETTERS = Counter("dockyard_dead_letters", "Messages sent to a service's dead letters, by "
                       "reason class", ["service", "reason"], registry=REGISTRY)
SWITCHES = Counter("dockyard_router_switches", "Traffic switches, by outcome (switched, failed)",
                   ["outcome"], registry=REGISTRY)
INFLIGHT_OLDEST = Gauge("dockyard_inflight_oldest_seconds", "Age of the oldest message a "
                        "service is handling (a phase holding the app's lock runs inside one)",
                        ["service"], registry=REGISTRY)

_EVENTS = frozenset((cls.topic, cls.outcome) for cls in EVENT_TYPES)
_COMMANDS = frozenset(str(getattr(cls, "subject")) for cls in COMMAND_TYPES)  # noqa: B009
_STATUSES = frozenset(("succeeded", *FAILED_STATUSES))
_HOOK_PHASES = frozenset(p.value for p in HOOK_PHASES)
# The phase whose work a handler did when it publishes this outcome.
_PHASE_OF: dict[tuple[str, str], Phase] = {
    ("build", "succeeded"): Phase.BUILD, ("build", "failed"): Phase.BUILD,
    ("release", "succeeded"): Phase.RELEASE, ("release", "failed"): Phase.RELEASE,
    ("start", "succeeded"): Phase.START, ("start", "failed"): Phase.START,
    ("hook", "succeeded"): Phase.POSTDEPLOY, ("hook", "failed"): Phase.POSTDEPLOY,
    ("traffic", "switched"): Phase.SWITCH, ("traffic", "failed"): Phase.SWITCH,
    ("after_switch", "succeeded"): Phase.AFTER_SWITCH,
    ("after_switch", "failed"): Phase.AFTER_SWITCH,
    ("retire", "succeeded"): Phase.RETIRE,
}
_REASONS = (("rejected: ", "rejected"), ("undecodable: ", "undecodable"),
            ("not a ", "wrong-type"), ("failed ", "failed"))
TIMEOUT_EXIT_CODE = -128


@dataclass(frozen=True)
class Consuming:
    """The message the current handler works on: its subject and when its delivery began."""

    subject: str
    started: float


_CONSUMING: ContextVar[Consuming | None] = ContextVar("dockyard_consuming", default=None)
_INFLIGHT: dict[str, dict[int, float]] = {}
_tokens = itertools.count()


class _Status(msgspec.Struct):
    status: str = "succeeded"


class _Terminal(msgspec.Struct):
    data: _Status


class _Result(msgspec.Struct):
    hook_phase: str
    exit_code: int
    duration: float


class _Finished(msgspec.Struct):
    data: _Result


class _Letter(msgspec.Struct):
    reason: str = ""


def _event_key(subject: str) -> tuple[str, str] | None:
    """(topic, outcome) of a known event subject (dockyard.evt.<app>.<topic>.<outcome>)."""
    tokens = subject.split(".")
    if len(tokens) == 5 and tokens[0] == subjects.PREFIX and tokens[1] == "evt":
        key = (tokens[3], tokens[4])
        return key if key in _EVENTS else None
    return None


def subject_pattern(subject: str) -> str:
    """A subject as a label: the app, deployment id or service replaced by `*`, anything
    unknown by `other`, so a label never grows with what is published."""
    if subject in _COMMANDS:
        return subject
    if (key := _event_key(subject)) is not None:
        return subjects.events_of(*key)
    tokens = subject.split(".")
    if len(tokens) == 3 and tokens[0] == subjects.PREFIX and tokens[1] in ("log", "dlq"):
        return f"{subjects.PREFIX}.{tokens[1]}.*"
    return OTHER


def reason_class(reason: str) -> str:
    """The class of a dead letter's reason (its wording comes from dockyard.bus.broker)."""
    for prefix, name in _REASONS:
        if reason.startswith(prefix):
            return name
    return OTHER


def phase_of(published: str, consumed: str) -> Phase | None:
    """The phase a handler that consumed `consumed` ended by publishing `published`."""
    key = _event_key(published)
    if key is None:
        return None
    if key == ("deploy", "failed") and _event_key(consumed) == ("deploy", "aborted"):
        return Phase.ON_FAILURE
    return _PHASE_OF.get(key)


def hook_result(exit_code: int) -> str:
    """ok, timeout or failed."""
    if exit_code == 0:
        return "ok"
    return "timeout" if exit_code == TIMEOUT_EXIT_CODE else "failed"


def observe_published(service: str, subject: str, body: bytes, consuming: Consuming | None,
                      now: float) -> None:
    """Count a message its service published for the first time (not a duplicate)."""
    key = _event_key(subject)
    if subject.startswith(f"{subjects.PREFIX}.dlq."):
        reason = msgspec.json.decode(body, type=_Letter).reason
        DEAD_LETTERS.labels(service, reason_class(reason)).inc()
    elif key in (("deploy", "succeeded"), ("deploy", "failed")):
        status = msgspec.json.decode(body, type=_Terminal).data.status
        DEPLOYS.labels(status if status in _STATUSES else OTHER).inc()
    elif key == ("command", "finished"):
        result = msgspec.json.decode(body, type=_Finished).data
        hook = result.hook_phase if result.hook_phase in _HOOK_PHASES else OTHER
        HOOK_SECONDS.labels(hook).observe(result.duration)
        HOOK_COMMANDS.labels(hook, hook_result(result.exit_code)).inc()
    if key is not None and key[0] == "traffic":
        SWITCHES.labels("switched" if key[1] == "switched" else "failed").inc()
    if consuming is not None and (phase := phase_of(subject, consuming.subject)) is not None:
        PHASE_SECONDS.labels(phase.value).observe(max(now - consuming.started, 0.0))


def queue_depth(app: str, waiting: int) -> None:
    """How many deploys of an app wait (its series goes when none does)."""
    if waiting:
        QUEUE_DEPTH.labels(app).set(waiting)
    else:
        QUEUE_DEPTH.remove(app)


def _oldest(service: str) -> float:
    started = _INFLIGHT.get(service)
    return time.monotonic() - min(started.values()) if started else 0.0


def deliveries(msg: StreamMessage[Any]) -> int:
    """How many times JetStream delivered the message (1 for a core NATS message)."""
    try:
        return int(msg.raw_message.metadata.num_delivered)
    except Exception:  # core NATS message: no metadata
        return 1


def middleware(service: str) -> type[BaseMiddleware]:
    """Counts one service's redeliveries, in-flight age, and what it publishes the first time."""
    inflight = _INFLIGHT.setdefault(service, {})
    INFLIGHT_OLDEST.labels(service).set_function(partial(_oldest, service))

    class MetricsMiddleware(BaseMiddleware):
        async def consume_scope(self, call_next: Callable[..., Awaitable[Any]],
                                msg: StreamMessage[Any]) -> Any:
            subject = str(getattr(msg.raw_message, "subject", ""))
            if deliveries(msg) > 1:
                REDELIVERIES.labels(service, subject_pattern(subject)).inc()
            token, started = next(_tokens), time.monotonic()
            inflight[token] = started
            scope = _CONSUMING.set(Consuming(subject, started))
            try:
                return await call_next(msg)
            finally:
                _CONSUMING.reset(scope)
                del inflight[token]

        async def publish_scope(self, call_next: Callable[..., Awaitable[Any]],
                                cmd: PublishCommand) -> Any:
            result = await call_next(cmd)
            # JetStream says whether it stored the id before: a republished outcome counts once.
            if not getattr(result, "duplicate", False) and isinstance(cmd.body, bytes):
                try:
                    observe_published(service, cmd.destination, cmd.body, _CONSUMING.get(),
                                      time.monotonic())
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    log.warning("not counted", subject=cmd.destination, error=str(exc))
            return result

    return MetricsMiddleware


class _BoundedSubjects(NatsMetricsSettingsProvider):
    """FastStream's NATS metric attributes, with subjects as bounded patterns."""

    def get_consume_attrs_from_message(self, msg: StreamMessage[Msg]) -> ConsumeAttrs:
        attrs = super().get_consume_attrs_from_message(msg)
        return {**attrs, "destination_name": subject_pattern(attrs["destination_name"])}

    def get_publish_destination_name_from_cmd(self, cmd: Any) -> str:
        return subject_pattern(super().get_publish_destination_name_from_cmd(cmd))


def _bounded(msg: Msg | Sequence[Msg] | None) -> _BoundedSubjects | None:
    # Pull subscriptions deliver one Msg; KV and object-store watches have no subject to count.
    return _BoundedSubjects() if msg is None or isinstance(msg, Msg) else None


def faststream_middleware(service: str) -> PrometheusMiddleware[Any, Any]:
    """FastStream's per-subject consume/publish counts, durations and exceptions."""
    return PrometheusMiddleware(settings_provider_factory=_bounded, registry=REGISTRY,
                                app_name=service)


class MetricsError(SettingsError):
    """The metrics cannot be served on the address asked for (DOCKYARD_METRICS_ADDR)."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        super().__init__(f"cannot serve metrics on {host}:{port} (DOCKYARD_METRICS_ADDR): "
                         f"{error.strerror or error}")
        self.host = host
        self.port = port


@dataclass
class MetricsServer:
    """The process's registry served over HTTP at /metrics."""

    server: WSGIServer
    thread: threading.Thread
    # Where Prometheus scrapes it.
    url: str

    async def stop(self) -> None:
        """Stop serving (the port is free afterwards)."""
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(host: str, port: int) -> MetricsServer:
    """Serve the registry on host:port (0: any free port); MetricsError, once, if it cannot."""
    try:
        server, thread = start_http_server(port, host, registry=REGISTRY)
    except OSError as exc:
        raise MetricsError(host, port, exc) from None
    bound, port = server.socket.getsockname()[:2]
    shown = f"[{bound}]" if ":" in bound else bound
    return MetricsServer(server, thread, f"http://{shown}:{port}/metrics")

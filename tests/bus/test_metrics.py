"""Metrics: labels stay bounded, each update is a value read back from the registry, and the
middleware counts on a real nats-server (a republished outcome once, redeliveries, dead
letters, in-flight age, phase durations)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from faststream.nats import NatsBroker
from prometheus_client import generate_latest

from dockyard.bus import metrics
from dockyard.bus.broker import durable_subscriber, make_broker, publish
from dockyard.bus.embedded import EmbeddedNats
from dockyard.contract import codec, subjects
from dockyard.contract.events import (
    BuildSucceeded,
    CommandFinished,
    DeployFailed,
    DeploySucceeded,
    ReleaseSucceeded,
    TrafficFailed,
    TrafficSwitched,
    new_id,
)
from dockyard.contract.phase import Phase
from tests.conftest import TEST, Bus
from tests.events import make

SPEC = {"runtime": "process", "build_id": "v1-abc", "artifact": "/a",
        "plan": {"processes": [{"name": "web", "command": "x"}]}}


def value(name: str, **labels: str) -> float:
    """A sample's value in the process's registry (0 when it has none yet)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def wire(event: Any) -> tuple[str, bytes]:
    """An event's subject and body, as they go on the bus."""
    return event.nats_subject(), codec.encode(event)


# ------------------------------------------------------------------ labels


@pytest.mark.parametrize(("subject", "pattern"), [
    ("dockyard.evt.shop.deploy.succeeded", "dockyard.evt.*.deploy.succeeded"),
    ("dockyard.evt.my-app-2.command.finished", "dockyard.evt.*.command.finished"),
    ("dockyard.evt.shop.nonsense.made-up", "other"),
    ("dockyard.evt.shop.deploy", "other"),
    ("dockyard.cmd.deploy", "dockyard.cmd.deploy"),
    ("dockyard.cmd.cancel", "dockyard.cmd.cancel"),
    ("dockyard.cmd.whatever", "other"),
    (f"dockyard.log.{'a' * 32}", "dockyard.log.*"),
    ("dockyard.dlq.builder", "dockyard.dlq.*"),
    ("$KV.dockyard_locks.shop", "other"),
    ("", "other"),
])
def test_a_subject_label_never_names_an_app_or_a_deployment(subject: str, pattern: str) -> None:
    assert metrics.subject_pattern(subject) == pattern


@pytest.mark.parametrize(("reason", "kind"), [
    ("rejected: invalid app name 'x>'", "rejected"),
    ("undecodable: JSON is malformed: invalid character (byte 0)", "undecodable"),
    ("not a DeployRequested message: got dockyard.deploy.queued", "wrong-type"),
    ("failed 20 times: RuntimeError('boom')", "failed"),
    ("s3cret-and-anything-else", "other"),
])
def test_a_dead_letter_reason_is_counted_by_its_class(reason: str, kind: str) -> None:
    assert metrics.reason_class(reason) == kind


@pytest.mark.parametrize(("published", "consumed", "phase"), [
    ("dockyard.evt.a.build.succeeded", "dockyard.cmd.deploy", Phase.BUILD),
    ("dockyard.evt.a.build.failed", "dockyard.cmd.deploy", Phase.BUILD),
    ("dockyard.evt.a.release.failed", "dockyard.evt.a.build.succeeded", Phase.RELEASE),
    ("dockyard.evt.a.start.succeeded", "dockyard.evt.a.release.succeeded", Phase.START),
    ("dockyard.evt.a.hook.succeeded", "dockyard.evt.a.start.succeeded", Phase.POSTDEPLOY),
    ("dockyard.evt.a.traffic.switched", "dockyard.evt.a.hook.succeeded", Phase.SWITCH),
    ("dockyard.evt.a.traffic.failed", "dockyard.evt.a.hook.succeeded", Phase.SWITCH),
    ("dockyard.evt.a.after_switch.succeeded", "dockyard.evt.a.traffic.switched",
     Phase.AFTER_SWITCH),
    ("dockyard.evt.a.retire.succeeded", "dockyard.evt.a.after_switch.succeeded", Phase.RETIRE),
    ("dockyard.evt.a.deploy.failed", "dockyard.evt.a.deploy.aborted", Phase.ON_FAILURE),
    # Refused in the queue, or ended by the scheduler: no phase's work.
    ("dockyard.evt.a.deploy.failed", "dockyard.cmd.deploy", None),
    ("dockyard.evt.a.deploy.succeeded", "dockyard.evt.a.retire.succeeded", None),
    ("dockyard.evt.a.build.started", "dockyard.cmd.deploy", None),
    ("dockyard.dlq.builder", "dockyard.cmd.deploy", None),
])
def test_the_phase_of_an_outcome(published: str, consumed: str, phase: Phase | None) -> None:
    assert metrics.phase_of(published, consumed) == phase


def test_hook_results() -> None:
    assert [metrics.hook_result(code) for code in (0, 1, 137, -128)] == [
        "ok", "failed", "failed", "timeout"]


# ------------------------------------------------------------------ updates as values


def test_an_ended_deploy_is_counted_by_its_status() -> None:
    ok = make(DeploySucceeded, deployment_id=new_id())
    failed = make(DeployFailed, deployment_id=new_id(), status="hook-error", reason="x")
    before = value("dockyard_deploys_total", status="succeeded")
    before_failed = value("dockyard_deploys_total", status="hook-error")
    metrics.observe_published("scheduler", *wire(ok), None, 0.0)
    metrics.observe_published("hook-runner", *wire(failed), None, 0.0)
    assert value("dockyard_deploys_total", status="succeeded") == before + 1
    assert value("dockyard_deploys_total", status="hook-error") == before_failed + 1


def test_a_status_nobody_declared_is_other_not_a_new_label() -> None:
    deployment = new_id()
    body = codec.encode(make(DeployFailed, deployment_id=deployment, status="cancelled",
                             reason="x")).replace(b'"cancelled"', b'"made-up-status"')
    before = value("dockyard_deploys_total", status="other")
    metrics.observe_published("x", "dockyard.evt.shop.deploy.failed", body, None, 0.0)
    assert value("dockyard_deploys_total", status="other") == before + 1
    assert b"made-up-status" not in generate_latest(metrics.REGISTRY)


def test_a_finished_hook_command_is_observed_by_phase_and_result() -> None:
    done = make(CommandFinished, deployment_id=new_id(), hook_phase="postdeploy", label="Warm",
                index=1, total=1, command="./warm", exit_code=-128, duration=12.5)
    count = value("dockyard_hook_command_duration_seconds_count", phase="postdeploy")
    total = value("dockyard_hook_command_duration_seconds_sum", phase="postdeploy")
    timeouts = value("dockyard_hook_commands_total", phase="postdeploy", result="timeout")
    metrics.observe_published("hook-runner", *wire(done), None, 0.0)
    assert value("dockyard_hook_command_duration_seconds_count", phase="postdeploy") == count + 1
    assert value("dockyard_hook_command_duration_seconds_sum", phase="postdeploy") == total + 12.5
    assert value("dockyard_hook_commands_total", phase="postdeploy",
                 result="timeout") == timeouts + 1


def test_switches_and_switch_failures_are_counted_and_timed_from_the_trigger() -> None:
    switched = make(TrafficSwitched, deployment_id=new_id(), spec=SPEC, instances=[])
    failed = make(TrafficFailed, deployment_id=new_id(), status="switch-error", reason="x")
    trigger = metrics.Consuming("dockyard.evt.shop.hook.succeeded", started=100.0)
    ok, bad = (value("dockyard_router_switches_total", outcome=o) for o in ("switched", "failed"))
    count = value("dockyard_phase_duration_seconds_count", phase="switch")
    total = value("dockyard_phase_duration_seconds_sum", phase="switch")
    metrics.observe_published("router", *wire(switched), trigger, 100.25)
    metrics.observe_published("router", *wire(failed), trigger, 101.0)
    assert value("dockyard_router_switches_total", outcome="switched") == ok + 1
    assert value("dockyard_router_switches_total", outcome="failed") == bad + 1
    assert value("dockyard_phase_duration_seconds_count", phase="switch") == count + 2
    assert value("dockyard_phase_duration_seconds_sum", phase="switch") == total + 1.25


def test_a_dead_letter_is_counted_by_service_and_reason_class() -> None:
    body = b'{"service":"builder","subject":"dockyard.cmd.deploy","reason":"undecodable: x",' \
           b'"payload":"garbage"}'
    before = value("dockyard_dead_letters_total", service="builder", reason="undecodable")
    metrics.observe_published("builder", subjects.dlq("builder"), body, None, 0.0)
    assert value("dockyard_dead_letters_total", service="builder",
                 reason="undecodable") == before + 1


def test_queue_depth_per_app_and_its_series_goes_when_the_queue_empties() -> None:
    app = f"q{uuid.uuid4().hex[:8]}"
    metrics.queue_depth(app, 3)
    assert metrics.REGISTRY.get_sample_value("dockyard_queue_depth", {"app": app}) == 3
    metrics.queue_depth(app, 1)
    assert metrics.REGISTRY.get_sample_value("dockyard_queue_depth", {"app": app}) == 1
    metrics.queue_depth(app, 0)
    assert metrics.REGISTRY.get_sample_value("dockyard_queue_depth", {"app": app}) is None
    metrics.queue_depth(app, 0)  # an app that never waited: nothing to remove, no error
    assert app not in generate_latest(metrics.REGISTRY).decode()


# ------------------------------------------------------------------ serving


async def test_the_registry_is_served_over_http_and_a_taken_address_is_one_clear_error() -> None:
    server = metrics.serve("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(server.url)
        assert response.status_code == 200
        assert "# TYPE dockyard_deploys_total counter" in response.text
        assert "# TYPE process_cpu_seconds_total counter" in response.text
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(metrics.MetricsError) as info:
            metrics.serve("127.0.0.1", port)
        assert str(info.value).startswith(
            f"cannot serve metrics on 127.0.0.1:{port} (DOCKYARD_METRICS_ADDR): ")
    finally:
        await server.stop()
    again = metrics.serve("127.0.0.1", port)  # stopped: a restart takes the same port
    await again.stop()


# ------------------------------------------------------------------ on a real nats-server


Handler = Callable[[BuildSucceeded], Awaitable[None]]


@contextlib.asynccontextmanager
async def consuming(nats_server: EmbeddedNats, app: str,
                    handler: Handler) -> AsyncIterator[tuple[str, NatsBroker]]:
    """A made-up service (the harness identity) taking BuildSucceeded of one app."""
    service = f"metrics-{uuid.uuid4().hex[:8]}"
    broker = make_broker(nats_server.url, service, ack_wait=5,
                         credentials=nats_server.credentials(TEST))
    durable = f"{service}-built"
    durable_subscriber(broker, subjects.event(app, "build", "succeeded"), durable,
                       subjects.STREAM_EVENTS, new_only=True)(handler)
    await broker.start()
    try:
        yield service, broker
    finally:
        await broker.stop()


async def until(check: Callable[[], bool], within: float = 15.0) -> None:
    """Wait for a condition, within a bound."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_republished_outcome_is_counted_once(bus: Bus) -> None:
    event = make(DeploySucceeded, app=f"r{uuid.uuid4().hex[:8]}", deployment_id=new_id())
    before = value("dockyard_deploys_total", status="succeeded")
    await publish(bus.broker, event)
    await publish(bus.broker, event)  # a redelivered step announcing its recorded outcome
    assert value("dockyard_deploys_total", status="succeeded") == before + 1


async def test_a_phase_is_timed_from_its_trigger_and_its_handler_is_in_flight_meanwhile(
        nats_server: EmbeddedNats, bus: Bus) -> None:
    app = f"p{uuid.uuid4().hex[:8]}"
    release = asyncio.Event()
    brokers: list[NatsBroker] = []

    async def handler(event: BuildSucceeded) -> None:
        await release.wait()
        await publish(brokers[0], make(ReleaseSucceeded, app=app, deployment_id=event.deployment_id,
                                       spec=SPEC))

    count = value("dockyard_phase_duration_seconds_count", phase="release")
    total = value("dockyard_phase_duration_seconds_sum", phase="release")
    async with consuming(nats_server, app, handler) as (service, broker):
        brokers.append(broker)
        assert value("dockyard_inflight_oldest_seconds", service=service) == 0
        await publish(bus.broker, make(BuildSucceeded, app=app, deployment_id=new_id(),
                                       spec=SPEC))
        await until(lambda: value("dockyard_inflight_oldest_seconds", service=service) > 0.3)
        release.set()
        await until(lambda: value("dockyard_phase_duration_seconds_count",
                                  phase="release") == count + 1)
        assert value("dockyard_phase_duration_seconds_sum", phase="release") - total > 0.3
        await until(lambda: value("dockyard_inflight_oldest_seconds", service=service) == 0)


async def test_redeliveries_and_dead_letters_are_counted_with_bounded_labels(
        nats_server: EmbeddedNats, bus: Bus) -> None:
    app = f"d{uuid.uuid4().hex[:8]}"
    deployment = new_id()
    tries: list[str] = []

    async def handler(event: BuildSucceeded) -> None:
        tries.append(event.deployment_id)
        if len(tries) == 1:
            raise RuntimeError("a passing failure: retried")

    pattern = "dockyard.evt.*.build.succeeded"
    async with consuming(nats_server, app, handler) as (service, _):
        await publish(bus.broker, make(BuildSucceeded, app=app, deployment_id=deployment,
                                       spec=SPEC))
        await until(lambda: len(tries) == 2)
        await until(lambda: value("faststream_received_processed_messages_total",
                                  app_name=service, broker="nats", handler=pattern,
                                  status="acked") == 1)
        assert value("dockyard_redeliveries_total", service=service, subject=pattern) == 1
        assert value("faststream_received_processed_messages_exceptions_total", app_name=service,
                     broker="nats", handler=pattern, exception_type="RuntimeError") == 1
        await bus.js.publish(subjects.event(app, "build", "succeeded"), b"garbage")
        await until(lambda: value("dockyard_dead_letters_total", service=service,
                                  reason="undecodable") == 1)
        scraped = generate_latest(metrics.REGISTRY).decode()
        assert app not in scraped and deployment not in scraped

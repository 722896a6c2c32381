"""End to end: the notifier service on a real nats-server, delivering to real local receivers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog
from nats.aio.msg import Msg
from standardwebhooks.webhooks import Webhook

from dockyard.bus.broker import publish
from dockyard.bus.embedded import EmbeddedNats
from dockyard.bus.emit import Emitter, UndeclaredEvent
from dockyard.bus.service import RunningService, start_service
from dockyard.client import DockyardClient
from dockyard.contract import codec, subjects
from dockyard.contract import events as contract_events
from dockyard.contract.events import (
    AnyEvent,
    DeployFailed,
    DeployQueued,
    DeploySucceeded,
    Event,
    NotificationAttempted,
    NotificationDelivered,
    NotificationFailed,
    new_id,
)
from dockyard.contract.sinks import Sink, Sinks, webhook_secret
from dockyard.notifier.app import SERVICE, NotifierService
from dockyard.notifier.signing import verify
from dockyard.settings import Settings, SettingsError
from tests import fakes
from tests.conftest import Bus
from tests.contract import samples
from tests.events import make

MakeReceiver = Callable[..., Awaitable[Any]]
Wait = Callable[..., Awaitable[None]]
SECRET = "whsec_ZG9ja3lhcmQtZTJlLXNlY3JldA=="


class Recorder:
    """Every event published for one app, as seen on the bus."""

    def __init__(self) -> None:
        self.events: list[AnyEvent] = []

    async def take(self, msg: Msg) -> None:
        self.events.append(codec.decode_event(msg.data))

    def of(self, cls: type[Event[Any]]) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


@pytest.fixture
async def notifier(nats_server: EmbeddedNats, tmp_path: Path) -> AsyncIterator[RunningService]:
    service = await start_service("notifier", Settings(data_dir=tmp_path, nats_url=nats_server.url,
                                                         nats_keys=nats_server.keys_dir))
    yield service
    await service.stop()


async def record(bus: Bus, app: str) -> Recorder:
    recorder = Recorder()
    await bus.nc.subscribe(subjects.app_events(app), cb=recorder.take)
    return recorder


def queued(app: str, dep: str) -> DeployQueued:
    return make(DeployQueued, app=app, deployment_id=dep)


def succeeded(app: str, dep: str) -> DeploySucceeded:
    return make(DeploySucceeded, app=app, deployment_id=dep, release=3)


async def test_webhook_gets_signed_events(notifier: RunningService, bus: Bus,
                                          client: DockyardClient, receiver_factory: MakeReceiver,
                                          wait_until: Wait) -> None:
    receiver = await receiver_factory()
    await client.add_sink("shop", Sink(name="ops", url=receiver.url, secret=SECRET))
    try:
        dep = new_id()
        sent: list[Event[Any]] = [queued("shop", dep), succeeded("shop", dep)]
        for event in sent:
            await publish(bus.broker, event)
        await wait_until(lambda: len(receiver.requests) == 2)
        for got in receiver.requests:
            verify(SECRET, got.headers, got.body)
        by_id = {r.headers["webhook-id"]: codec.decode_event(r.body) for r in receiver.requests}
        assert by_id == {e.id: e for e in sent}
    finally:
        await client.remove_sink("shop", "ops")


async def test_retries_until_the_third_attempt(notifier: RunningService, bus: Bus,
                                               client: DockyardClient,
                                               receiver_factory: MakeReceiver,
                                               wait_until: Wait) -> None:
    receiver = await receiver_factory(lambda n: 500 if n <= 2 else 200)
    app = f"shop-{new_id()[:6]}"
    await client.add_sink(app, Sink(name="flaky", url=receiver.url, secret=SECRET,
                                            backoff=0.2))
    recorder = await record(bus, app)
    event = queued(app, new_id())
    await publish(bus.broker, event)
    await wait_until(lambda: len(recorder.of(NotificationDelivered)) == 1)
    assert len(receiver.requests) == 3
    # Every retry carries the same webhook-id, so the receiver can deduplicate.
    assert {r.headers["webhook-id"] for r in receiver.requests} == {event.id}
    attempts = sorted((a.data.attempt, a.data.status_code)
                      for a in recorder.of(NotificationAttempted))
    assert attempts == [(1, 500), (2, 500), (3, 200)]
    [delivered] = recorder.of(NotificationDelivered)
    assert (delivered.data.sink, delivered.data.event_id, delivered.data.attempts) == (
        "flaky", event.id, 3)
    assert recorder.of(NotificationFailed) == []


async def test_gives_up_with_notification_failed(notifier: RunningService, bus: Bus,
                                                 client: DockyardClient,
                                                 receiver_factory: MakeReceiver,
                                                 wait_until: Wait) -> None:
    receiver = await receiver_factory(lambda n: 503)
    app = f"shop-{new_id()[:6]}"
    await client.add_sink(app, Sink(name="down", url=receiver.url, max_attempts=2,
                                            backoff=0.2))
    recorder = await record(bus, app)
    event = queued(app, new_id())
    await publish(bus.broker, event)
    await wait_until(lambda: len(recorder.of(NotificationFailed)) == 1)
    [failed] = recorder.of(NotificationFailed)
    assert (failed.data.sink, failed.data.event_id, failed.data.attempts,
            failed.data.reason) == ("down", event.id, 2, "HTTP 503")
    assert len(receiver.requests) == 2
    assert sorted(a.data.attempt for a in recorder.of(NotificationAttempted)) == [1, 2]
    # No further attempt follows once it gave up.
    with pytest.raises(AssertionError):
        await wait_until(lambda: len(receiver.requests) > 2, within=1.0)


async def test_slack_sink_gets_a_sentence(notifier: RunningService, bus: Bus,
                                          client: DockyardClient, receiver_factory: MakeReceiver,
                                          wait_until: Wait) -> None:
    receiver = await receiver_factory()
    app = f"shop-{new_id()[:6]}"
    await client.add_sink(app, Sink(name="chat", kind="slack", url=receiver.url,
                                            events=["deploy.failed"]))
    dep = new_id()
    await publish(bus.broker, queued(app, dep))  # not in the sink's patterns
    await publish(bus.broker, make(DeployFailed, app=app, deployment_id=dep,
                                            status="hook-error", reason="", exit_code=1))
    await wait_until(lambda: len(receiver.requests) == 1)
    body = msgspec.json.decode(receiver.requests[0].body)
    assert body == {"text": f":x: {app} deploy {dep[:8]} failed: hook-error (exit 1)"}
    assert "webhook-signature" not in receiver.requests[0].headers


async def test_global_sink_from_settings(nats_server: EmbeddedNats, tmp_path: Path, bus: Bus,
                                         receiver_factory: MakeReceiver,
                                         wait_until: Wait) -> None:
    receiver = await receiver_factory()
    settings = Settings(data_dir=tmp_path, nats_url=nats_server.url, nats_keys=nats_server.keys_dir,
                        webhook_url=receiver.url,
                        webhook_secret="plain-secret")
    service = await start_service("notifier", settings)
    try:
        app = f"any-{new_id()[:6]}"
        event = succeeded(app, new_id())
        await publish(bus.broker, event)
        await wait_until(lambda: len(receiver.requests) >= 1)
        [got] = [r for r in receiver.requests if r.headers["webhook-id"] == event.id]
        verify("plain-secret", got.headers, got.body)
        # The operator gives the receiver the whsec_ form, as `notify add` shows it.
        Webhook(webhook_secret("global", "plain-secret")).verify(got.body, got.headers)
    finally:
        await service.stop()


async def test_a_global_secret_that_cannot_sign_stops_the_notifier_at_start(
        nats_server: EmbeddedNats, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, nats_url=nats_server.url, nats_keys=nats_server.keys_dir,
                        webhook_url="http://127.0.0.1:9/hook", webhook_secret="whsec_dGVzdA")
    with pytest.raises(SettingsError, match="DOCKYARD_WEBHOOK_URL/SECRET: secret: what follows"
                                            " whsec_ is not valid base64"):
        await start_service("notifier", settings)


async def test_the_official_library_verifies_a_real_delivery(
        notifier: RunningService, bus: Bus, client: DockyardClient,
        receiver_factory: MakeReceiver, wait_until: Wait) -> None:
    """A plain secret given to `notify add` is stored in whsec_ form; that form, given to
    `standardwebhooks.Webhook` as its docs show, verifies what the notifier sent."""
    receiver = await receiver_factory()
    app = f"shop-{new_id()[:6]}"
    stored = (await client.add_sink(app, Sink(name="ops", url=receiver.url,
                                              secret="a plain secret"))).sinks[0].secret
    assert stored == webhook_secret("ops", "a plain secret")
    event = succeeded(app, new_id())
    await publish(bus.broker, event)
    await wait_until(lambda: len(receiver.requests) == 1)
    [got] = receiver.requests
    assert stored is not None
    assert Webhook(stored).verify(got.body, got.headers)["id"] == event.id


async def test_a_sink_that_cannot_sign_is_given_up_once_without_tracebacks_or_dead_letters(
        nats_server: EmbeddedNats, tmp_path: Path, bus: Bus, client: DockyardClient,
        receiver_factory: MakeReceiver, wait_until: Wait) -> None:
    """The reported attack: a stored `whsec_dGVzdA` made every event fail 20 times with long
    tracebacks and land in the dead letters, while `notify ls` showed nothing wrong."""
    receiver = await receiver_factory()
    app = f"shop-{new_id()[:6]}"
    # Written around `notify add` (which now refuses it), as a raw KV write could.
    bad = Sink(name="ops", url=receiver.url, secret="whsec_dGVzdA")
    await client.doors.sinks.change(app, lambda _: Sinks(sinks=[bad]))
    recorder = await record(bus, app)
    letters: list[Msg] = []

    async def take_letter(msg: Msg) -> None:
        letters.append(msg)

    await bus.nc.subscribe(subjects.dlq("notifier"), cb=take_letter)
    settings = Settings(data_dir=tmp_path, nats_url=nats_server.url,
                        nats_keys=nats_server.keys_dir)
    with structlog.testing.capture_logs() as logs:
        service = await start_service("notifier", settings)
        try:
            event = queued(app, new_id())
            await publish(bus.broker, event)
            await wait_until(lambda: len(recorder.of(NotificationFailed)) == 1)
            # A second event behind it is handled too: the first one is not stuck redelivering.
            later = succeeded(app, event.deployment_id)
            await publish(bus.broker, later)
            await wait_until(lambda: len(recorder.of(NotificationFailed)) == 2)
        finally:
            await service.stop()
    assert receiver.requests == [] and letters == []
    assert [a.data.attempt for a in recorder.of(NotificationAttempted)] == [1, 1]
    mine = [e for e in logs if e.get("sink") == "ops"]
    assert [(e["event"], e["log_level"]) for e in mine] == [
        ("notification failed, giving up", "warning")] * 2
    assert not any("exc_info" in e or e["log_level"] in ("error", "critical") for e in logs), logs
    [(_, status)] = await client.sink_statuses(app)
    assert (status.failures, status.given_up) == (2, 2)
    assert status.last_error is not None and "not valid base64" in status.last_error


# ---------------------------------------------------------------- the declaration's wiring


async def test_each_declared_event_reaches_its_handler_as_its_type() -> None:
    routed: dict[type[contract_events.Event[Any]], str] = {
        cls: "on_event" for cls in contract_events.EVENT_TYPES}
    sent = [samples.sample_event(cls) for cls in routed]
    calls = await fakes.delivered_on_test_broker(SERVICE, NotifierService, sent)
    assert calls == [(routed[type(event)], event) for event in sent]
    assert all(type(got) is type(event) for (_, got), event in zip(calls, sent, strict=True))
    # Commands, and the events no subscription names, reach nothing.
    others: list[contract_events.Message] = [
        contract_events.DeployRequested(deployment_id=contract_events.new_id(), app="shop"),
        contract_events.CancelRequested(deployment_id=contract_events.new_id(), app="shop"),
        *(samples.sample_event(cls) for cls in contract_events.EVENT_TYPES if cls not in routed),
    ]
    assert await fakes.delivered_on_test_broker(SERVICE, NotifierService, others) == []


def test_publishing_an_undeclared_event_type_is_refused() -> None:
    emitter = Emitter(fakes.offline_broker(SERVICE.name), SERVICE.name,
                      SERVICE.publishes)
    for cls in fakes.undeclared_events(SERVICE):
        fact = contract_events.Fact.of(cls, samples.sample_event(cls).data)
        with pytest.raises(UndeclaredEvent, match=cls.__name__):
            emitter.stamp(fact, app="shop", deployment_id="d", release=1)
    for cls in SERVICE.publishes:
        fact = contract_events.Fact.of(cls, samples.sample_event(cls).data)
        assert type(emitter.stamp(fact, app="shop", deployment_id="d", release=1)) is cls

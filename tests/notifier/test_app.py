"""End to end: the notifier service on a real nats-server, delivering to real local receivers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.msg import Msg

from dockyard.bus.broker import publish
from dockyard.bus.embedded import EmbeddedNats
from dockyard.bus.service import RunningService, start_service
from dockyard.bus.topology import Stores
from dockyard.notifier.signing import verify
from dockyard.notifier.sinks import Sink, add_sink, remove_sink
from dockyard.schemas import codec, subjects
from dockyard.schemas.events import (
    AnyEvent,
    DeployFailed,
    DeployQueued,
    DeploySucceeded,
    Event,
    NotificationAttempted,
    NotificationDelivered,
    NotificationFailed,
    event_id,
    new_id,
    type_of,
)
from dockyard.settings import Settings

MakeReceiver = Callable[..., Awaitable[Any]]
Wait = Callable[..., Awaitable[None]]
SECRET = "whsec_ZG9ja3lhcmQtZTJlLXNlY3JldA=="


class Recorder:
    """Every event published for one app, as seen on the bus."""

    def __init__(self) -> None:
        self.events: list[AnyEvent] = []

    async def take(self, msg: Msg) -> None:
        self.events.append(codec.decode_event(msg.data))

    def of(self, cls: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


@pytest.fixture
async def notifier(nats_server: EmbeddedNats, tmp_path: Path) -> AsyncIterator[RunningService]:
    service = await start_service("notifier", Settings(data_dir=tmp_path, nats_url=nats_server.url))
    yield service
    await service.stop()


async def record(stores: Stores, app: str) -> Recorder:
    recorder = Recorder()
    await stores.nc.subscribe(subjects.app_events(app), cb=recorder.take)
    return recorder


def queued(app: str, dep: str) -> DeployQueued:
    return DeployQueued(id=event_id(dep, type_of(DeployQueued)), source="test", subject=app,
                        deployment_id=dep)


def succeeded(app: str, dep: str) -> DeploySucceeded:
    return DeploySucceeded(id=event_id(dep, type_of(DeploySucceeded)), source="test", subject=app,
                           deployment_id=dep, release=3)


async def test_webhook_gets_signed_events(notifier: RunningService, stores: Stores,
                                          receiver_factory: MakeReceiver, wait_until: Wait) -> None:
    receiver = await receiver_factory()
    await add_sink(stores.notify, "shop", Sink(name="ops", url=receiver.url, secret=SECRET))
    try:
        dep = new_id()
        sent = [queued("shop", dep), succeeded("shop", dep)]
        for event in sent:
            await publish(notifier.ctx.broker, event)
        await wait_until(lambda: len(receiver.requests) == 2)
        for got in receiver.requests:
            verify(SECRET, got.headers, got.body)
        by_id = {r.headers["webhook-id"]: codec.decode_event(r.body) for r in receiver.requests}
        assert by_id == {e.id: e for e in sent}
    finally:
        await remove_sink(stores.notify, "shop", "ops")


async def test_retries_until_the_third_attempt(notifier: RunningService, stores: Stores,
                                               receiver_factory: MakeReceiver,
                                               wait_until: Wait) -> None:
    receiver = await receiver_factory(lambda n: 500 if n <= 2 else 200)
    app = f"shop-{new_id()[:6]}"
    await add_sink(stores.notify, app, Sink(name="flaky", url=receiver.url, secret=SECRET,
                                            backoff=0.2))
    recorder = await record(stores, app)
    event = queued(app, new_id())
    await publish(notifier.ctx.broker, event)
    await wait_until(lambda: len(recorder.of(NotificationDelivered)) == 1)
    assert len(receiver.requests) == 3
    # Every retry carries the same webhook-id, so the receiver can deduplicate.
    assert {r.headers["webhook-id"] for r in receiver.requests} == {event.id}
    attempts = sorted((a.attempt, a.status_code) for a in recorder.of(NotificationAttempted))
    assert attempts == [(1, 500), (2, 500), (3, 200)]
    [delivered] = recorder.of(NotificationDelivered)
    assert (delivered.sink, delivered.event_id, delivered.attempts) == ("flaky", event.id, 3)
    assert recorder.of(NotificationFailed) == []


async def test_gives_up_with_notification_failed(notifier: RunningService, stores: Stores,
                                                 receiver_factory: MakeReceiver,
                                                 wait_until: Wait) -> None:
    receiver = await receiver_factory(lambda n: 503)
    app = f"shop-{new_id()[:6]}"
    await add_sink(stores.notify, app, Sink(name="down", url=receiver.url, max_attempts=2,
                                            backoff=0.2))
    recorder = await record(stores, app)
    event = queued(app, new_id())
    await publish(notifier.ctx.broker, event)
    await wait_until(lambda: len(recorder.of(NotificationFailed)) == 1)
    [failed] = recorder.of(NotificationFailed)
    assert (failed.sink, failed.event_id, failed.attempts, failed.reason) == \
        ("down", event.id, 2, "HTTP 503")
    assert len(receiver.requests) == 2
    assert sorted(a.attempt for a in recorder.of(NotificationAttempted)) == [1, 2]
    # No further attempt follows once it gave up.
    with pytest.raises(AssertionError):
        await wait_until(lambda: len(receiver.requests) > 2, timeout=1.0)


async def test_slack_sink_gets_a_sentence(notifier: RunningService, stores: Stores,
                                          receiver_factory: MakeReceiver, wait_until: Wait) -> None:
    receiver = await receiver_factory()
    app = f"shop-{new_id()[:6]}"
    await add_sink(stores.notify, app, Sink(name="chat", kind="slack", url=receiver.url,
                                            events=["deploy.failed"]))
    dep = new_id()
    await publish(notifier.ctx.broker, queued(app, dep))  # not in the sink's patterns
    await publish(notifier.ctx.broker, DeployFailed(
        id=event_id(dep, type_of(DeployFailed)), source="test", subject=app, deployment_id=dep,
        status="hook-error", reason="", exit_code=1))
    await wait_until(lambda: len(receiver.requests) == 1)
    body = msgspec.json.decode(receiver.requests[0].body)
    assert body == {"text": f":x: {app} deploy {dep[:8]} failed: hook-error (exit 1)"}
    assert "webhook-signature" not in receiver.requests[0].headers


async def test_global_sink_from_settings(nats_server: EmbeddedNats, tmp_path: Path,
                                         receiver_factory: MakeReceiver,
                                         wait_until: Wait) -> None:
    receiver = await receiver_factory()
    settings = Settings(data_dir=tmp_path, nats_url=nats_server.url, webhook_url=receiver.url,
                        webhook_secret="plain-secret")
    service = await start_service("notifier", settings)
    try:
        app = f"any-{new_id()[:6]}"
        event = succeeded(app, new_id())
        await publish(service.ctx.broker, event)
        await wait_until(lambda: len(receiver.requests) >= 1)
        [got] = [r for r in receiver.requests if r.headers["webhook-id"] == event.id]
        verify("plain-secret", got.headers, got.body)
    finally:
        await service.stop()

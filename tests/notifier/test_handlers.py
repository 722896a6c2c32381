"""One event through the handler: real KV buckets, a real receiver, a clock the test moves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from dockyard.bus.topology import Stores
from dockyard.notifier.delivery import AttemptResult, DeliveryState
from dockyard.notifier.handlers import SOURCE, Notifier, handle, notification_events
from dockyard.notifier.sender import Sender
from dockyard.notifier.signing import verify
from dockyard.notifier.sinks import Sink, add_sink
from dockyard.schemas.events import (
    DeployQueued,
    Event,
    NotificationAttempted,
    NotificationDelivered,
    NotificationFailed,
    new_id,
)

MakeReceiver = Callable[..., Awaitable[Any]]


class Clock:
    """Time the test sets by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def queued(app: str) -> DeployQueued:
    dep = new_id()
    return DeployQueued(id=f"{dep}:deploy.queued", source="t", subject=app, deployment_id=dep,
                        release=2)


def test_attempt_events_as_values() -> None:
    event = DeployQueued(id="d1:deploy.queued", source="t", subject="shop", deployment_id="d1",
                         release=2)
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    env: dict[str, Any] = {"source": SOURCE, "subject": "shop", "deployment_id": "d1",
                           "release": 2, "time": at}
    fail = AttemptResult(status_code=500)
    pending = DeliveryState(attempts=1, next_at=5, last=fail)
    assert notification_events(event, "hook", pending, at) == [
        NotificationAttempted(id="d1:notification.attempted:d1:deploy.queued:hook:1", sink="hook",
                              event_id="d1:deploy.queued", attempt=1, status_code=500, **env)]
    ok = AttemptResult(status_code=204)
    assert notification_events(event, "hook", DeliveryState(attempts=2, status="delivered",
                                                            last=ok), at)[1:] == [
        NotificationDelivered(id="d1:notification.delivered:d1:deploy.queued:hook", sink="hook",
                              event_id="d1:deploy.queued", attempts=2, status_code=204, **env)]
    down = AttemptResult(error="ConnectError: refused")
    assert notification_events(event, "hook", DeliveryState(attempts=3, status="failed",
                                                            last=down), at)[1:] == [
        NotificationFailed(id="d1:notification.failed:d1:deploy.queued:hook", sink="hook",
                           event_id="d1:deploy.queued", attempts=3,
                           reason="ConnectError: refused", **env)]


@pytest.fixture
async def sender() -> Any:
    s = Sender(httpx.AsyncClient())
    yield s
    await s.close()


async def test_retries_only_when_due_and_only_undelivered_sinks(
        stores: Stores, sender: Sender, receiver_factory: MakeReceiver) -> None:
    flaky = await receiver_factory(lambda n: 500 if n == 1 else 200)
    steady = await receiver_factory()
    app = f"h-{new_id()[:8]}"
    await add_sink(stores.notify, app, Sink(name="flaky", url=flaky.url, secret="s1", backoff=4.0))
    published: list[Event] = []

    async def collect(event: Event) -> None:
        published.append(event)

    clock = Clock()
    n = Notifier(notify=stores.notify, runs=stores.runs, sender=sender, publish=collect,
                 global_sinks=[Sink(name="global", url=steady.url)], clock=clock)
    event = queued(app)

    assert await handle(n, event) == 4.0
    assert len(flaky.requests) == 1 and len(steady.requests) == 1
    clock.now += 1
    # Redelivered early (e.g. another instance): nothing is due, come back in the remaining 3 s.
    assert await handle(n, event) == 3.0
    assert len(flaky.requests) == 1 and len(steady.requests) == 1
    clock.now += 3
    assert await handle(n, event) is None
    assert len(flaky.requests) == 2 and len(steady.requests) == 1
    for got in flaky.requests:
        verify("s1", got.headers, got.body)
    # Once all is delivered, a further redelivery sends nothing.
    assert await handle(n, event) is None
    assert len(flaky.requests) == 2

    summary = sorted((type(e).__name__, getattr(e, "sink", None), getattr(e, "attempt", None),
                      getattr(e, "status_code", None)) for e in published)
    assert summary == [
        ("NotificationAttempted", "flaky", 1, 500),
        ("NotificationAttempted", "flaky", 2, 200),
        ("NotificationAttempted", "global", 1, 200),
        ("NotificationDelivered", "flaky", None, 200),
        ("NotificationDelivered", "global", None, 200),
    ]


async def test_gives_up_after_max_attempts(stores: Stores, sender: Sender,
                                           receiver_factory: MakeReceiver) -> None:
    down = await receiver_factory(lambda n: 502)
    app = f"h-{new_id()[:8]}"
    await add_sink(stores.notify, app, Sink(name="down", url=down.url, max_attempts=2, backoff=1.0))
    published: list[Event] = []

    async def collect(event: Event) -> None:
        published.append(event)

    clock = Clock()
    n = Notifier(notify=stores.notify, runs=stores.runs, sender=sender, publish=collect,
                 clock=clock)
    event = queued(app)
    assert await handle(n, event) == 1.0
    clock.now += 1
    assert await handle(n, event) is None
    assert await handle(n, event) is None
    assert len(down.requests) == 2
    [failed] = [e for e in published if isinstance(e, NotificationFailed)]
    assert (failed.sink, failed.attempts, failed.reason, failed.event_id) == \
        ("down", 2, "HTTP 502", event.id)


async def test_notification_events_and_unmatched_types_are_not_sent(
        stores: Stores, sender: Sender, receiver_factory: MakeReceiver) -> None:
    receiver = await receiver_factory()
    app = f"h-{new_id()[:8]}"
    await add_sink(stores.notify, app, Sink(name="all", url=receiver.url, events=["*"]))
    n = Notifier(notify=stores.notify, runs=stores.runs, sender=sender, publish=_drop)
    loop = NotificationDelivered(id="x:notification.delivered", source="t", subject=app,
                                 deployment_id="x", sink="all", event_id="y", attempts=1,
                                 status_code=200)
    assert await handle(n, loop) is None
    assert receiver.requests == []
    quiet = Notifier(notify=stores.notify, runs=stores.runs, sender=sender, publish=_drop,
                     global_sinks=[Sink(name="global", url=receiver.url)])
    assert await handle(quiet, queued("no-sinks-app")) is None
    assert len(receiver.requests) == 1


async def _drop(event: Event) -> None:
    return None

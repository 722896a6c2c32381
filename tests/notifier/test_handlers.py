"""One event through the handler: real KV buckets, a real receiver, a clock the test moves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from dockyard.client import DockyardClient
from dockyard.contract.events import (
    DeployQueued,
    DestroySucceeded,
    Event,
    NotificationAttemptData,
    NotificationAttempted,
    NotificationDelivered,
    NotificationDeliveredData,
    NotificationFailed,
    NotificationFailedData,
    new_id,
    schema_uri,
)
from dockyard.contract.sinks import Sink, Sinks, SinkStatus
from dockyard.contract.state import AttemptResult, DeliveryState
from dockyard.notifier.app import NotifierDoors, NotifierService
from dockyard.notifier.handlers import SOURCE, Notifier, handle, notification_events
from dockyard.notifier.sender import Sender
from dockyard.notifier.signing import verify
from dockyard.state.deliveries import Conflict
from tests.conftest import Bus
from tests.events import make
from tests.fakes import FakeDeliveries, FakeMessage, FakeSinks

MakeReceiver = Callable[..., Awaitable[Any]]


class Clock:
    """Time the test sets by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def queued(app: str) -> DeployQueued:
    return make(DeployQueued, source="t", app=app, deployment_id=new_id(), release=2)


def test_attempt_events_as_values() -> None:
    event = make(DeployQueued, source="t", app="shop", deployment_id="d1", release=2)
    assert event.id == "d1:deploy.queued"
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    env: dict[str, Any] = {"source": SOURCE, "subject": "shop", "deployment_id": "d1",
                           "release": 2, "time": at}
    fail = AttemptResult(status_code=500)
    pending = DeliveryState(attempts=1, next_at=5, last=fail)
    assert notification_events(event, "hook", pending, at) == [
        NotificationAttempted(id="d1:notification.attempted:d1:deploy.queued:hook:1",
                              dataschema=schema_uri("dockyard.notification.attempted"),
                              data=NotificationAttemptData(sink="hook",
                                                           event_id="d1:deploy.queued",
                                                           attempt=1, status_code=500), **env)]
    ok = AttemptResult(status_code=204)
    assert notification_events(event, "hook", DeliveryState(attempts=2, status="delivered",
                                                            last=ok), at)[1:] == [
        NotificationDelivered(id="d1:notification.delivered:d1:deploy.queued:hook",
                              dataschema=schema_uri("dockyard.notification.delivered"),
                              data=NotificationDeliveredData(sink="hook",
                                                             event_id="d1:deploy.queued",
                                                             attempts=2, status_code=204), **env)]
    down = AttemptResult(error="ConnectError: refused")
    assert notification_events(event, "hook", DeliveryState(attempts=3, status="failed",
                                                            last=down), at)[1:] == [
        NotificationFailed(id="d1:notification.failed:d1:deploy.queued:hook",
                           dataschema=schema_uri("dockyard.notification.failed"),
                           data=NotificationFailedData(sink="hook", event_id="d1:deploy.queued",
                                                       attempts=3,
                                                       reason="ConnectError: refused"), **env)]


@pytest.fixture
async def sender() -> Any:
    s = Sender(httpx.AsyncClient())
    yield s
    await s.close()


async def doors(bus: Bus) -> NotifierDoors:
    """The notifier's doors, as the service opens them."""
    return await bus.doors(NotifierDoors, "notifier")


async def test_retries_only_when_due_and_only_undelivered_sinks(
        bus: Bus, client: DockyardClient, sender: Sender,
        receiver_factory: MakeReceiver) -> None:
    flaky = await receiver_factory(lambda n: 500 if n == 1 else 200)
    steady = await receiver_factory()
    app = f"h-{new_id()[:8]}"
    await client.add_sink(app, Sink(name="flaky", url=flaky.url, secret="s1", backoff=4.0))
    published: list[Event[Any]] = []

    async def collect(event: Event[Any]) -> None:
        published.append(event)

    clock = Clock()
    d = await doors(bus)
    n = Notifier(sinks=d.sinks, deliveries=d.deliveries, sender=sender, publish=collect,
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

    summary = sorted((type(e).__name__, getattr(e.data, "sink", None),
                      getattr(e.data, "attempt", None), getattr(e.data, "status_code", None))
                     for e in published)
    assert summary == [
        ("NotificationAttempted", "flaky", 1, 500),
        ("NotificationAttempted", "flaky", 2, 200),
        ("NotificationAttempted", "global", 1, 200),
        ("NotificationDelivered", "flaky", None, 200),
        ("NotificationDelivered", "global", None, 200),
    ]


async def test_gives_up_after_max_attempts(bus: Bus, client: DockyardClient, sender: Sender,
                                           receiver_factory: MakeReceiver) -> None:
    down = await receiver_factory(lambda n: 502)
    app = f"h-{new_id()[:8]}"
    await client.add_sink(app, Sink(name="down", url=down.url, max_attempts=2, backoff=1.0))
    published: list[Event[Any]] = []

    async def collect(event: Event[Any]) -> None:
        published.append(event)

    clock = Clock()
    d = await doors(bus)
    n = Notifier(sinks=d.sinks, deliveries=d.deliveries, sender=sender, publish=collect,
                 clock=clock)
    event = queued(app)
    assert await handle(n, event) == 1.0
    clock.now += 1
    assert await handle(n, event) is None
    assert await handle(n, event) is None
    assert len(down.requests) == 2
    [failed] = [e for e in published if isinstance(e, NotificationFailed)]
    assert (failed.data.sink, failed.data.attempts, failed.data.reason,
            failed.data.event_id) == ("down", 2, "HTTP 502", event.id)


async def test_notification_events_and_unmatched_types_are_not_sent(
        bus: Bus, client: DockyardClient, sender: Sender,
        receiver_factory: MakeReceiver) -> None:
    receiver = await receiver_factory()
    app = f"h-{new_id()[:8]}"
    await client.add_sink(app, Sink(name="all", url=receiver.url, events=["*"]))
    d = await doors(bus)
    n = Notifier(sinks=d.sinks, deliveries=d.deliveries, sender=sender, publish=_drop)
    loop = make(NotificationDelivered, source="t", app=app, deployment_id="x", sink="all",
                event_id="y", attempts=1, status_code=200)
    assert await handle(n, loop) is None
    assert receiver.requests == []
    quiet = Notifier(sinks=d.sinks, deliveries=d.deliveries, sender=sender, publish=_drop,
                     global_sinks=[Sink(name="global", url=receiver.url)])
    assert await handle(quiet, queued("no-sinks-app")) is None
    assert len(receiver.requests) == 1


async def _drop(event: Event[Any]) -> None:
    return None


async def test_a_stored_sink_that_cannot_sign_fails_once_without_raising(
        bus: Bus, client: DockyardClient, sender: Sender,
        receiver_factory: MakeReceiver) -> None:
    """The reported attack: a `whsec_dGVzdA` secret stored around `notify add` (a raw KV write,
    or before secrets were checked) made every event raise, 20 redeliveries, a dead letter."""
    receiver = await receiver_factory()
    app = f"h-{new_id()[:8]}"
    bad = Sink(name="ops", url=receiver.url, secret="whsec_dGVzdA")
    await client.doors.sinks.change(app, lambda _: Sinks(sinks=[bad]))
    published: list[Event[Any]] = []

    async def collect(event: Event[Any]) -> None:
        published.append(event)

    d = await doors(bus)
    n = Notifier(sinks=d.sinks, deliveries=d.deliveries, sender=sender, publish=collect,
                 clock=Clock())
    event = queued(app)
    assert await handle(n, event) is None  # nothing to come back for
    assert await handle(n, event) is None  # a redelivery tries nothing more
    assert receiver.requests == []
    [failed] = [e for e in published if isinstance(e, NotificationFailed)]
    assert (failed.data.sink, failed.data.attempts) == ("ops", 1)
    assert failed.data.reason == (
        "the sink cannot be used: secret: what follows whsec_ is not valid base64 (Incorrect"
        " padding; add the '=' padding); to use a plain string as the key, give it without whsec_")
    [(sink, status)] = await client.sink_statuses(app)
    assert sink.name == "ops"
    assert (status.failures, status.given_up, status.last_error) == (1, 1, failed.data.reason)


async def test_sink_status_records_failures_until_a_delivery(
        bus: Bus, client: DockyardClient, sender: Sender,
        receiver_factory: MakeReceiver) -> None:
    flaky = await receiver_factory(lambda n: 500 if n <= 2 else 204)
    app = f"h-{new_id()[:8]}"
    await client.add_sink(app, Sink(name="flaky", url=flaky.url, max_attempts=2, backoff=1.0))
    clock = Clock()
    d = await doors(bus)
    n = Notifier(sinks=d.sinks, deliveries=d.deliveries, sender=sender, publish=_drop,
                 clock=clock)
    assert [s for _, s in await client.sink_statuses(app)] == [SinkStatus()]

    first = queued(app)
    assert await handle(n, first) == 1.0
    clock.now += 1
    assert await handle(n, first) is None  # gave up after 2 attempts
    [(_, status)] = await client.sink_statuses(app)
    failed_at = datetime.fromtimestamp(clock.now, UTC)
    assert status == SinkStatus(failures=2, given_up=1, last_error="HTTP 500",
                                last_failure_at=failed_at)

    clock.now += 5
    assert await handle(n, queued(app)) is None  # the sink answers again
    [(_, status)] = await client.sink_statuses(app)
    assert status == SinkStatus(last_delivered_at=datetime.fromtimestamp(clock.now, UTC))


# ---------------------------------------------------------------- on in-memory doors


class Posts:
    """An HTTP transport (httpx's MockTransport) answering each POST with the next status."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.urls: list[str] = []

    def sender(self) -> Sender:
        return Sender(httpx.AsyncClient(transport=httpx.MockTransport(self.answer)))

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        return httpx.Response(self.statuses.pop(0) if self.statuses else 200)


async def test_an_event_about_an_invalid_app_name_reaches_only_the_global_sinks() -> None:
    posts = Posts()
    sinks = FakeSinks({"Bad_App": Sinks(sinks=[Sink(name="own", url="http://own.test/x")])})
    published: list[Event[Any]] = []

    async def collect(event: Event[Any]) -> None:
        published.append(event)

    n = Notifier(sinks=sinks, deliveries=FakeDeliveries(), sender=posts.sender(),
                 publish=collect, global_sinks=[Sink(name="global", url="http://all.test/x")])
    assert await handle(n, make(DeployQueued, app="Bad_App")) is None
    assert posts.urls == ["http://all.test/x"]
    assert [type(e) for e in published] == [NotificationAttempted, NotificationDelivered]


async def test_a_destroyed_apps_sink_statuses_are_forgotten() -> None:
    """A new app of the same name must not inherit the old sinks' failure counts."""
    deliveries = FakeDeliveries()
    deliveries.sink_statuses[("shop", "ops")] = SinkStatus(failures=3)
    deliveries.sink_statuses[("other", "ops")] = SinkStatus(failures=1)

    async def collect(event: Event[Any]) -> None:
        del event

    n = Notifier(sinks=FakeSinks(), deliveries=deliveries, sender=Posts().sender(),
                 publish=collect, global_sinks=[])
    assert await handle(n, make(DestroySucceeded, app="shop")) is None
    assert deliveries.sink_statuses == {("other", "ops"): SinkStatus(failures=1)}


class RacedDeliveries(FakeDeliveries):
    """Another notifier instance records its attempt between our load and our save."""

    async def save(self, key: str, state: DeliveryState, revision: int) -> None:
        theirs, current = self.states.get(key, (DeliveryState(), 0))
        self.states[key] = (DeliveryState(attempts=theirs.attempts + 1), current + 1)
        await super().save(key, state, revision)


async def test_a_concurrent_attempt_by_another_instance_is_a_conflict_and_publishes_nothing(
) -> None:
    posts = Posts()
    published: list[Event[Any]] = []

    async def collect(event: Event[Any]) -> None:
        published.append(event)

    n = Notifier(sinks=FakeSinks(), deliveries=RacedDeliveries(), sender=posts.sender(),
                 publish=collect, global_sinks=[Sink(name="global", url="http://all.test/x")])
    with pytest.raises(Conflict):
        await handle(n, make(DeployQueued, app="shop"))
    assert published == []


async def test_the_service_comes_back_when_a_retry_is_due_and_not_after_the_last() -> None:
    posts = Posts(500, 200)
    clock = Clock()
    sink = Sink(name="global", url="http://all.test/x", backoff=3.0)
    service = NotifierService(Notifier(sinks=FakeSinks(), deliveries=FakeDeliveries(),
                                       sender=posts.sender(), publish=_drop,
                                       global_sinks=[sink], clock=clock))
    event = make(DeployQueued, app="shop")
    first = FakeMessage()
    await service.on_event(event, first.as_message())
    assert first.nacks == [3.0]
    clock.now += 3
    second = FakeMessage()
    await service.on_event(event, second.as_message())
    assert second.nacks == []
    assert len(posts.urls) == 2


async def test_an_event_no_sink_asks_for_is_not_sent() -> None:
    posts = Posts()
    sinks = FakeSinks({"shop": Sinks(sinks=[Sink(name="own", url="http://own.test/x",
                                                 events=["deploy.failed"])])})
    n = Notifier(sinks=sinks, deliveries=FakeDeliveries(), sender=posts.sender(), publish=_drop)
    assert await handle(n, make(DeployQueued, app="shop")) is None
    assert posts.urls == []

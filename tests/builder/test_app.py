"""The builder's declaration, wired on FastStream's TestNatsBroker; its dead-letter paths."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from faststream.nats import JStream, NatsBroker, TestNatsBroker
from faststream.nats.annotations import NatsMessage

from dockyard.builder.app import SERVICE, BuilderDoors
from dockyard.builder.handlers import Builder
from dockyard.bus import broker as bus_broker
from dockyard.bus.broker import DeadLetter
from dockyard.bus.emit import Emitter, UndeclaredEvent
from dockyard.contract import codec, subjects
from dockyard.contract.events import (
    BuildStarted,
    CancelRequested,
    DeployFailed,
    DeployQueued,
    DeployRequested,
    Fact,
    new_id,
)
from dockyard.contract.state import Queue
from tests import fakes
from tests.contract.samples import sample_event
from tests.events import data_type
from tests.fakes import (
    FakeCancels,
    FakeConfig,
    FakeHooks,
    FakeInFlight,
    FakeLocks,
    FakeMaintenance,
    FakeManifests,
    FakeNats,
    FakeQueue,
    FakeReleases,
    FakeRoutes,
    FakeRuntime,
    FakeRuntimes,
    FakeSinks,
    FakeSources,
    FakeSteps,
    RecordingBroker,
    delivered_on_test_broker,
    service_context,
    subscribe_declared,
    undeclared_events,
)


async def test_each_request_reaches_its_handler_as_its_type() -> None:
    deploy = DeployRequested(deployment_id=new_id(), app="shop", source_object="shop/x.tar.gz")
    cancel = CancelRequested(deployment_id=new_id(), app="shop", reason="why not")
    others = [sample_event(cls) for cls in (DeployQueued, BuildStarted, DeployFailed)]

    calls = await delivered_on_test_broker(SERVICE, Builder, [deploy, cancel, *others])

    # Every event also reaches the watchdog's record keeping, as its own type.
    assert calls == [("on_deploy", deploy), ("on_cancel", cancel),
                     *(("on_event", e) for e in others)]
    assert isinstance(calls[0][1], DeployRequested) and isinstance(calls[1][1], CancelRequested)
    assert [type(e) for _, e in calls[2:]] == [DeployQueued, BuildStarted, DeployFailed]


def test_publishing_an_undeclared_event_type_is_refused() -> None:
    emitter = Emitter(fakes.offline_broker(SERVICE.name), SERVICE.name,
                      SERVICE.publishes)
    assert undeclared_events(SERVICE)
    for cls in undeclared_events(SERVICE):
        fact = Fact.of(cls, sample_event(cls).data)
        with pytest.raises(UndeclaredEvent, match=f"dockyard/builder does not declare "
                                                  f"{cls.__name__}"):
            emitter.stamp(fact, app="shop", deployment_id="d", release=1)
    for cls in SERVICE.publishes:
        data = sample_event(cls).data
        assert isinstance(data, data_type(cls))
        assert type(emitter.stamp(Fact.of(cls, data), app="shop", deployment_id="d",
                                  release=1)) is cls


# ---------------------------------------------------------------- dead letters


class BrokenQueue(FakeQueue):
    """A queue door whose bus is down."""

    async def change(self, app: str, fn: Callable[[Queue], Queue]) -> tuple[Queue, Queue]:
        raise ConnectionError("bus down")


def builder(queue: FakeQueue) -> Builder:
    doors = BuilderDoors(queue=queue, locks=FakeLocks(), releases=FakeReleases(),
                         steps=FakeSteps(), cancels=FakeCancels(), hooks=FakeHooks(),
                         manifests=FakeManifests(), sources=FakeSources(), routes=FakeRoutes(),
                         inflight=FakeInFlight(), config=FakeConfig(), sinks=FakeSinks(),
                         maintenance=FakeMaintenance())
    return Builder(service_context(SERVICE, RecordingBroker(), FakeNats()), doors,
                   FakeRuntimes(FakeRuntime()))


def ack_subject(delivered: int) -> str:
    """The reply subject JetStream gives a message on its n-th delivery (it carries the count)."""
    return (f"$JS.ACK.{subjects.STREAM_COMMANDS}.builder-deploy.{delivered}.7.7."
            "1767225600000000000.0")


async def dead_letters(handlers: Builder, body: bytes, delivered: int = 1) -> list[DeadLetter]:
    """What reaches the builder's dead letters when `body` is delivered for the n-th time."""
    broker: NatsBroker = fakes.offline_broker(SERVICE.name)
    subscribe_declared(broker, SERVICE, handlers)
    # Raw bodies, decoded after: a failing subscriber would be dead-lettered to itself forever.
    bodies: list[bytes] = []

    @broker.subscriber(subjects.dlq(SERVICE.name),
                       stream=JStream(subjects.STREAM_DLQ, declare=False))
    async def dead(msg: NatsMessage) -> None:
        bodies.append(msg.body)

    async with TestNatsBroker(broker) as test_broker:
        await test_broker.publish(body, subjects.CMD_DEPLOY, stream=subjects.STREAM_COMMANDS,
                                  headers={"content-type": "application/json"},
                                  reply_to=ack_subject(delivered))
    return [codec.decode_as(body, DeadLetter) for body in bodies]


async def test_a_rejected_request_goes_to_the_dead_letters_with_the_reason() -> None:
    body = codec.encode(DeployRequested(deployment_id=new_id(), app="Bad_App"))
    [letter] = await dead_letters(builder(FakeQueue()), body)
    assert letter.service == "builder" and letter.subject == subjects.CMD_DEPLOY
    assert letter.reason.startswith("rejected: invalid app name 'Bad_App'")
    assert letter.payload == body.decode()


async def test_an_undecodable_request_goes_to_the_dead_letters() -> None:
    [letter] = await dead_letters(builder(FakeQueue()), b'{"type": "dockyard.cmd.deploy"}')
    assert letter.reason.startswith("undecodable: Object missing required field")


async def test_a_request_that_keeps_failing_goes_to_the_dead_letters_at_max_deliveries() -> None:
    body = codec.encode(DeployRequested(deployment_id=new_id(), app="shop"))
    broken = builder(BrokenQueue())
    # Before the limit it is only retried later (nothing dead-lettered)...
    assert await dead_letters(broken, body, delivered=bus_broker.MAX_DELIVER - 1) == []
    # ...at the limit it goes, with why it failed.
    [letter] = await dead_letters(broken, body, delivered=bus_broker.MAX_DELIVER)
    assert letter.reason == (f"failed {bus_broker.MAX_DELIVER} times: "
                             "ConnectionError('bus down')")
    assert letter.deliveries == bus_broker.MAX_DELIVER

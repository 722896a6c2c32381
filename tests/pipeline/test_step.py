"""A deployment's step runs once: recorded before it is published, published again after; an
outcome too big for the bus is refused once, before it is recorded."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from dockyard.bus.broker import PayloadTooLarge, Rejected
from dockyard.bus.emit import Emitter
from dockyard.contract.events import (
    BuildSucceeded,
    Event,
    Fact,
    HookFailed,
    SpecData,
    new_id,
    stamp,
)
from dockyard.pipeline.step import Steps, working
from tests.contract.samples import SPEC
from tests.events import make
from tests.fakes import Crash, FakeMessage, FakeSteps, RecordingBroker

# Deployment ids in their one accepted form (32 hex digits), as the broker checks them.
DEP, OTHER = "d1" + "0" * 30, "d2" + "0" * 30


def setup(beat: float = 10.0) -> tuple[Steps, FakeSteps, RecordingBroker]:
    records, broker = FakeSteps(), RecordingBroker()
    emitter = Emitter(broker, "builder", (BuildSucceeded,))  # type: ignore[arg-type]
    return Steps(records, emitter, beat), records, broker


def outcome() -> Event[Any]:
    return stamp(Fact.of(BuildSucceeded, SpecData(spec=SPEC)), source="dockyard/builder",
                 app="shop", deployment_id=DEP, release=1)


async def test_the_body_runs_once_and_its_outcome_is_published_each_time() -> None:
    steps, records, broker = setup()
    runs: list[int] = []

    async def body() -> Event[Any]:
        runs.append(1)
        return outcome()

    first = await steps.once(DEP, "build", FakeMessage(), body)
    again = await steps.once(DEP, "build", FakeMessage(), body)

    assert runs == [1]
    assert first == again
    assert broker.events == [first, first]
    assert await records.outcome(DEP, "build") == first


async def test_steps_are_recorded_per_deployment_and_step() -> None:
    steps, records, _ = setup()
    await steps.once(DEP, "build", FakeMessage(), _outcome)
    assert await records.outcome(DEP, "other") is None
    assert await records.outcome(OTHER, "build") is None


async def _outcome() -> Event[Any]:
    return outcome()


async def test_a_failing_body_records_and_publishes_nothing() -> None:
    steps, records, broker = setup()

    async def body() -> Event[Any]:
        raise OSError("engine down")

    with pytest.raises(OSError, match="engine down"):
        await steps.once(DEP, "build", FakeMessage(), body)
    assert records.records == {} and broker.published == []


async def test_the_outcome_is_recorded_before_it_is_published() -> None:
    steps, records, broker = setup()
    broker.crash_on = {BuildSucceeded}
    with pytest.raises(Crash):
        await steps.once(DEP, "build", FakeMessage(), _outcome)
    assert await records.outcome(DEP, "build") is not None
    assert broker.published == []


async def test_in_progress_acks_are_sent_while_the_body_runs_and_stop_after() -> None:
    msg = FakeMessage()
    before = asyncio.all_tasks()
    async with working(msg, every=0.01):
        assert len(asyncio.all_tasks() - before) == 1  # the beating task
        deadline = asyncio.get_running_loop().time() + 10
        while msg.beats < 3:
            assert asyncio.get_running_loop().time() < deadline, "no in-progress ack came"
            await asyncio.sleep(0.005)
    # The beats stopped with the block: their task is over, not left running.
    assert asyncio.all_tasks() - before == set()


class FailingAcks(FakeMessage):
    """A message whose in-progress acks fail (the connection is gone)."""

    async def in_progress(self) -> None:
        self.beats += 1
        raise ConnectionError("gone")


async def test_a_lost_in_progress_ack_does_not_fail_the_step() -> None:
    steps, _, broker = setup(beat=0.01)
    msg = FailingAcks()

    async def slow() -> Event[Any]:
        deadline = asyncio.get_running_loop().time() + 10
        while msg.beats < 2:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.005)
        return outcome()

    await steps.once(DEP, "build", msg, slow)
    assert len(broker.events) == 1


class SmallBus:
    """A broker whose server takes 4 KiB a message, recording what is published."""

    connection = SimpleNamespace(max_payload=4096)

    def __init__(self) -> None:
        self.published: list[bytes] = []

    async def publish(self, body: bytes, subject: str, **_: Any) -> None:
        self.published.append(body)


class Msg:
    async def in_progress(self) -> None:
        return None


async def test_an_outcome_too_big_for_the_bus_is_refused_not_recorded() -> None:
    bus, records = SmallBus(), FakeSteps()
    steps = Steps(records, Emitter(bus, "hook-runner", (HookFailed,)), beat=60)  # type: ignore[arg-type]
    dep = new_id()
    runs = 0

    async def body() -> Event[Any]:
        nonlocal runs
        runs += 1
        return make(HookFailed, deployment_id=dep, status="hook-error", reason="x" * 10_000)

    with pytest.raises(PayloadTooLarge, match="dockyard.hook.failed of .* bytes exceeds the "
                                              "bus's 4096-byte payload limit") as info:
        await steps.once(dep, "postdeploy-phase", Msg(), body)
    assert isinstance(info.value, Rejected)  # the broker dead-letters it once, no retry
    assert runs == 1 and records.records == {} and bus.published == []

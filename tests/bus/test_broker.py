"""The broker: names checked before any handler (a bad one dead-lettered once), sizes before
any publish."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from faststream.nats import NatsBroker

from dockyard.bus.broker import (
    DeadLetter,
    PayloadTooLarge,
    SubjectMismatch,
    check_names,
    check_size,
    durable_subscriber,
    make_broker,
    publish,
)
from dockyard.bus.embedded import EmbeddedNats
from dockyard.bus.emit import publish_patiently
from dockyard.contract import codec, subjects
from dockyard.contract.events import (
    CancelRequested,
    CommandFinished,
    DeployQueued,
    DeployRequested,
    RunRequested,
    new_id,
)
from dockyard.contract.names import InvalidAppName, InvalidDeploymentId, InvalidName
from tests.conftest import TEST, Bus
from tests.events import make

GOOD = "0123456789abcdef0123456789abcdef"
BAD_APPS = ["x>", "shop\n", "a" * 64, "shop.other", "*", "", "Shop", "../../etc"]
BAD_IDS = ["x>", "../../etc", GOOD + "\n", "d1", "*", ""]


@pytest.mark.parametrize("app", BAD_APPS)
def test_a_command_with_a_bad_app_name_is_refused(app: str) -> None:
    with pytest.raises(InvalidAppName):
        check_names(subjects.CMD_DEPLOY, DeployRequested(deployment_id=GOOD, app=app))


@pytest.mark.parametrize("dep", BAD_IDS)
def test_a_command_with_a_bad_deployment_id_is_refused(dep: str) -> None:
    with pytest.raises(InvalidDeploymentId):
        check_names(subjects.CMD_CANCEL, CancelRequested(deployment_id=dep, app="shop"))


@pytest.mark.parametrize("app", BAD_APPS)
def test_a_run_request_with_a_bad_app_name_is_refused(app: str) -> None:
    with pytest.raises(InvalidAppName):
        check_names(subjects.CMD_RUN, RunRequested(run_id=GOOD, app=app, command="ls"))


@pytest.mark.parametrize("run_id", BAD_IDS)
def test_a_run_request_with_a_bad_run_id_is_refused(run_id: str) -> None:
    with pytest.raises(InvalidDeploymentId):
        check_names(subjects.CMD_RUN, RunRequested(run_id=run_id, app="shop", command="ls"))


@pytest.mark.parametrize("app", BAD_APPS)
def test_an_event_with_a_bad_app_name_is_refused(app: str) -> None:
    event = make(DeployQueued, app=app, deployment_id=GOOD)
    with pytest.raises(InvalidAppName):
        check_names(f"dockyard.evt.{app}.deploy.queued", event)


@pytest.mark.parametrize("dep", BAD_IDS)
def test_an_event_with_a_bad_deployment_id_is_refused(dep: str) -> None:
    event = make(DeployQueued, app="shop", deployment_id=dep)
    with pytest.raises(InvalidDeploymentId):
        check_names(event.nats_subject(), event)


def test_an_event_on_another_apps_subject_is_refused() -> None:
    event = make(DeployQueued, app="shop", deployment_id=GOOD)
    with pytest.raises(SubjectMismatch, match="'dockyard.evt.other.deploy.queued': does not "
                                              "name the event's app 'shop'"):
        check_names("dockyard.evt.other.deploy.queued", event)


def test_good_names_pass() -> None:
    event = make(DeployQueued, app="shop", deployment_id=GOOD)
    assert check_names(event.nats_subject(), event) is event
    cmd = DeployRequested(deployment_id=GOOD, app="my-shop-2")
    assert check_names(subjects.CMD_DEPLOY, cmd) is cmd


class _Connection:
    max_payload = 4096


class _Broker:
    connection = _Connection()


def test_check_size_uses_the_servers_limit() -> None:
    event = make(CommandFinished, app="shop", deployment_id=GOOD, hook_phase="postdeploy",
                 label="x", index=1, total=1, command="x", exit_code=0, duration=1.0,
                 tail=["y" * 5000])
    body = codec.encode(event)
    with pytest.raises(PayloadTooLarge) as info:
        check_size(_Broker(), event, body)  # type: ignore[arg-type]
    assert info.value.size == len(body) and info.value.limit == 4096
    assert str(info.value) == (f"dockyard.command.finished of {len(body)} bytes exceeds the "
                               "bus's 4096-byte payload limit")


# ------------------------------------------------------------------ on a real nats-server


@pytest.fixture
async def broker(nats_server: EmbeddedNats) -> AsyncIterator[NatsBroker]:
    b = make_broker(nats_server.url, "broker-test", credentials=nats_server.credentials(TEST))
    await b.connect()
    yield b
    await b.stop()


async def _letters(bus: Bus, service: str, count: int, within: float = 15.0) -> list[DeadLetter]:
    """The dead letters of a service, once `count` arrived (from a fresh ordered consumer)."""
    deadline = asyncio.get_running_loop().time() + within
    sub = await bus.js.subscribe(subjects.dlq(service), ordered_consumer=True)
    found: list[DeadLetter] = []
    try:
        while len(found) < count and asyncio.get_running_loop().time() < deadline:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except Exception:  # noqa: BLE001 (nats' TimeoutError: look again until the deadline)
                continue
            found.append(codec.decode_as(msg.data, DeadLetter))
    finally:
        await sub.unsubscribe()
    return found


async def test_bad_names_are_dead_lettered_once_and_never_reach_the_handler(
        nats_server: EmbeddedNats, bus: Bus) -> None:
    service = f"names-{uuid.uuid4().hex[:8]}"
    # The harness identity plays the consuming service (its name is made up for the test).
    consumer = make_broker(nats_server.url, service, credentials=nats_server.credentials(TEST))
    seen: list[Any] = []

    async def handler(cmd: DeployRequested) -> None:
        seen.append(cmd)

    durable = f"{service}-deploy"
    durable_subscriber(consumer, subjects.CMD_DEPLOY, durable, subjects.STREAM_COMMANDS,
                       new_only=True)(handler)
    await consumer.start()
    try:
        bad = [("x>", GOOD), ("shop\n", GOOD), ("a" * 64, GOOD), ("shop", "../../etc"),
               ("shop", "x>")]
        for app, dep in bad:
            body = msgspec.json.encode({"type": "dockyard.cmd.deploy", "app": app,
                                        "deployment_id": dep})
            await bus.js.publish(subjects.CMD_DEPLOY, body)
        good = DeployRequested(deployment_id=new_id(), app="shop")
        await bus.js.publish(subjects.CMD_DEPLOY, codec.encode(good))
        letters = await _letters(bus, service, len(bad))
        await _until_acked(bus, durable)
        assert [(lt.deliveries, lt.reason.split(":")[0]) for lt in letters] == [
            (1, "rejected")] * len(bad)
        reasons = [lt.reason for lt in letters]
        assert "invalid app name 'x>'" in reasons[0]
        assert "invalid app name 'shop\\n'" in reasons[1]
        assert "is 64 characters long (at most 63)" in reasons[2]
        assert "invalid deployment id '../../etc'" in reasons[3]
        assert "invalid deployment id 'x>'" in reasons[4]
        assert [c.deployment_id for c in seen] == [good.deployment_id]
        info = await bus.js.consumer_info(subjects.STREAM_COMMANDS, durable)
        assert info.num_redelivered == 0
        assert len(await _letters(bus, service, len(bad) + 1, within=1.0)) == len(bad)
    finally:
        await consumer.stop()
        await bus.js.delete_consumer(subjects.STREAM_COMMANDS, durable)


async def _until_acked(bus: Bus, durable: str, within: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        info = await bus.js.consumer_info(subjects.STREAM_COMMANDS, durable)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        assert asyncio.get_running_loop().time() < deadline, f"still pending: {info}"
        await asyncio.sleep(0.1)


async def test_an_event_on_another_apps_subject_is_dead_lettered(
        nats_server: EmbeddedNats, bus: Bus, broker: NatsBroker) -> None:
    service = f"subj-{uuid.uuid4().hex[:8]}"
    # The harness identity plays the consuming service (its name is made up for the test).
    consumer = make_broker(nats_server.url, service, credentials=nats_server.credentials(TEST))
    seen: list[Any] = []
    arrived = asyncio.Event()

    async def handler(event: DeployQueued) -> None:
        seen.append(event)
        arrived.set()

    app = f"shop{uuid.uuid4().hex[:6]}"
    durable = f"{service}-queued"
    durable_subscriber(consumer, subjects.app_events(app), durable, subjects.STREAM_EVENTS,
                       new_only=True)(handler)
    await consumer.start()
    try:
        event = make(DeployQueued, app="victim", deployment_id=new_id())
        await broker.publish(codec.encode(event), subjects.event(app, "deploy", "queued"),
                             stream=subjects.STREAM_EVENTS)
        ok = make(DeployQueued, app=app, deployment_id=new_id())
        await publish(broker, ok)
        [letter] = await _letters(bus, service, 1)
        assert letter.reason == (f"rejected: invalid event subject 'dockyard.evt.{app}.deploy."
                                 "queued': does not name the event's app 'victim'")
        await asyncio.wait_for(arrived.wait(), 15)
        assert [e.id for e in seen] == [ok.id]
    finally:
        await consumer.stop()
        await bus.js.delete_consumer(subjects.STREAM_EVENTS, durable)


async def test_an_oversized_event_is_refused_before_it_is_published_not_retried(
        broker: NatsBroker, bus: Bus) -> None:
    app = f"big{uuid.uuid4().hex[:6]}"
    event = make(CommandFinished, app=app, deployment_id=new_id(), hook_phase="postdeploy",
                 label="x", index=1, total=1, command="x", exit_code=0, duration=1.0,
                 tail=["y" * 65536] * 20)
    started = asyncio.get_running_loop().time()
    with pytest.raises(PayloadTooLarge, match="dockyard.command.finished of 13"):
        await publish_patiently(broker, event)
    assert asyncio.get_running_loop().time() - started < 1.0  # refused, not retried for 60 s
    info = await bus.js.stream_info(subjects.STREAM_EVENTS,
                                    subjects_filter=subjects.app_events(app))
    assert not info.state.subjects


def test_invalid_name_is_the_base_of_every_refusal() -> None:
    assert issubclass(SubjectMismatch, InvalidName)

"""The api service end to end: real nats-server, events published on the bus, HTTP polled."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.nats import NatsBroker
from nats.js.errors import NotFoundError

from dockyard.api.app import SERVICE, Projection, read_api_url
from dockyard.bus.broker import DeadLetter, make_broker, publish
from dockyard.bus.embedded import EmbeddedNats
from dockyard.bus.emit import Emitter, UndeclaredEvent
from dockyard.bus.service import RunningService, start_service
from dockyard.contract import codec, subjects
from dockyard.contract import events as contract_events
from dockyard.contract.events import (
    BuildStarted,
    CommandFinished,
    CommandStarted,
    DeployQueued,
    Event,
    HookFailed,
)
from dockyard.settings import Settings
from tests import fakes
from tests.conftest import TEST, Bus
from tests.contract import samples
from tests.events import make


@pytest.fixture
async def broker(nats_server: EmbeddedNats) -> AsyncIterator[NatsBroker]:
    b = make_broker(nats_server.url, "api-test", credentials=nats_server.credentials(TEST))
    await b.connect()
    yield b
    await b.stop()


async def start(tmp_path: Path, nats_server: EmbeddedNats) -> RunningService:
    return await start_service("api", Settings(data_dir=tmp_path, nats_url=nats_server.url,
                                                 nats_keys=nats_server.keys_dir))


async def until(check: Callable[[], Awaitable[Any]], within: float = 15.0) -> Any:
    """Poll check until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {within}s: last result {result!r}")
        await asyncio.sleep(0.1)


def auth(data_dir: Path) -> dict[str, str]:
    """The header the api wants: its token, from the data dir."""
    return {"Authorization": f"Bearer {(data_dir / 'api.token').read_text().strip()}"}


def envelope(app: str, dep: str) -> dict[str, Any]:
    return {"id": f"{dep}-{uuid.uuid4().hex[:6]}", "source": "test", "app": app,
            "deployment_id": dep}


async def test_projects_events_published_on_the_bus(
        tmp_path: Path, nats_server: EmbeddedNats, broker: NatsBroker) -> None:
    app, dep = f"shop{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    service = await start(tmp_path, nats_server)
    try:
        base = read_api_url(tmp_path)
        assert base is not None and base.startswith("http://127.0.0.1:")
        tail = ["Traceback", "boom"]
        sequence: list[Event[Any]] = [
            make(DeployQueued, **envelope(app, dep)),
            make(BuildStarted, **envelope(app, dep)),
            make(CommandStarted, **envelope(app, dep), release=4, hook_phase="postdeploy",
                           label="Warm", index=1, total=1, command="warm"),
            make(CommandFinished, **envelope(app, dep), release=4, hook_phase="postdeploy",
                            label="Warm", index=1, total=1, command="warm", exit_code=3,
                            duration=0.2, tail=tail),
            make(HookFailed, **envelope(app, dep), release=4, status="hook-error",
                       reason="postdeploy command failed", exit_code=3, tail=tail),
        ]
        for ev in sequence:
            await publish(broker, ev)
        # Publishing the same event again (a retried publish with a new msg id) changes nothing.
        await broker.publish(codec.encode(sequence[0]), sequence[0].nats_subject(),
                             stream=subjects.STREAM_EVENTS)
        async with httpx.AsyncClient(base_url=base, headers=auth(tmp_path)) as http:
            async def failed() -> dict[str, Any] | None:
                r = await http.get(f"/deployments/{dep}")
                body: dict[str, Any] = r.json()
                return body if r.status_code == 200 and body["status"] == "hook-error" else None

            body = await until(failed)
            assert body["exit_code"] == 3 and body["tail"] == tail
            assert [(h["label"], h["exit_code"]) for h in body["hook_runs"]] == [("Warm", 3)]
            apps = (await http.get("/apps")).json()
            assert app in [a["name"] for a in apps]
            deps = (await http.get(f"/apps/{app}/deployments")).json()
            assert [d["id"] for d in deps] == [dep]
            evs = (await http.get(f"/events?app={app}")).json()
            assert [e["id"] for e in evs] == [ev.id for ev in sequence]
            assert (await http.get("/healthz")).json()["status"] == "ok"
    finally:
        await service.stop()
    # The URL stays recorded (a restart takes the same port again), and nothing answers there.
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=read_api_url(tmp_path) or "") as http:
            await http.get("/healthz")


async def test_garbage_is_dead_lettered_and_later_events_still_projected(
        tmp_path: Path, nats_server: EmbeddedNats, broker: NatsBroker, bus: Bus) -> None:
    app, dep = f"dlq{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    service = await start(tmp_path, nats_server)
    try:
        garbage = f"not json {uuid.uuid4().hex}".encode()
        await broker.publish(garbage, subjects.event("x", "build", "failed"),
                             stream=subjects.STREAM_EVENTS)
        await publish(broker, make(DeployQueued, **envelope(app, dep)))

        async def letter() -> DeadLetter | None:
            try:
                msg = await bus.js.get_last_msg(subjects.STREAM_DLQ, subjects.dlq("api"))
            except NotFoundError:  # nothing dead-lettered yet
                return None
            found = codec.decode_as(msg.data or b"", DeadLetter)
            return found if found.payload == garbage.decode() else None

        dead = await until(letter)
        assert dead.service == "api"
        assert dead.subject == subjects.event("x", "build", "failed")
        assert dead.reason.startswith("undecodable")
        async with httpx.AsyncClient(base_url=read_api_url(tmp_path) or "",
                                     headers=auth(tmp_path)) as http:
            async def queued() -> bool:
                r = await http.get(f"/deployments/{dep}")
                return r.status_code == 200 and r.json()["status"] == "queued"

            await until(queued)
    finally:
        await service.stop()


async def test_events_published_while_stopped_are_projected_on_restart(
        tmp_path: Path, nats_server: EmbeddedNats, broker: NatsBroker) -> None:
    app, dep = f"rs{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    service = await start(tmp_path, nats_server)
    await service.stop()
    await publish(broker, make(DeployQueued, **envelope(app, dep)))
    await publish(broker, make(BuildStarted, **envelope(app, dep)))
    service = await start(tmp_path, nats_server)
    try:
        async with httpx.AsyncClient(base_url=read_api_url(tmp_path) or "",
                                     headers=auth(tmp_path)) as http:
            async def building() -> bool:
                r = await http.get(f"/apps/{app}")
                return r.status_code == 200 and r.json()["deployment"]["status"] == "building"

            await until(building)
    finally:
        await service.stop()


async def test_a_restarted_api_keeps_its_port_and_token(tmp_path: Path,
                                                       nats_server: EmbeddedNats) -> None:
    service = await start(tmp_path, nats_server)
    first_url, first_token = read_api_url(tmp_path), (tmp_path / "api.token").read_text()
    await service.stop()
    service = await start(tmp_path, nats_server)
    try:
        assert read_api_url(tmp_path) == first_url
        assert (tmp_path / "api.token").read_text() == first_token
        async with httpx.AsyncClient(base_url=first_url or "", headers=auth(tmp_path)) as http:
            assert (await http.get("/apps")).status_code == 200
    finally:
        await service.stop()


async def test_the_api_listens_on_loopback_by_default(tmp_path: Path,
                                                      nats_server: EmbeddedNats) -> None:
    # DOCKYARD_HTTP_HOST is the apps' public listener; the api has its own, loopback by default.
    settings = Settings.from_env(env={"DOCKYARD_HTTP_HOST": "0.0.0.0"}, data_dir=tmp_path,
                                 nats_url=nats_server.url, nats_keys=nats_server.keys_dir)
    service = await start_service("api", settings)
    try:
        assert (read_api_url(tmp_path) or "").startswith("http://127.0.0.1:")
    finally:
        await service.stop()
# ---------------------------------------------------------------- the declaration's wiring


async def test_each_declared_event_reaches_its_handler_as_its_type() -> None:
    routed: dict[type[contract_events.Event[Any]], str] = {
        cls: "on_event" for cls in contract_events.EVENT_TYPES}
    sent = [samples.sample_event(cls) for cls in routed]
    calls = await fakes.delivered_on_test_broker(SERVICE, Projection, sent)
    assert calls == [(routed[type(event)], event) for event in sent]
    assert all(type(got) is type(event) for (_, got), event in zip(calls, sent, strict=True))
    # Commands, and the events no subscription names, reach nothing.
    others: list[contract_events.Message] = [
        contract_events.DeployRequested(deployment_id=contract_events.new_id(), app="shop"),
        contract_events.CancelRequested(deployment_id=contract_events.new_id(), app="shop"),
        *(samples.sample_event(cls) for cls in contract_events.EVENT_TYPES if cls not in routed),
    ]
    assert await fakes.delivered_on_test_broker(SERVICE, Projection, others) == []


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

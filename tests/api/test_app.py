"""The api service end to end: real nats-server, events published on the bus, HTTP polled."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from dockyard.api.app import read_api_url
from dockyard.bus.broker import DeadLetter, make_broker, publish
from dockyard.bus.embedded import EmbeddedNats
from dockyard.bus.service import RunningService, start_service
from dockyard.bus.topology import Stores
from dockyard.schemas import codec, subjects
from dockyard.schemas.events import (
    BuildStarted,
    CommandFinished,
    CommandStarted,
    DeployQueued,
    Event,
    HookFailed,
)
from dockyard.settings import Settings
from faststream.nats import NatsBroker
from nats.js.errors import NotFoundError


@pytest.fixture
async def broker(nats_server: EmbeddedNats) -> AsyncIterator[NatsBroker]:
    b = make_broker(nats_server.url, "api-test")
    await b.connect()
    yield b
    await b.stop()


async def start(tmp_path: Path, nats_server: EmbeddedNats) -> RunningService:
    return await start_service("api", Settings(data_dir=tmp_path, nats_url=nats_server.url))


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    """Poll check until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {timeout}s: last result {result!r}")
        await asyncio.sleep(0.1)


def envelope(app: str, dep: str) -> dict[str, Any]:
    return {"id": f"{dep}-{uuid.uuid4().hex[:6]}", "source": "test", "subject": app,
            "deployment_id": dep}


async def test_projects_events_published_on_the_bus(
        tmp_path: Path, nats_server: EmbeddedNats, broker: NatsBroker) -> None:
    app, dep = f"shop{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    service = await start(tmp_path, nats_server)
    try:
        base = read_api_url(tmp_path)
        assert base is not None and base.startswith("http://127.0.0.1:")
        tail = ["Traceback", "boom"]
        sequence: list[Event] = [
            DeployQueued(**envelope(app, dep)),
            BuildStarted(**envelope(app, dep)),
            CommandStarted(**envelope(app, dep), release=4, hook_phase="postdeploy",
                           label="Warm", index=1, total=1, command="warm"),
            CommandFinished(**envelope(app, dep), release=4, hook_phase="postdeploy",
                            label="Warm", index=1, total=1, command="warm", exit_code=3,
                            duration=0.2, tail=tail),
            HookFailed(**envelope(app, dep), release=4, status="hook-error",
                       reason="postdeploy command failed", exit_code=3, tail=tail),
        ]
        for ev in sequence:
            await publish(broker, ev)
        # Publishing the same event again (a retried publish with a new msg id) changes nothing.
        await broker.publish(codec.encode(sequence[0]), sequence[0].nats_subject(),
                             stream=subjects.STREAM_EVENTS)
        async with httpx.AsyncClient(base_url=base) as http:
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
    assert read_api_url(tmp_path) is None


async def test_garbage_is_dead_lettered_and_later_events_still_projected(
        tmp_path: Path, nats_server: EmbeddedNats, broker: NatsBroker, stores: Stores) -> None:
    app, dep = f"dlq{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    service = await start(tmp_path, nats_server)
    try:
        garbage = f"not json {uuid.uuid4().hex}".encode()
        await broker.publish(garbage, subjects.event("x", "build", "failed"),
                             stream=subjects.STREAM_EVENTS)
        await publish(broker, DeployQueued(**envelope(app, dep)))

        async def letter() -> DeadLetter | None:
            try:
                msg = await stores.js.get_last_msg(subjects.STREAM_DLQ, subjects.dlq("api"))
            except NotFoundError:  # nothing dead-lettered yet
                return None
            found = codec.decode_as(msg.data, DeadLetter)
            return found if found.payload == garbage.decode() else None

        dead = await until(letter)
        assert dead.service == "api"
        assert dead.subject == subjects.event("x", "build", "failed")
        assert dead.reason.startswith("undecodable")
        async with httpx.AsyncClient(base_url=read_api_url(tmp_path) or "") as http:
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
    await publish(broker, DeployQueued(**envelope(app, dep)))
    await publish(broker, BuildStarted(**envelope(app, dep)))
    service = await start(tmp_path, nats_server)
    try:
        async with httpx.AsyncClient(base_url=read_api_url(tmp_path) or "") as http:
            async def building() -> bool:
                r = await http.get(f"/apps/{app}")
                return r.status_code == 200 and r.json()["deployment"]["status"] == "building"

            await until(building)
    finally:
        await service.stop()

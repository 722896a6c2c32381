"""The scheduler's shipping of the running instances' output, on fakes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import msgspec
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from dockyard.contract import subjects
from dockyard.contract.events import AppLogLine, DeploySpec, InstanceRef, new_id
from dockyard.contract.plan import Plan
from dockyard.contract.state import LiveRelease
from dockyard.scheduler.applogs import CURSOR_HEADER, AppLogShipper
from tests.fakes import FakeConfig, FakeRoutes, FakeRuntime, FakeRuntimes

APP = "shop"
WEB = InstanceRef(id="shop-2-web-1-abc", process="web", release=2, port=4000)
WORKER = InstanceRef(id="shop-2-worker-1-def", process="worker", release=2)


@dataclass
class Published:
    """A connection keeping what is published, and answering each subject's last message."""

    msgs: list[tuple[str, AppLogLine, dict[str, str]]] = field(default_factory=list)

    async def publish(self, subject: str, payload: bytes = b"",
                      headers: dict[str, str] | None = None) -> None:
        self.msgs.append((subject, msgspec.json.decode(payload, type=AppLogLine),
                          dict(headers or {})))

    def jetstream(self) -> Published:
        return self

    async def get_last_msg(self, stream: str, subject: str) -> Any:
        assert stream == subjects.STREAM_APPLOGS
        for sent, _, headers in reversed(self.msgs):
            if sent == subject:
                return SimpleNamespace(headers=headers)
        raise NotFoundError

    def texts(self) -> list[str]:
        return [line.text for _, line, _ in self.msgs]


async def until(check: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the time given"
        await asyncio.sleep(0.01)


async def setup() -> tuple[AppLogShipper, Published, FakeRuntime]:
    runtime, routes, config, nc = FakeRuntime(), FakeRoutes(), FakeConfig(), Published()
    await config.change(APP, {"TOKEN": "s3cr3t-value"}, [])
    spec = DeploySpec(runtime="process", build_id="b", artifact="a", plan=Plan(),
                      config_version=1)
    await routes.set_live(LiveRelease(app=APP, release=2, deployment_id=new_id(), spec=spec,
                                      instances=[WEB, WORKER]))
    runtime.instances[APP] = [WEB, WORKER]
    shipper = AppLogShipper(cast(Client, nc), routes, config, FakeRuntimes(runtime), every=0.01)
    return shipper, nc, runtime


async def test_each_instance_s_lines_go_to_its_subject_redacted() -> None:
    shipper, nc, runtime = await setup()
    runtime.outputs = {WEB.id: ["GET / 200", "token s3cr3t-value"], WORKER.id: ["tick"]}
    try:
        await shipper.look()
        await until(lambda: len(nc.msgs) == 3)
    finally:
        await shipper.close()
    by_subject = {(subject, line.text) for subject, line, _ in nc.msgs}
    assert by_subject == {(subjects.applog(APP, "web", WEB.id), "GET / 200"),
                          (subjects.applog(APP, "web", WEB.id), "token [REDACTED]"),
                          (subjects.applog(APP, "worker", WORKER.id), "tick")}
    first = nc.msgs[0][2]
    assert first[CURSOR_HEADER] == "1" and first["Nats-Msg-Id"] == f"{WEB.id}:1"
    assert {line.release for _, line, _ in nc.msgs} == {2}


async def test_a_new_shipper_goes_on_after_the_last_published_line() -> None:
    shipper, nc, runtime = await setup()
    runtime.outputs = {WEB.id: ["one", "two"]}
    runtime.instances[APP] = [WEB]
    try:
        await shipper.look()
        await until(lambda: len(nc.msgs) == 2)
    finally:
        await shipper.close()
    runtime.outputs[WEB.id].append("three")
    again = AppLogShipper(shipper.nc, shipper.routes, shipper.config, shipper.runtimes)
    try:
        await again.look()
        await until(lambda: len(nc.msgs) == 3)
        await asyncio.sleep(0.05)
    finally:
        await again.close()
    assert nc.texts() == ["one", "two", "three"]


async def test_an_instance_gone_is_no_longer_followed_and_run_stops_cleanly() -> None:
    shipper, nc, runtime = await setup()
    runtime.outputs = {WEB.id: ["one"]}
    task = asyncio.create_task(shipper.run())
    try:
        await until(lambda: len(shipper.tails) == 2)
        runtime.instances[APP] = [WEB]
        await until(lambda: len(shipper.tails) == 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert shipper.tails == {}

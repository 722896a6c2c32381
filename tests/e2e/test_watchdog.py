"""The watchdog on the real stack: a deploy whose service is gone ends, once, as `timeout`; the
lock and the queue move on; and a service down between phases longer than the lock's lease
does not let the next deploy in."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dockyard.builder.watchdog import EVERY
from dockyard.bus.service import SERVICES
from dockyard.client import Followers
from dockyard.contract.events import AnyEvent, DeployFailed, DeploySucceeded
from dockyard.state.locks import LEASE
from tests.e2e.apps import get, make_app
from tests.e2e.conftest import RUNTIMES, Running, start_running, stop_running
from tests.e2e.test_restart import ACK_WAIT, kill, spawn

HEALTH = 5.0
MARGIN = 10.0
TOML = f'[health]\ntimeout = "{HEALTH:g}s"\n'


async def _stack(tmp_path: Path, runtime: str = "process", **overrides: object) -> Running:
    """The stack with the scheduler left out: the test runs it as its own process."""
    others = tuple(s for s in SERVICES if s != "scheduler")
    return await start_running(tmp_path, runtime, services=others, ack_wait=ACK_WAIT,
                               **overrides)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                kill(proc)


class Seen:
    """The event types of one deployment, as they come, with when."""

    def __init__(self) -> None:
        self.types: list[tuple[str, float]] = []
        self.changed = asyncio.Event()

    async def on_event(self, event: AnyEvent) -> None:
        self.types.append((event.type, time.monotonic()))
        self.changed.set()

    def when(self, type_: str) -> float | None:
        return next((at for t, at in self.types if t == type_), None)

    async def wait_for(self, type_: str, within: float) -> float:
        async def seen() -> float:
            while (at := self.when(type_)) is None:
                self.changed.clear()
                await self.changed.wait()
            return at
        return await asyncio.wait_for(seen(), within)


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_a_deploy_whose_scheduler_never_comes_back_ends_as_timeout(
        tmp_path: Path, runtime: str) -> None:
    running = await _stack(tmp_path, runtime, phase_margin=MARGIN)
    procs = [spawn("scheduler", running)]
    try:
        app = running.app_name("watched")
        first = await running.client.deploy(app, make_app(tmp_path / "v1", runtime, "v1",
                                                          toml=TOML), Followers(), wait=120)
        assert isinstance(first, DeploySucceeded), first

        # v2's web is slow to listen; the scheduler is killed as it starts it, for good.
        src2 = make_app(tmp_path / "v2", runtime, "v2", toml=TOML)
        procfile = (src2 / "Procfile").read_text().replace("web: ", "web: sleep 300; ", 1)
        (src2 / "Procfile").write_text(procfile)
        seen2, seen3 = Seen(), Seen()

        async def on_event2(event: AnyEvent) -> None:
            if event.type == "dockyard.start.started" and procs[0].poll() is None:
                kill(procs[0])
            await seen2.on_event(event)

        second = asyncio.create_task(running.client.deploy(
            app, src2, Followers(on_event=on_event2), wait=120))
        killed_at = await seen2.wait_for("dockyard.start.started", 90)
        # A third deploy queues behind it.
        third = asyncio.create_task(running.client.deploy(
            app, make_app(tmp_path / "v3", runtime, "v3", toml=TOML),
            Followers(on_event=seen3.on_event), wait=180))

        ended = await second
        assert isinstance(ended, DeployFailed), ended
        assert ended.data.status == "timeout"
        assert ended.data.reason.startswith(
            f"the start phase (scheduler) passed its deadline of {HEALTH + MARGIN:g}s"), ended
        # Within its deadline, give or take one watchdog period and the bus.
        assert time.monotonic() - killed_at < HEALTH + MARGIN + EVERY + 5
        # The old release kept serving.
        assert get(running.port, app).text == "app v1\n"

        # The lock moved on: the queued deploy builds (its start waits for a scheduler).
        built = await seen3.wait_for("dockyard.build.started", 60)
        assert built > killed_at and seen3.when("dockyard.build.started") is not None
        procs.append(spawn("scheduler", running))
        last = await third
        assert isinstance(last, DeploySucceeded), last
        assert get(running.port, app).text == "app v3\n"
        # The scheduler, back, removed what the failed deploy had started.
        assert [i for i in await running.instances(app) if i.release == ended.release] == []
        # The failed deploy ended once: no second end came for it.
        assert [t for t, _ in seen2.types].count("dockyard.deploy.failed") == 1
    finally:
        _stop(procs)
        await stop_running(running)


async def test_a_service_down_longer_than_the_lease_keeps_the_next_deploy_waiting(
        tmp_path: Path) -> None:
    running = await _stack(tmp_path)  # default margin: the start phase has 60 s + 60 s
    procs = [spawn("scheduler", running)]
    try:
        app = running.app_name("leased")
        first = await running.client.deploy(app, make_app(tmp_path / "v1", "process", "v1"),
                                            Followers(), wait=120)
        assert isinstance(first, DeploySucceeded), first
        kill(procs[0])  # down between the release phase and the start phase

        seen2, seen3 = Seen(), Seen()
        second = asyncio.create_task(running.client.deploy(
            app, make_app(tmp_path / "v2", "process", "v2"),
            Followers(on_event=seen2.on_event), wait=240))
        await seen2.wait_for("dockyard.release.succeeded", 90)
        third = asyncio.create_task(running.client.deploy(
            app, make_app(tmp_path / "v3", "process", "v3"),
            Followers(on_event=seen3.on_event), wait=300))
        await seen3.wait_for("dockyard.deploy.queued", 30)
        # The scenario is a duration: no phase runs for longer than the lock's lease.
        await asyncio.sleep(LEASE + 2 * EVERY)
        assert seen3.when("dockyard.build.started") is None, "the next deploy took the lock"

        procs.append(spawn("scheduler", running))
        ended = await second
        assert isinstance(ended, DeploySucceeded), ended
        last = await third
        assert isinstance(last, DeploySucceeded), last
        done2, built3 = seen2.when("dockyard.deploy.succeeded"), seen3.when(
            "dockyard.build.started")
        assert done2 is not None and built3 is not None and built3 >= done2
        assert get(running.port, app).text == "app v3\n"
    finally:
        _stop(procs)
        await stop_running(running)

"""The scheduler's side of a destroy, on fakes: every instance stopped on the runtimes the
builder named, each runtime told to remove what it has of the app, placements forgotten."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from dockyard.contract.events import DestroyData, DestroyStopped, DestroyUnrouted
from dockyard.contract.state import LiveRelease
from dockyard.pipeline import destroy
from dockyard.state.placements import Placement
from tests.events import make
from tests.fakes import FakeMessage
from tests.scheduler.test_handlers import APP, OLD_SPEC, SPEC, World, running, world

OP = "0f" + "0" * 30


@pytest.fixture
async def w() -> AsyncIterator[World]:
    made = await world()
    yield made
    await made.runtime.close()


def live(release: int, spec: Any) -> LiveRelease:
    return LiveRelease(app=APP, release=release, deployment_id=f"d{release}", spec=spec,
                       instances=[])


def test_the_runtimes_of_an_app_come_from_its_kept_live_releases_and_the_default() -> None:
    history = [live(2, OLD_SPEC), live(3, SPEC), live(4, SPEC)]
    assert destroy.runtimes_of(history, "docker") == ["docker", "process"]
    assert destroy.runtimes_of([], "process") == ["process"]


async def test_destroy_stops_everything_and_forgets_placements_once(w: World) -> None:
    await running(w, 2)
    await running(w, 3, ("web", "worker"))
    w.runtime.leftovers[APP] = ["release dir v2-abc", "release dir v3-abc", "user dy-1"]
    placements = w.scheduler.doors.placements
    for release in (2, 3):
        await placements.record(Placement(app=APP, release=release, deployment_id="d",
                                          instances=[]))
    w.locks.held[APP] = OP  # the builder took it for the destroy
    started = make(DestroyUnrouted, app=APP, deployment_id=OP, runtimes=["process"])
    await w.scheduler.on_destroy_unrouted(started, FakeMessage().as_message())
    [stopped] = w.broker.events
    assert isinstance(stopped, DestroyStopped) and stopped.deployment_id == OP
    assert w.runtime.instances.get(APP, []) == []
    assert w.runtime.removed == []  # no artifact named by an event: the runtime's own view
    assert w.runtime.removed_apps == [APP]
    assert await placements.get(APP, 2) is None and await placements.get(APP, 3) is None
    removed = stopped.data.removed
    assert len([r for r in removed if r.startswith("instance ")]) == 3
    assert removed[3:] == ["release dir v2-abc", "release dir v3-abc", "user dy-1",
                           "placements of v2, v3"]
    assert w.locks.held[APP] == OP  # the builder frees it at the end
    await w.scheduler.on_destroy_unrouted(started, FakeMessage().as_message())
    assert [e.id for e in w.broker.events] == [stopped.id, stopped.id]
    assert w.runtime.removed_apps == [APP]


async def test_destroying_an_app_that_never_ran_removes_nothing_but_asks_the_runtime(
        w: World) -> None:
    w.locks.held[APP] = OP
    await w.scheduler.on_destroy_unrouted(make(DestroyUnrouted, app=APP, deployment_id=OP),
                                          FakeMessage().as_message())
    assert w.broker.events[0].data == DestroyData(removed=[])
    assert w.runtime.removed_apps == [APP]

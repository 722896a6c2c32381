"""Forgetting a destroyed app on a real nats-server: each door removes the app's keys and
objects, and only the app's (not another app's whose name starts the same)."""

from __future__ import annotations

from datetime import UTC, datetime

from dockyard.contract import subjects
from dockyard.contract.events import DeploySpec, new_id
from dockyard.contract.plan import Plan
from dockyard.contract.sinks import Sink, SinkStatus, with_sink
from dockyard.contract.state import LiveRelease, Pending, Queue, QueueEntry
from dockyard.state import kv
from dockyard.state.builds import open_manifest_keeper
from dockyard.state.deliveries import open_deliveries
from dockyard.state.placements import Placement, open_placement_writer
from dockyard.state.queue import open_queue
from dockyard.state.releases import open_release_numbers
from dockyard.state.routes import open_route_writer
from dockyard.state.sinks import open_sink_forgetter, open_sink_store
from dockyard.state.sources import open_source_keeper, open_source_uploads
from tests.conftest import Bus

SPEC = DeploySpec(runtime="process", build_id="v1-x", artifact="/a", plan=Plan())
SPEC_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def pair() -> tuple[str, str]:
    """An app and another whose name starts with the first's."""
    a = f"fg-{new_id()[:8]}"
    return a, f"{a}-2"


async def test_release_numbers_start_again_from_one(bus: Bus) -> None:
    numbers = await open_release_numbers(bus.js, "builder")
    a, b = pair()
    for app in (a, a, b):
        await numbers.allocate(app, new_id())
    await numbers.forget(a)
    assert await numbers.allocate(a, new_id()) == 1
    assert await numbers.allocate(b, new_id()) == 2


async def test_placements_and_routes_of_the_app_alone_go(bus: Bus) -> None:
    placements = await open_placement_writer(bus.js, "scheduler")
    routes = await open_route_writer(bus.js, "router")
    a, b = pair()
    for app in (a, b):
        for release in (1, 2):
            await placements.record(Placement(app=app, release=release, deployment_id="d",
                                              instances=[]))
        await routes.set_live(LiveRelease(app=app, release=1, deployment_id="d", spec=SPEC,
                                          instances=[]))
    await routes.set_pending(Pending(app=a, deployment_id="d"))
    assert await placements.forget(a) == [1, 2]
    assert await placements.get(a, 1) is None and await placements.get(b, 1) is not None
    assert sorted(await routes.forget(a)) == [f"live.{a}", f"pending.{a}"]
    assert await routes.live(a) is None and await routes.live_history(a) == []
    assert a not in await routes.all_pending() and a not in await routes.all_live()
    assert (await routes.live(b)) is not None


async def test_sources_and_manifests_go_but_a_queued_deploys_source(bus: Bus) -> None:
    uploads = await open_source_uploads(bus.js, "cli")
    sources = await open_source_keeper(bus.js, "builder")
    manifests = await open_manifest_keeper(bus.js, "builder")
    a, b = pair()
    old, queued, other = new_id(), new_id(), new_id()
    await uploads.upload(a, old, b"old")
    kept = await uploads.upload(a, queued, b"queued")
    await uploads.upload(b, other, b"other")
    await manifests.keep(a, "v1-x", {"Procfile": "web: x"})
    await manifests.keep(b, "v1-x", {"Procfile": "web: y"})
    assert await sources.forget(a, keep={kept}) == 1
    assert await sources.forget(a, keep={kept}) == 0  # again: nothing left to do
    store = await bus.js.object_store(subjects.OBJ_SOURCES)
    names = {i.name for i in await store.list(ignore_deletes=True)}
    assert kept in names and f"{b}/{other}.tar.gz" in names and f"{a}/{old}.tar.gz" not in names
    assert await manifests.forget(a) == 1
    assert await manifests.manifest(a, "v1-x") == {}
    assert await manifests.manifest(b, "v1-x") == {"Procfile": "web: y"}


async def test_sinks_statuses_and_an_empty_queue_go(bus: Bus) -> None:
    sinks = await open_sink_store(bus.js, "cli")
    forgetter = await open_sink_forgetter(bus.js, "builder")
    deliveries = await open_deliveries(bus.js, "notifier")
    queue = await open_queue(bus.js, "builder")
    a, b = pair()
    for app in (a, b):
        await sinks.change(app, lambda s: with_sink(s, Sink(name="ops", url="https://x.test/h")))
        await deliveries.change_status(app, "ops", lambda s: SinkStatus(failures=2))
    assert await forgetter.forget(a) is True
    assert await forgetter.forget(f"fg-{new_id()[:8]}") is False
    assert (await sinks.load(a)).sinks == [] and len((await sinks.load(b)).sinks) == 1
    await deliveries.forget_statuses(a)
    assert (await deliveries.statuses(a, ["ops"]))["ops"] == SinkStatus()
    assert (await deliveries.statuses(b, ["ops"]))["ops"].failures == 2
    entry = QueueEntry(deployment_id=new_id(), requested_at=SPEC_TIME)
    await queue.change(b, lambda q: Queue(entries=[entry]))
    await queue.change(a, lambda q: Queue())
    assert await queue.forget_if_empty(a) is True
    assert await queue.forget_if_empty(b) is False  # a deploy waits: it stays
    assert (await kv.read(await bus.kv(subjects.KV_QUEUE), a))[0] is None
    assert (await queue.load(b)).entries == [entry]

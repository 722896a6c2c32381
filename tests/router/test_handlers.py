"""The router's handlers: with in-memory doors and a fake admin API (what is decided and what is
refused), then against a real Caddy and the session's real nats-server (what is served)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import structlog
from faststream.nats import NatsBroker

from dockyard.bus.broker import Rejected
from dockyard.bus.embedded import free_port
from dockyard.bus.emit import Emitter
from dockyard.contract import subjects
from dockyard.contract.events import (
    DeployFailed,
    Event,
    HookFailed,
    HookStarted,
    HookSucceeded,
    InstanceRef,
    TrafficFailed,
    TrafficSwitched,
    event_id,
)
from dockyard.contract.state import LiveRelease, Pending, TimedOut
from dockyard.router import upstream_files
from dockyard.router.app import SERVICE, RouterDoors
from dockyard.router.caddy import CaddyAdmin, CaddyProcess, start_caddy
from dockyard.router.config import DIAL_SLOTS
from dockyard.router.handlers import Router
from dockyard.router.verify import POSTDEPLOY_STEP
from dockyard.settings import Settings
from dockyard.state.maintenance import open_maintenance_store
from dockyard.state.placements import Placement
from tests.conftest import Bus
from tests.events import make
from tests.fakes import (
    FakeInFlight,
    FakeMaintenance,
    FakePlacements,
    FakeRollouts,
    FakeRoutes,
    FakeSteps,
)

from .conftest import (
    FakeAdmin,
    Gate,
    RecordingEmitter,
    Upstream,
    app_name,
    deploy_queued,
    deployment,
    get,
    hook_succeeded,
    open_gate,
    spec,
    stream_events,
    wait_for,
)

Factory = Callable[[str], Awaitable[Upstream]]
LOG = structlog.get_logger().bind(service="router-test")

# ------------------------------------------------------------------ in memory


@dataclass
class Rig:
    """A router on in-memory doors, a fake admin API and an emitter that only records."""

    data_dir: Path
    admin: FakeAdmin = field(default_factory=FakeAdmin)
    routes: FakeRoutes = field(default_factory=FakeRoutes)
    verdicts: FakeSteps = field(default_factory=FakeSteps)  # the hook-runner's step records
    placements: FakePlacements = field(default_factory=FakePlacements)
    maintenance: FakeMaintenance = field(default_factory=FakeMaintenance)
    timeouts: FakeInFlight = field(default_factory=FakeInFlight)
    rollouts: FakeRollouts = field(default_factory=FakeRollouts)
    emitter: RecordingEmitter = field(default_factory=RecordingEmitter)
    router: Router = field(init=False)

    def __post_init__(self) -> None:
        doors = RouterDoors(routes=self.routes, verdicts=self.verdicts,
                            placements=self.placements, maintenance=self.maintenance,
                            timeouts=self.timeouts, rollouts=self.rollouts)
        self.router = Router(admin=self.admin, doors=doors, emitter=self.emitter,
                             settings=Settings(data_dir=self.data_dir), log=LOG)

    async def gate(self, event: HookSucceeded, instances: list[InstanceRef] | None = None) -> None:
        """Record what the scheduler and the hook-runner record before a genuine event."""
        await open_gate(self.verdicts, self.placements, event, instances)

    async def deliver(self, event: HookSucceeded, subject: str | None = None) -> None:
        """Hand the router the event as delivered on `subject` (its own by default)."""
        await self.router.on_hook_succeeded(event, subject or event.nats_subject())

    def served(self, app: str) -> list[str] | None:
        """The addresses the app's upstream files point at (each once: the dial slots repeat
        them)."""
        found = upstream_files.current_addresses(self.router.routes_dir, app)
        return None if found is None else list(dict.fromkeys(found))

    def types(self) -> list[str]:
        return [e.type for e in self.emitter.emitted]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(data_dir=tmp_path / "data")


WEB = InstanceRef(id="shop-1-web-1", process="web", release=1, port=5001)
WEB2 = InstanceRef(id="shop-2-web-1", process="web", release=2, port=5002)
ATTACKER = InstanceRef(id="shop-1-web-1", process="web", release=1, port=6666)


def files_under(root: Path) -> set[Path]:
    return set(root.rglob("*")) if root.exists() else set()


async def assert_refused(rig: Rig, event: HookSucceeded, problem: str,
                         subject: str | None = None) -> None:
    """The event is dead-lettered with `problem` in its reason, and nothing changed."""
    before = (list(rig.admin.configs), dict(rig.routes.history), dict(rig.routes.pending),
              list(rig.emitter.emitted), files_under(rig.data_dir.parent))
    with pytest.raises(Rejected) as refused:
        await rig.deliver(event, subject)
    assert problem in str(refused.value)
    after = (rig.admin.configs, rig.routes.history, rig.routes.pending, rig.emitter.emitted,
             files_under(rig.data_dir.parent))
    assert after == before


async def test_a_verified_switch_routes_to_the_recorded_instances(rig: Rig) -> None:
    event = hook_succeeded("shop", deployment(), 1, [WEB])
    await rig.gate(event)
    await rig.deliver(event)
    assert rig.served("shop") == ["127.0.0.1:5001"]
    assert len(rig.admin.configs) == 1
    live = await rig.routes.live("shop")
    assert live is not None and (live.release, live.instances) == (1, [WEB])
    (switched,) = rig.emitter.emitted
    assert isinstance(switched, TrafficSwitched)
    assert (switched.id, switched.data.instances, switched.data.previous_release) == (
        event_id(event.deployment_id, "dockyard.traffic.switched"), [WEB], None)


async def test_a_redelivery_announces_again_and_switches_nothing(rig: Rig) -> None:
    event = hook_succeeded("shop", deployment(), 1, [WEB])
    await rig.gate(event)
    await rig.deliver(event)
    await rig.deliver(event)
    assert len(rig.admin.configs) == 1
    assert len(rig.routes.history["shop"]) == 1
    first, again = rig.emitter.emitted
    # The same id and data: JetStream drops the second as a duplicate.
    assert (first.id, first.data) == (again.id, again.data)

    # The next release names the one it replaced; its own redelivery changes nothing either.
    second = hook_succeeded("shop", deployment(), 2, [WEB2])
    await rig.gate(second)
    await rig.deliver(second)
    await rig.deliver(second)
    assert rig.served("shop") == ["127.0.0.1:5002"]
    assert [getattr(e.data, "previous_release", "-") for e in rig.emitter.emitted] == [
        None, None, 1, 1]
    assert len(rig.routes.history["shop"]) == 2


async def test_refused_while_postdeploy_still_runs(rig: Rig) -> None:
    started = make(HookStarted, app="shop", deployment_id=deployment(), release=1, spec=spec(),
                   instances=[WEB])
    forged = msgspec.json.decode(msgspec.json.encode(started).replace(
        b"dockyard.hook.started", b"dockyard.hook.succeeded"), type=HookSucceeded)
    await rig.placements.record(placement_of(forged))
    await assert_refused(rig, forged, "postdeploy has no recorded outcome")


async def test_refused_when_postdeploy_failed(rig: Rig) -> None:
    event = hook_succeeded("shop", deployment(), 1, [WEB])
    await rig.gate(event)
    failure = make(HookFailed, app="shop", deployment_id=event.deployment_id, release=1,
                   status="hook-error", reason="exit 1")
    await rig.verdicts.finish(event.deployment_id, POSTDEPLOY_STEP, failure)
    await assert_refused(rig, event, "is dockyard.hook.failed, not a success")


async def test_refused_once_the_watchdog_ended_the_deploy(rig: Rig) -> None:
    # Postdeploy passed, but the router was down past the switch's deadline: a late
    # hook.succeeded must not bring a failed deploy's release in.
    event = hook_succeeded("shop", deployment(), 1, [WEB])
    await rig.gate(event)
    rig.timeouts.verdicts[event.deployment_id] = TimedOut(
        app="shop", deployment_id=event.deployment_id, release=1, phase="switch",
        reason="the switch phase (router) passed its deadline of 60s")
    await assert_refused(rig, event, "the deploy already ended as timeout: the switch phase")


async def test_refused_with_instances_of_the_attackers_choosing(rig: Rig) -> None:
    genuine = hook_succeeded("shop", deployment(), 1, [WEB])
    await rig.gate(genuine)
    forged = hook_succeeded("shop", genuine.deployment_id, 1, [ATTACKER])
    await assert_refused(rig, forged, "the scheduler started [shop-1-web-1@127.0.0.1:5001]")


async def test_refused_with_another_release_number(rig: Rig) -> None:
    genuine = hook_succeeded("shop", deployment(), 1, [WEB])
    await rig.gate(genuine)
    forged = hook_succeeded("shop", genuine.deployment_id, 7, [WEB])
    await assert_refused(rig, forged, "is not the recorded postdeploy outcome")


async def test_refused_without_a_recorded_placement(rig: Rig) -> None:
    event = hook_succeeded("shop", deployment(), 1, [WEB])
    await rig.verdicts.finish(event.deployment_id, POSTDEPLOY_STEP, event)
    await assert_refused(rig, event, "the scheduler recorded no instances for release 1")


async def test_refused_when_the_records_name_a_foreign_host(rig: Rig) -> None:
    remote = msgspec.structs.replace(WEB, host="203.0.113.7")
    event = hook_succeeded("shop", deployment(), 1, [remote])
    await rig.gate(event)
    await assert_refused(rig, event, "is on host '203.0.113.7'")


async def test_refused_on_another_apps_subject(rig: Rig) -> None:
    event = hook_succeeded("shop", deployment(), 1, [WEB])
    await rig.gate(event)
    await assert_refused(rig, event, "not on its own app's subject",
                         subject="dockyard.evt.blog.hook.succeeded")


async def test_refused_path_traversal_in_the_app_name(rig: Rig) -> None:
    app = "../../../../tmp/x"
    event = hook_succeeded(app, deployment(), 1, [WEB])
    await assert_refused(rig, event, "invalid app name", subject="dockyard.evt.x.hook.succeeded")
    assert not (rig.router.routes_dir / app).exists()


async def test_refused_malformed_deployment_id(rig: Rig) -> None:
    await assert_refused(rig, hook_succeeded("shop", "hook-runner.>", 1, [WEB]),
                         "invalid deployment id")


async def test_a_refusing_caddy_gives_switch_error_and_keeps_the_old_routes(rig: Rig) -> None:
    first = hook_succeeded("shop", deployment(), 1, [WEB])
    await rig.gate(first)
    await rig.deliver(first)
    rig.admin.refuse = True
    # Another shape (more upstreams than the dial slots): Caddy is asked to load a new
    # config, and refuses it.
    second = hook_succeeded("shop", deployment(), 2, [WEB2, *(msgspec.structs.replace(
        WEB2, id=f"shop-2-web-{n}", port=5100 + n) for n in range(2, DIAL_SLOTS + 2))])
    await rig.gate(second)
    await rig.deliver(second)
    assert rig.served("shop") == ["127.0.0.1:5001"]
    assert len(rig.routes.history["shop"]) == 1
    failure = rig.emitter.emitted[-1]
    assert isinstance(failure, TrafficFailed)
    assert failure.data.status == "switch-error" and "refused with 400" in failure.data.reason
    assert rig.types() == ["dockyard.traffic.switched", "dockyard.traffic.failed"]


async def test_an_unreachable_caddy_gives_switch_error_and_puts_the_files_back(rig: Rig) -> None:
    first = hook_succeeded("shop", deployment(), 1, [WEB])
    await rig.gate(first)
    await rig.deliver(first)
    rig.admin.unreachable = True
    second = hook_succeeded("shop", deployment(), 2, [WEB2])
    await rig.gate(second)
    await rig.deliver(second)
    assert rig.served("shop") == ["127.0.0.1:5001"]
    assert rig.types() == ["dockyard.traffic.switched", "dockyard.traffic.failed"]


async def test_first_deploy_events_are_checked_too(rig: Rig) -> None:
    queued = deploy_queued("shop", deployment())
    with pytest.raises(Rejected, match="not on its own app's subject"):
        await rig.router.on_deploy_queued(queued, "dockyard.evt.blog.deploy.queued")
    bad = deploy_queued("../x", deployment())
    with pytest.raises(Rejected, match="invalid app name"):
        await rig.router.on_deploy_queued(bad, "dockyard.evt.x.deploy.queued")
    failed_ = make(DeployFailed, app="a.b", deployment_id=deployment(), status="build-error",
                   reason="boom")
    with pytest.raises(Rejected, match="invalid app name"):
        await rig.router.on_deploy_failed(failed_, "dockyard.evt.a.b.deploy.failed")
    assert rig.admin.configs == [] and rig.routes.pending == {}

    await rig.router.on_deploy_queued(queued, queued.nats_subject())
    assert rig.routes.pending == {"shop": Pending(app="shop", deployment_id=queued.deployment_id)}


async def test_rebuild_leaves_out_records_under_invalid_app_names(rig: Rig) -> None:
    for app in ("shop", "../../../../tmp/x"):
        await rig.routes.set_live(LiveRelease(app=app, release=1, deployment_id=deployment(),
                                              spec=spec(), instances=[WEB]))
    await rig.router.rebuild()
    assert rig.served("shop") == ["127.0.0.1:5001"]
    (config,) = rig.admin.configs
    hosts = [r["match"][0]["host"] for r in
             config["apps"]["http"]["servers"]["dockyard"]["routes"] if "match" in r]
    assert hosts == [["shop.localhost"]]
    assert {p.relative_to(rig.data_dir.parent).parts[:3] for p in files_under(
        rig.data_dir.parent)} <= {("data",), ("data", "caddy-routes"),
                                  ("data", "caddy-routes", "shop")}


async def test_rebuild_loads_a_caddy_serving_less_and_leaves_one_serving_the_records(
        rig: Rig) -> None:
    await rig.routes.set_live(LiveRelease(app="shop", release=1, deployment_id=deployment(),
                                          spec=spec(), instances=[WEB]))
    await rig.router.rebuild()  # a fresh Caddy (nothing loaded): the whole config
    assert len(rig.admin.configs) == 1
    # A router restarted on the Caddy it adopted, already serving the records: no reload.
    again = Rig(data_dir=rig.data_dir, admin=rig.admin, routes=rig.routes)
    await again.router.rebuild()
    assert len(rig.admin.configs) == 1
    assert again.router.loaded == rig.admin.configs[0]
    # Records that changed while no router ran: loaded.
    await rig.routes.set_live(LiveRelease(app="blog", release=1, deployment_id=deployment(),
                                          spec=spec(), instances=[WEB2]))
    third = Rig(data_dir=rig.data_dir, admin=rig.admin, routes=rig.routes)
    await third.router.rebuild()
    assert len(rig.admin.configs) == 2
    assert third.served("blog") == ["127.0.0.1:5002"]


async def test_a_lagging_watchers_older_record_never_routes_traffic_back(rig: Rig) -> None:
    """The chaos run under a CPU hog saw two 502s: the routes watcher, lagging, delivered
    release 1's record after the router had switched to release 2, the router routed to it,
    and the scheduler had stopped release 1's instances."""
    first = hook_succeeded("shop", deployment(), 1, [WEB])
    await rig.gate(first)
    await rig.deliver(first)
    second = hook_succeeded("shop", deployment(), 2, [WEB2])
    await rig.gate(second)
    await rig.deliver(second)
    assert rig.served("shop") == ["127.0.0.1:5002"]
    rig.routes.delivered = [rig.routes.history["shop"][0]]  # release 2's is yet to come
    await rig.router.follow_state()
    assert rig.served("shop") == ["127.0.0.1:5002"]
    assert rig.router.records.live["shop"].release == 2


@dataclass
class CountingRoutes(FakeRoutes):
    """FakeRoutes counting the reads of every app's records."""

    whole_reads: int = 0

    async def all_live(self) -> dict[str, LiveRelease]:
        self.whole_reads += 1
        return await super().all_live()

    async def all_pending(self) -> dict[str, Pending]:
        self.whole_reads += 1
        return await super().all_pending()


async def test_after_the_rebuild_no_event_reads_every_apps_records_or_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With 300 apps live, a deploy's events (queued, switched) read and write only their own
    app's records and files: what a switch costs does not grow with the number of apps."""
    rig = Rig(data_dir=tmp_path / "data", routes=CountingRoutes())
    for i in range(300):
        await rig.routes.set_live(LiveRelease(
            app=f"app{i}", release=1, deployment_id=deployment(), spec=spec(),
            instances=[InstanceRef(id=f"app{i}-1-web-1", process="web", release=1,
                                   port=20000 + i)]))
    await rig.router.rebuild()
    assert isinstance(rig.routes, CountingRoutes) and rig.routes.whole_reads == 2
    looked_at: list[str] = []
    current = upstream_files.current_addresses

    def counted(routes_dir: Path, app: str) -> list[str] | None:
        looked_at.append(app)
        return current(routes_dir, app)

    monkeypatch.setattr(upstream_files, "current_addresses", counted)
    queued = deploy_queued("app7", deployment())
    await rig.router.on_deploy_queued(queued, queued.nats_subject())
    event = hook_succeeded("app7", queued.deployment_id, 2, [WEB2])
    await rig.gate(event)
    await rig.deliver(event)
    assert rig.routes.whole_reads == 2 and looked_at == ["app7"]
    assert rig.served("app7") == ["127.0.0.1:5002"]
    assert rig.served("app8") == ["127.0.0.1:20008"]
    assert len(rig.admin.configs) == 1  # the shape did not change: no reload


def placement_of(event: HookSucceeded) -> Placement:
    """The placement the scheduler records for the event's release (the event's instances)."""
    return Placement(app=event.app, release=event.release, deployment_id=event.deployment_id,
                     instances=list(event.data.instances))


# ------------------------------------------------------------------ real Caddy, real bus


_DATA_DIRS: list[Path] = []


@pytest.fixture(autouse=True)
def _remove_data_dirs() -> Iterator[None]:
    """The routers' data dirs go with the test that made them."""
    yield
    while _DATA_DIRS:
        shutil.rmtree(_DATA_DIRS.pop(), ignore_errors=True)


def make_router(admin: CaddyAdmin, doors: RouterDoors, broker: NatsBroker,
                http_port: int) -> Router:
    # The router keeps its upstream files under the data dir: a fresh one per router.
    _DATA_DIRS.append(Path(tempfile.mkdtemp(prefix="router-test-")))
    settings = Settings(data_dir=_DATA_DIRS[-1], http_port=http_port)
    return Router(admin=admin, doors=doors,
                  emitter=Emitter(broker, SERVICE.name, SERVICE.publishes), settings=settings,
                  log=LOG)


def failed(app: str, deployment_id: str) -> DeployFailed:
    return make(DeployFailed, app=app, deployment_id=deployment_id, status="build-error",
                reason="boom")


async def switch(router: Router, event: Event[Any]) -> None:
    assert isinstance(event, HookSucceeded)
    await router.on_hook_succeeded(event, event.nats_subject())


async def test_queued_switch_and_redelivery(caddy: CaddyProcess, doors: RouterDoors, bus: Bus,
                                            gate: Gate, broker: NatsBroker, http_port: int,
                                            upstreams: Factory) -> None:
    app = app_name("shop")
    host = f"{app}.localhost"
    d1, d2 = deployment(), deployment()
    router = make_router(caddy.admin, doors, broker, http_port)
    await router.rebuild()
    assert (await get(http_port, host)).status_code == 404

    queued = deploy_queued(app, d1)
    await router.on_deploy_queued(queued, queued.nats_subject())
    pending = await get(http_port, host)
    assert (pending.status_code, pending.headers["Retry-After"]) == (503, "5")
    assert (await doors.routes.all_pending())[app] == Pending(app=app, deployment_id=d1)

    up = await upstreams("v1")
    event = await gate.open(hook_succeeded(app, d1, 1, [up.instance(1)]))
    loads = caddy.admin.loads
    await switch(router, event)
    assert caddy.admin.loads == loads + 1
    assert (await get(http_port, host)).text == "v1"
    record = await doors.routes.live(app)
    assert record is not None
    assert (record.deployment_id, record.release, record.instances) == (d1, 1, [up.instance(1)])
    assert app in await doors.routes.all_live() and app not in await doors.routes.all_pending()

    # The same event again (a redelivery): no Caddy load, the same announcement, deduplicated.
    await switch(router, event)
    assert caddy.admin.loads == loads + 1
    switched = await stream_events(bus.js, subjects.event(app, "traffic", "switched"))
    assert len(switched) == 1
    (first,) = switched
    assert isinstance(first, TrafficSwitched)
    assert (first.id, first.data.previous_release, first.source) == (
        event_id(d1, "dockyard.traffic.switched"), None, "dockyard/router")

    # A second deploy names the release it replaced.
    up2 = await upstreams("v2")
    second = await gate.open(hook_succeeded(app, d2, 2, [up2.instance(2)]))
    await switch(router, second)
    assert (await get(http_port, host)).text == "v2"
    await switch(router, second)
    switched = await stream_events(bus.js, subjects.event(app, "traffic", "switched"))
    assert [(e.deployment_id, getattr(e.data, "previous_release", "?")) for e in switched] == [
        (d1, None), (d2, 1)]


async def test_a_forgery_on_the_real_bus_changes_nothing(caddy: CaddyProcess, doors: RouterDoors,
                                                          bus: Bus, gate: Gate,
                                                          broker: NatsBroker, http_port: int,
                                                          upstreams: Factory) -> None:
    app = app_name("shop")
    own, attacker = await upstreams("own"), await upstreams("attacker")
    router = make_router(caddy.admin, doors, broker, http_port)
    await switch(router, await gate.open(hook_succeeded(app, deployment(), 1, [own.instance(1)])))
    loads = caddy.admin.loads
    # The hook-runner's verdict and the scheduler's placement are real KV records here.
    genuine = hook_succeeded(app, deployment(), 2, [own.instance(2)])
    await gate.placements.record(placement_of(genuine))
    forged = hook_succeeded(app, genuine.deployment_id, 2, [attacker.instance(2)])
    with pytest.raises(Rejected, match="postdeploy has no recorded outcome"):
        await switch(router, forged)
    await gate.steps.finish(genuine.deployment_id, POSTDEPLOY_STEP, genuine)
    with pytest.raises(Rejected, match="the event routes to"):
        await switch(router, forged)
    assert caddy.admin.loads == loads
    assert (await get(http_port, f"{app}.localhost")).text == "own"
    live = await doors.routes.live(app)
    assert live is not None and live.release == 1
    assert len(await stream_events(bus.js, subjects.event(app, "traffic", "switched"))) == 1


async def test_failed_first_deploy_clears_pending(caddy: CaddyProcess, doors: RouterDoors,
                                                  broker: NatsBroker, http_port: int) -> None:
    app = app_name("blog")
    d1 = deployment()
    router = make_router(caddy.admin, doors, broker, http_port)
    await router.rebuild()
    queued = deploy_queued(app, d1)
    await router.on_deploy_queued(queued, queued.nats_subject())
    other = failed(app, deployment())
    await router.on_deploy_failed(other, other.nats_subject())
    assert (await get(http_port, f"{app}.localhost")).status_code == 503
    mine = failed(app, d1)
    await router.on_deploy_failed(mine, mine.nats_subject())
    assert (await get(http_port, f"{app}.localhost")).status_code == 404
    assert app not in await doors.routes.all_pending()


async def test_refused_switch_publishes_switch_error(caddy: CaddyProcess, doors: RouterDoors,
                                                     bus: Bus, gate: Gate, broker: NatsBroker,
                                                     upstreams: Factory) -> None:
    app = app_name("web")
    with socket.socket() as taken:
        # Caddy cannot listen on a port someone else holds: it refuses the whole config.
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        router = make_router(caddy.admin, doors, broker, taken.getsockname()[1])
        up = await upstreams("v1")
        await switch(router, await gate.open(hook_succeeded(app, deployment(), 1,
                                                            [up.instance(1)])))
    (failure,) = await stream_events(bus.js, subjects.event(app, "traffic", "failed"))
    assert isinstance(failure, TrafficFailed)
    assert failure.data.status == "switch-error"
    assert "refused" in failure.data.reason
    assert await doors.routes.live(app) is None
    assert await stream_events(bus.js, subjects.event(app, "traffic", "switched")) == []


async def test_unreachable_caddy_publishes_switch_error(doors: RouterDoors, bus: Bus, gate: Gate,
                                                        broker: NatsBroker, tmp_path: Path,
                                                        upstreams: Factory) -> None:
    app = app_name("web")
    admin = CaddyAdmin(str(tmp_path / "nobody.sock"), timeout=2)
    router = make_router(admin, doors, broker, free_port())
    up = await upstreams("v1")
    await switch(router, await gate.open(hook_succeeded(app, deployment(), 1, [up.instance(1)])))
    (failure,) = await stream_events(bus.js, subjects.event(app, "traffic", "failed"))
    assert isinstance(failure, TrafficFailed) and failure.data.status == "switch-error"
    assert await doors.routes.live(app) is None


async def test_second_instance_follows_the_kv_state(caddy: CaddyProcess, doors: RouterDoors,
                                                    gate: Gate, broker: NatsBroker,
                                                    tmp_path: Path, upstreams: Factory) -> None:
    app = app_name("shop")
    port_a, port_b = free_port(), free_port()
    other = await start_caddy(tmp_path / "other")
    try:
        first = make_router(caddy.admin, doors, broker, port_a)
        second = make_router(other.admin, doors, broker, port_b)
        await first.rebuild()
        await second.rebuild()
        follower = asyncio.ensure_future(second.follow_state())
        try:
            up = await upstreams("v1")
            await switch(first, await gate.open(hook_succeeded(app, deployment(), 1,
                                                               [up.instance(1)])))

            async def routed() -> bool:
                try:
                    return (await get(port_b, f"{app}.localhost")).text == "v1"
                except httpx.TransportError:  # the follower's reload resets open connections
                    return False

            await wait_for(routed)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
    finally:
        await other.stop()


async def test_a_switch_of_the_same_shape_reloads_nothing_and_no_request_fails(
        caddy: CaddyProcess, doors: RouterDoors, gate: Gate, broker: NatsBroker, http_port: int,
        upstreams: Factory) -> None:
    app = app_name("shape")
    first, second = await upstreams("first"), await upstreams("second")
    router = make_router(caddy.admin, doors, broker, http_port)
    await switch(router, await gate.open(hook_succeeded(app, deployment(), 1,
                                                        [first.instance(1)])))
    loads = caddy.admin.loads
    assert (await get(http_port, f"{app}.localhost")).text == "first"
    await switch(router, await gate.open(hook_succeeded(app, deployment(), 2,
                                                        [second.instance(2)])))
    assert (await get(http_port, f"{app}.localhost")).text == "second"
    assert caddy.admin.loads == loads, "a same-shape switch must not reload Caddy"
    generations = [p.name for p in (router.routes_dir / app).glob("gen-*")]
    assert len(generations) <= 2  # the current one and the one it replaced


async def test_files_are_put_back_when_caddy_does_not_answer(
        caddy: CaddyProcess, doors: RouterDoors, gate: Gate, broker: NatsBroker, http_port: int,
        tmp_path: Path, upstreams: Factory) -> None:
    app = app_name("putback")
    first, second = await upstreams("first"), await upstreams("second")
    router = make_router(caddy.admin, doors, broker, http_port)
    await switch(router, await gate.open(hook_succeeded(app, deployment(), 1,
                                                        [first.instance(1)])))
    router.admin = CaddyAdmin(str(tmp_path / "nobody.sock"), timeout=1.0)  # nobody there
    await switch(router, await gate.open(hook_succeeded(app, deployment(), 2,
                                                        [second.instance(2)])))
    assert (await get(http_port, f"{app}.localhost")).text == "first"


async def test_maintenance_answers_its_page_until_turned_off_and_survives_a_rebuild(
        caddy: CaddyProcess, doors: RouterDoors, bus: Bus, gate: Gate, broker: NatsBroker,
        http_port: int, upstreams: Factory) -> None:
    """On: 503 with Retry-After and the page, the instances untouched; a deploy meanwhile is
    recorded live but not served; a rebuild (a restarted router) keeps the page; off: routed."""
    app = app_name("shop")
    host = f"{app}.localhost"
    store = await open_maintenance_store(bus.js, "cli")
    router = make_router(caddy.admin, doors, broker, http_port)
    await router.rebuild()
    up = await upstreams("v1")
    await switch(router, await gate.open(hook_succeeded(app, deployment(), 1, [up.instance(1)])))
    assert (await get(http_port, host)).text == "v1"
    follower = asyncio.ensure_future(router.follow_maintenance())
    try:
        await store.turn(app, True, "back soon")

        async def page() -> bool:
            try:
                r = await get(http_port, host)
            except httpx.TransportError:  # a reload resets connections arriving then
                return False
            return r.status_code == 503

        await wait_for(page)
        answer = await get(http_port, host)
        assert answer.headers["Retry-After"] == "60"
        assert answer.text == "app is down for maintenance, retry later\nback soon\n"

        up2 = await upstreams("v2")
        await switch(router, await gate.open(hook_succeeded(app, deployment(), 2,
                                                            [up2.instance(2)])))
        live = await doors.routes.live(app)
        assert live is not None and live.release == 2
        assert (await get(http_port, host)).status_code == 503

        restarted = make_router(caddy.admin, doors, broker, http_port)
        await restarted.rebuild()
        assert (await get(http_port, host)).status_code == 503

        await store.turn(app, False)

        async def routed() -> bool:
            try:
                return (await get(http_port, host)).text == "v2"
            except httpx.TransportError:
                return False

        await wait_for(routed)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)

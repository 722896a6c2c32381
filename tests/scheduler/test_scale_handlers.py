"""The scheduler's scale and restart handlers on fakes: the app's turn, what is started and
recorded before scale.placed, and what is stopped after traffic.scaled."""

from __future__ import annotations

from typing import Any

import msgspec

from dockyard.contract.events import (
    DeploySpec,
    Fact,
    ScaleFailed,
    ScalePlaced,
    ScaleRequested,
    ScaleSucceeded,
    TrafficScaled,
    new_id,
    stamp,
)
from dockyard.contract.plan import Health, Plan, ProcessType
from dockyard.contract.state import LiveRelease
from dockyard.runtime.base import InstanceSpec
from dockyard.scheduler.app import SERVICE, SchedulerDoors
from dockyard.scheduler.handlers import Scheduler
from dockyard.settings import Settings
from tests.fakes import (
    FakeCancels,
    FakeConfig,
    FakeFormations,
    FakeInFlight,
    FakeLocks,
    FakeMessage,
    FakeNats,
    FakePlacements,
    FakeRoutes,
    FakeRuntime,
    FakeRuntimes,
    FakeSteps,
    RecordingBroker,
    service_context,
)

APP = "shop"
PLAN = Plan(processes=[ProcessType(name="web", command="./serve")], drain=0.0)
SPEC = DeploySpec(runtime="process", build_id="b", artifact="img", plan=PLAN)


async def world() -> tuple[Scheduler, Any, FakeRuntime]:
    runtime, routes = FakeRuntime(serve_web=True), FakeRoutes()
    doors = SchedulerDoors(locks=FakeLocks(), cancels=FakeCancels(), steps=FakeSteps(),
                           config=FakeConfig(), routes=routes,
                           placements=FakePlacements(), timeouts=FakeInFlight(),
                           formation=FakeFormations())
    broker = RecordingBroker()
    scheduler = Scheduler(service_context(SERVICE, broker, FakeNats(),
                                          Settings(drain=0.0, kill_grace=1.0)),
                          doors, FakeRuntimes(runtime))
    first = await runtime.start_instance(InstanceSpec(app=APP, deployment_id="d1", release=1,
                                                      process="web", index=1, artifact="img",
                                                      command="./serve"))
    await routes.set_live(LiveRelease(app=APP, release=1, deployment_id="d1", spec=SPEC,
                                      instances=[first]))
    return scheduler, broker, runtime


async def test_a_scale_waits_for_the_apps_turn_then_places_and_ends_after_the_router() -> None:
    scheduler, broker, runtime = await world()
    doors = scheduler.doors
    try:
        cmd = ScaleRequested(deployment_id=new_id(), app=APP, counts={"web": 2})
        deploy = new_id()
        assert await doors.locks.acquire(APP, deploy)
        waiting = FakeMessage()
        await scheduler.on_scale(cmd, waiting.as_message())
        assert waiting.nacks == [1.0] and broker.events == []
        await doors.locks.release(APP, deploy)

        await scheduler.on_scale(cmd, FakeMessage().as_message())
        (placed,) = broker.events
        assert isinstance(placed, ScalePlaced)
        assert len([i for i in placed.data.instances if i.process == "web"]) == 2
        record = await doors.placements.get(APP, 1)
        assert record is not None and record.operation_id == cmd.deployment_id
        assert record.deployment_id == "d1" and record.instances == placed.data.instances
        formation = await doors.formation.get(APP)
        assert formation is not None and formation.counts == {"web": 2}
        assert await doors.locks.holder(APP) == cmd.deployment_id  # until the router routed

        down = ScaleRequested(deployment_id=new_id(), app=APP, counts={"web": 1})
        routed = stamp(Fact.of(TrafficScaled, placed.data), source="dockyard/router", app=APP,
                       deployment_id=cmd.deployment_id, release=1)
        await scheduler.on_traffic_scaled(routed, FakeMessage().as_message())  # type: ignore[arg-type]
        assert isinstance(broker.events[-1], ScaleSucceeded)
        assert await doors.locks.holder(APP) is None

        await scheduler.on_scale(down, FakeMessage().as_message())
        placed_down = broker.events[-1]
        assert isinstance(placed_down, ScalePlaced) and len(placed_down.data.instances) == 1
        routed_down = stamp(Fact.of(TrafficScaled, placed_down.data), source="dockyard/router",
                            app=APP, deployment_id=down.deployment_id, release=1)
        await scheduler.on_traffic_scaled(routed_down, FakeMessage().as_message())  # type: ignore[arg-type]
        ended = broker.events[-1]
        assert isinstance(ended, ScaleSucceeded) and len(ended.data.stopped) == 1
        assert [i.id for i in await runtime.list_instances(APP)] == [
            i.id for i in placed_down.data.instances]
    finally:
        await runtime.close()


async def test_a_refused_scale_ends_failed_and_gives_the_turn_up() -> None:
    scheduler, broker, runtime = await world()
    try:
        cmd = ScaleRequested(deployment_id=new_id(), app=APP, counts={"clock": 1})
        await scheduler.on_scale(cmd, FakeMessage().as_message())
        (failed,) = broker.events
        assert isinstance(failed, ScaleFailed) and "no process type 'clock'" in failed.data.reason
        assert await scheduler.doors.locks.holder(APP) is None
        assert len(await runtime.list_instances(APP)) == 1
        assert msgspec.json.encode(failed)  # recorded and published as any event
    finally:
        await runtime.close()


async def test_an_instance_that_never_gets_healthy_ends_failed_and_changes_nothing() -> None:
    scheduler, broker, runtime = await world()
    runtime.serve_web = False  # new web instances never listen
    slow = msgspec.structs.replace(PLAN, health=Health(timeout=0.5, interval=0.1))
    routes = scheduler.doors.routes
    live = await routes.live(APP)
    assert live is not None
    await routes.set_live(msgspec.structs.replace(  # type: ignore[attr-defined]
        live, spec=msgspec.structs.replace(SPEC, plan=slow)))
    try:
        cmd = ScaleRequested(deployment_id=new_id(), app=APP, counts={"web": 2})
        await scheduler.on_scale(cmd, FakeMessage().as_message())
        (failed,) = broker.events
        assert isinstance(failed, ScaleFailed), failed
        assert len(await runtime.list_instances(APP)) == 1  # the new one was stopped
        assert await scheduler.doors.formation.get(APP) is None
        assert await scheduler.doors.placements.get(APP, 1) is None
        assert await scheduler.doors.locks.holder(APP) is None
    finally:
        await runtime.close()

"""The scheduler's handlers on in-memory doors, a fake runtime and a recording emitter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from dockyard.contract.events import (
    AfterSwitchFailed,
    AfterSwitchSucceeded,
    BuildFailed,
    DeployAborted,
    DeployFailed,
    DeploySpec,
    DeploySucceeded,
    EndData,
    Event,
    FailureData,
    HookFailed,
    InstancesData,
    ReleaseFailed,
    ReleaseSucceeded,
    RetireData,
    RetireSucceeded,
    RolloutRolledBack,
    RolloutWatched,
    SpecData,
    StartFailed,
    StartStarted,
    StartSucceeded,
    TrafficFailed,
    new_id,
)
from dockyard.contract.plan import Health, Plan, ProcessType, Rollout
from dockyard.contract.state import LiveRelease, TimedOut
from dockyard.pipeline.env import instance_env
from dockyard.runtime.base import InstanceSpec, StartError
from dockyard.scheduler.app import SERVICE, SchedulerDoors
from dockyard.scheduler.handlers import Scheduler
from dockyard.settings import Settings
from dockyard.state.locks import LockLost
from tests.events import make
from tests.fakes import (
    Crash,
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
RELEASE = 3
PLAN = Plan(processes=[ProcessType(name="worker", command="./work", scale=2),
                       ProcessType(name="web", command="./serve")])
SPEC = DeploySpec(runtime="process", build_id="v3-abc", artifact="img3+pre", build_artifact="img3",
                  plan=PLAN)
OLD_SPEC = DeploySpec(runtime="process", build_id="v2-abc", artifact="img2+pre",
                      build_artifact="img2", plan=PLAN)


@dataclass
class World:
    """A scheduler on fakes, and the fakes to look at."""

    scheduler: Scheduler
    broker: RecordingBroker
    nc: FakeNats
    runtime: FakeRuntime
    locks: FakeLocks
    cancels: FakeCancels
    steps: FakeSteps
    config: FakeConfig
    routes: FakeRoutes
    dep: str
    timeouts: FakeInFlight

    def events(self) -> list[tuple[type[Event[Any]], Any]]:
        """(type, data) of every event published so far."""
        return [(type(e), e.data) for e in self.broker.events]

    def types(self) -> list[type[Event[Any]]]:
        return [type(e) for e in self.broker.events]

    def last(self) -> Any:
        return self.broker.events[-1].data

    def ids(self, release: int) -> list[str]:
        return [r.id for r in self.runtime.instances.get(APP, []) if r.release == release]


async def world(drain: float = 0.0, keep: int = 1) -> World:
    broker, nc, runtime = RecordingBroker(), FakeNats(), FakeRuntime(serve_web=True)
    locks, cancels, steps, config, routes = (FakeLocks(), FakeCancels(), FakeSteps(),
                                             FakeConfig(), FakeRoutes())
    timeouts = FakeInFlight()
    doors = SchedulerDoors(locks=locks, cancels=cancels, steps=steps, config=config,
                           routes=routes, placements=FakePlacements(), timeouts=timeouts,
                           formation=FakeFormations())
    settings = Settings(drain=drain, kill_grace=2.0, keep_releases=keep)
    scheduler = Scheduler(service_context(SERVICE, broker, nc, settings), doors,
                          FakeRuntimes(runtime))
    dep = new_id()
    assert await locks.acquire(APP, dep)
    return World(scheduler=scheduler, broker=broker, nc=nc, runtime=runtime, locks=locks,
                 cancels=cancels, steps=steps, config=config, routes=routes, dep=dep,
                 timeouts=timeouts)


@pytest.fixture
async def w() -> Any:
    made = await world()
    yield made
    await made.runtime.close()


def released(w: World, spec: DeploySpec = SPEC) -> ReleaseSucceeded:
    return make(ReleaseSucceeded, app=APP, deployment_id=w.dep, release=RELEASE, spec=spec)


async def running(w: World, release: int, processes: tuple[str, ...] = ("web",)) -> None:
    """Instances of a release, as the runtime would list them."""
    for index, process in enumerate(processes, start=1):
        await w.runtime.start_instance(InstanceSpec(app=APP, deployment_id=f"d{release}",
                                                    release=release, process=process,
                                                    index=index, artifact="x", command="c"))
    w.runtime.started.clear()


# ---------------------------------------------------------------- start


async def test_start_runs_every_process_at_its_scale_web_first_and_waits_for_health(
        w: World) -> None:
    await w.config.change(APP, {"A": "1"}, [])
    await w.config.change(APP, {"A": "2"}, [])
    await w.config.change(APP, {"A": "3"}, [])
    holds: list[set[tuple[str, str]]] = []

    async def look(operation: str, _: object) -> None:
        holds.append(set(w.locks.holding))

    w.runtime.on_call = look
    spec = msgspec.structs.replace(SPEC, config_version=2)
    await w.scheduler.on_release_succeeded(released(w, spec), FakeMessage().as_message())

    refs = w.runtime.instances[APP]
    assert w.events() == [(StartStarted, SpecData(spec=spec)),
                          (StartSucceeded, InstancesData(spec=spec, instances=refs))]
    assert [(s.process, s.index) for s in w.runtime.started] == [("web", 1), ("worker", 1),
                                                                 ("worker", 2)]
    # Each instance gets the config version the release was made with, not the latest.
    assert w.runtime.started[1].env == instance_env({"A": "2"}, app=APP, process="worker",
                                                    index=1, artifact="img3+pre",
                                                    release=RELEASE, deployment_id=w.dep)
    assert {s.artifact for s in w.runtime.started} == {"img3+pre"}
    assert holds == [{(APP, w.dep)}] * 3
    assert w.locks.held == {APP: w.dep} and w.locks.holding == set()
    log = w.nc.texts(w.dep)
    assert log[0] == "===== start ====="
    assert f"{refs[0].id} is healthy" in log


async def test_a_worker_only_plan_starts_without_health_checks(w: World) -> None:
    spec = msgspec.structs.replace(SPEC, plan=Plan(processes=[ProcessType(name="worker",
                                                                          command="./w")]))
    await w.scheduler.on_release_succeeded(released(w, spec), FakeMessage().as_message())
    assert w.types() == [StartStarted, StartSucceeded]
    assert "no web process: nothing will be routed" in w.nc.texts(w.dep)


async def test_a_redelivered_release_event_publishes_the_recorded_start_and_starts_nothing(
        w: World) -> None:
    event = released(w)
    w.broker.crash_on = {StartSucceeded}
    with pytest.raises(Crash):
        await w.scheduler.on_release_succeeded(event, FakeMessage().as_message())
    w.broker.clear()

    await w.scheduler.on_release_succeeded(event, FakeMessage().as_message())

    assert w.types() == [StartSucceeded]
    assert len(w.runtime.started) == 3 and len(w.runtime.instances[APP]) == 3


async def test_an_instance_that_does_not_start_fails_the_start_and_the_new_ones_go(
        w: World) -> None:
    await running(w, 2)

    async def refuse_second_worker(operation: str, spec: object) -> None:
        if isinstance(spec, InstanceSpec) and (spec.process, spec.index) == ("worker", 2):
            raise StartError("worker.2 exited at once with code 1")

    w.runtime.on_call = refuse_second_worker
    await w.scheduler.on_release_succeeded(released(w), FakeMessage().as_message())

    assert w.types() == [StartStarted, StartFailed]
    failed = w.last()
    assert (failed.status, failed.reason, failed.spec) == (
        "start-error", "worker.2 exited at once with code 1", SPEC)
    assert failed.tail[-1] == ("start failed: worker.2 exited at once with code 1; new instances "
                               "removed")
    # The new release's instances are gone; the old one keeps serving.
    assert w.runtime.stopped == [f"{APP}-3-web-1", f"{APP}-3-worker-1"]
    assert w.ids(3) == [] and w.ids(2) == [f"{APP}-2-web-1"]


async def test_an_unhealthy_web_fails_the_start(w: World) -> None:
    # The fake web instance accepts connections but never answers HTTP.
    spec = msgspec.structs.replace(SPEC, plan=msgspec.structs.replace(
        PLAN, health=Health(path="/up", timeout=0.3, interval=0.05)))
    await w.scheduler.on_release_succeeded(released(w, spec), FakeMessage().as_message())
    assert w.types() == [StartStarted, StartFailed]
    assert w.last().status == "start-error"
    assert "is not healthy: HTTP GET /up did not succeed within 0.3s" in w.last().reason
    assert w.ids(3) == []
    assert len(w.runtime.stopped) == 3


async def test_a_runtime_that_cannot_start_anything_fails_the_start(w: World) -> None:
    w.runtime.fail_start = True
    await w.scheduler.on_release_succeeded(released(w), FakeMessage().as_message())
    assert w.last() == FailureData(status="start-error",
                                   reason="web.1 exited at once with code 1",
                                   tail=["===== start =====",
                                         "start failed: web.1 exited at once with code 1; new "
                                         "instances removed"],
                                   spec=SPEC)


async def test_a_config_version_the_store_lacks_fails_the_start(w: World) -> None:
    spec = msgspec.structs.replace(SPEC, config_version=7)
    await w.scheduler.on_release_succeeded(released(w, spec), FakeMessage().as_message())
    assert w.types() == [StartStarted, StartFailed]
    assert (w.last().status, w.last().reason) == ("start-error", f"{APP} has no config version 7")
    assert w.runtime.started == []


async def test_a_cancel_before_the_start_fails_it_cancelled_without_starting(w: World) -> None:
    await w.cancels.request(w.dep, "no")
    await w.scheduler.on_release_succeeded(released(w), FakeMessage().as_message())
    assert w.events() == [(StartFailed, FailureData(status="cancelled", reason="no", spec=SPEC))]
    assert w.runtime.started == []


async def test_a_start_whose_lock_another_deployment_took_starts_nothing(w: World) -> None:
    other = new_id()
    await w.locks.release(APP, w.dep)
    await w.locks.acquire(APP, other)
    with pytest.raises(LockLost):
        await w.scheduler.on_release_succeeded(released(w), FakeMessage().as_message())
    assert w.runtime.started == []
    assert await w.steps.outcome(w.dep, "start-phase") is None


# ---------------------------------------------------------------- failures before the switch


def failure(cls: type[Event[FailureData]], w: World, spec: DeploySpec | None,
            status: str) -> Event[FailureData]:
    return make(cls, app=APP, deployment_id=w.dep, release=RELEASE, status=status,
                reason="it broke", spec=spec)


@pytest.mark.parametrize(("cls", "status"), [
    (ReleaseFailed, "release-error"), (StartFailed, "start-error"), (HookFailed, "hook-error"),
    (TrafficFailed, "switch-error"), (HookFailed, "cancelled"),
])
async def test_a_failure_before_the_switch_removes_the_new_instances_only(
        w: World, cls: type[Event[FailureData]], status: str) -> None:
    await running(w, 2)
    await running(w, 3, ("web", "worker"))
    event = failure(cls, w, SPEC, status)

    await w.scheduler.on_pre_switch_failure(event, FakeMessage().as_message())  # type: ignore[arg-type]

    assert w.events() == [(DeployAborted, event.data)]
    assert w.runtime.stopped == [f"{APP}-3-web-1", f"{APP}-3-worker-2"]
    assert w.ids(2) == [f"{APP}-2-web-1"]
    assert f"removed new instances: {APP}-3-web-1, {APP}-3-worker-2" in w.nc.texts(w.dep)
    # The lock stays: on-failure runs next, and the hook-runner gives the lock up.
    assert w.locks.held == {APP: w.dep}
    # Artifacts stay until on-failure ran from them.
    assert w.runtime.removed == []


async def test_a_failed_build_has_nothing_to_remove(w: World) -> None:
    await running(w, 2)
    event = failure(BuildFailed, w, None, "build-error")
    await w.scheduler.on_pre_switch_failure(event, FakeMessage().as_message())  # type: ignore[arg-type]
    assert w.events() == [(DeployAborted, event.data)]
    assert w.runtime.stopped == []


async def test_a_redelivered_failure_aborts_again_without_stopping_twice(w: World) -> None:
    await running(w, 3)
    event = failure(HookFailed, w, SPEC, "hook-error")
    w.broker.crash_on = {DeployAborted}
    with pytest.raises(Crash):
        await w.scheduler.on_pre_switch_failure(event, FakeMessage().as_message())  # type: ignore[arg-type]
    await w.scheduler.on_pre_switch_failure(event, FakeMessage().as_message())  # type: ignore[arg-type]
    assert w.types() == [DeployAborted]
    assert w.runtime.stopped == [f"{APP}-3-web-1"]


# ---------------------------------------------------------------- the end, and retirement


def after_switch(w: World, spec: DeploySpec = SPEC) -> AfterSwitchSucceeded:
    return make(AfterSwitchSucceeded, app=APP, deployment_id=w.dep, release=RELEASE, spec=spec)


async def live(w: World, release: int, spec: DeploySpec, deployment_id: str) -> None:
    await w.routes.set_live(LiveRelease(app=APP, release=release, deployment_id=deployment_id,
                                        spec=spec, instances=[]))


async def test_success_ends_the_deploy_frees_the_lock_then_retires_the_old(w: World) -> None:
    await running(w, 2)
    await running(w, 3)
    await live(w, 2, OLD_SPEC, "d2")
    await live(w, 3, SPEC, w.dep)
    lock_at_stop: list[dict[str, str]] = []

    async def look(operation: str, _: object) -> None:
        lock_at_stop.append(dict(w.locks.held))

    w.runtime.on_call = look
    await w.scheduler.on_after_switch_succeeded(after_switch(w), FakeMessage().as_message())

    assert w.events() == [(DeploySucceeded, EndData()),
                          (RetireSucceeded, RetireData(stopped=[f"{APP}-2-web-1"]))]
    # The next deploy may start while the old instances drain.
    assert lock_at_stop == [{}]
    assert w.ids(3) == [f"{APP}-3-web-1"]
    assert w.runtime.removed == ["img2+pre", "img2"]
    log = w.nc.texts(w.dep)
    assert log[:2] == ["===== retire =====", "draining 1 old instance(s) for 0s"]


async def test_with_a_watch_window_the_old_stay_warm_until_the_router_says_it_passed(
        w: World) -> None:
    watched = msgspec.structs.replace(SPEC, plan=msgspec.structs.replace(
        SPEC.plan, rollout=Rollout(steps=[], watch=60)))
    await running(w, 2)
    await running(w, 3)
    await w.scheduler.on_after_switch_succeeded(after_switch(w, watched),
                                                FakeMessage().as_message())
    assert w.events() == [] and w.ids(2) == [f"{APP}-2-web-1"]  # nothing ends, nothing stops
    passed = make(RolloutWatched, app=APP, deployment_id=w.dep, release=RELEASE, spec=watched,
                  watch=60, reason="the watch window passed")
    await w.scheduler.on_rollout_watched(passed, FakeMessage().as_message())
    assert w.types() == [DeploySucceeded, RetireSucceeded] and w.ids(2) == []


async def test_a_rolled_back_releases_instances_go_and_the_old_stay(w: World) -> None:
    await running(w, 2)
    await running(w, 3)
    back = make(RolloutRolledBack, app=APP, deployment_id=w.dep, release=RELEASE,
                status="rolled-back", reason="switched back to v2, ...", spec=SPEC)
    await w.scheduler.on_pre_switch_failure(back, FakeMessage().as_message())
    assert w.ids(2) == [f"{APP}-2-web-1"] and w.ids(3) == []
    assert w.events() == [(DeployAborted, back.data)]


async def test_the_drain_setting_overrides_the_plans() -> None:
    w = await world(drain=0.05)
    try:
        await running(w, 2)
        await w.scheduler.on_after_switch_succeeded(after_switch(w), FakeMessage().as_message())
        assert "draining 1 old instance(s) for 0.05s" in w.nc.texts(w.dep)
    finally:
        await w.runtime.close()


async def test_artifacts_a_later_live_release_uses_are_kept(w: World) -> None:
    await live(w, 2, OLD_SPEC, "d2")
    await live(w, 3, SPEC, w.dep)
    # A rollback to v2's build went live meanwhile (the drain is off the lock).
    await live(w, 4, OLD_SPEC, "d4")
    await w.scheduler.on_after_switch_succeeded(after_switch(w), FakeMessage().as_message())
    assert w.runtime.removed == []


async def test_the_last_kept_releases_keep_their_artifacts_for_rollback() -> None:
    w = await world(keep=2)
    try:
        v1 = DeploySpec(runtime="docker", build_id="v1", artifact="img1+pre",
                        build_artifact="img1", plan=SPEC.plan)
        await live(w, 1, v1, "d1")
        await live(w, 2, OLD_SPEC, "d2")
        await live(w, RELEASE, SPEC, w.dep)
        await w.scheduler.on_after_switch_succeeded(after_switch(w), FakeMessage().as_message())
        # v2 and v3 are kept (DOCKYARD_KEEP_RELEASES=2): only v1's artifacts go.
        assert w.runtime.removed == ["img1+pre", "img1"]
    finally:
        await w.runtime.close()


async def test_an_artifact_that_cannot_be_removed_does_not_fail_the_deploy(w: World) -> None:
    await live(w, 2, OLD_SPEC, "d2")
    w.runtime.remove_error = OSError("in use")
    await w.scheduler.on_after_switch_succeeded(after_switch(w), FakeMessage().as_message())
    assert w.types() == [DeploySucceeded, RetireSucceeded]


async def test_a_redelivered_success_publishes_both_outcomes_and_stops_nothing_twice(
        w: World) -> None:
    await running(w, 2)
    event = after_switch(w)
    w.broker.crash_on = {RetireSucceeded}
    with pytest.raises(Crash):
        await w.scheduler.on_after_switch_succeeded(event, FakeMessage().as_message())
    w.broker.clear()

    await w.scheduler.on_after_switch_succeeded(event, FakeMessage().as_message())

    assert w.types() == [DeploySucceeded, RetireSucceeded]
    assert w.runtime.stopped == [f"{APP}-2-web-1"]
    assert w.locks.held == {}


async def test_the_end_of_a_deploy_leaves_another_deployments_lock_alone(w: World) -> None:
    other = new_id()
    await w.locks.release(APP, w.dep)
    await w.locks.acquire(APP, other)
    await w.scheduler.on_after_switch_succeeded(after_switch(w), FakeMessage().as_message())
    assert w.types() == [DeploySucceeded, RetireSucceeded]
    assert w.locks.held == {APP: other}


async def test_a_failed_after_switch_retires_the_old_then_aborts(w: World) -> None:
    await running(w, 2)
    await running(w, 3)
    event = make(AfterSwitchFailed, app=APP, deployment_id=w.dep, release=RELEASE,
                 status="hook-error", reason="after_switch command 'Purge' exited with code 2",
                 spec=SPEC)

    await w.scheduler.on_after_switch_failed(event, FakeMessage().as_message())

    # Traffic is on the new release: the old one goes, and the deploy ends failed.
    assert w.events() == [(RetireSucceeded, RetireData(stopped=[f"{APP}-2-web-1"])),
                          (DeployAborted, event.data)]
    assert w.ids(3) == [f"{APP}-3-web-1"]
    assert w.locks.held == {APP: w.dep}  # the hook-runner ends the deploy and frees it

    w.broker.clear()
    await w.scheduler.on_after_switch_failed(event, FakeMessage().as_message())
    assert w.types() == [RetireSucceeded, DeployAborted]
    assert w.runtime.stopped == [f"{APP}-2-web-1"]


async def test_a_failed_after_switch_without_a_spec_only_aborts(w: World) -> None:
    await running(w, 2)
    event = make(AfterSwitchFailed, app=APP, deployment_id=w.dep, release=RELEASE,
                 status="hook-error", reason="x", spec=None)
    await w.scheduler.on_after_switch_failed(event, FakeMessage().as_message())
    assert w.events() == [(DeployAborted, event.data)]
    assert w.runtime.stopped == []


# ---------------------------------------------------------------- a deploy the watchdog ended


def timed_out(w: World, status: str = "timeout") -> DeployFailed:
    return make(DeployFailed, app=APP, deployment_id=w.dep, release=RELEASE, status=status,
                reason="the start phase (scheduler) passed its deadline of 70s", spec=SPEC)


async def test_a_timed_out_deploys_instances_go_when_the_scheduler_is_back(w: World) -> None:
    await running(w, 2)
    await running(w, 3, ("web", "worker"))
    await w.scheduler.on_deploy_failed(timed_out(w), FakeMessage().as_message())
    await w.scheduler.on_deploy_failed(timed_out(w), FakeMessage().as_message())  # again
    assert w.runtime.stopped == [f"{APP}-3-web-1", f"{APP}-3-worker-2"]
    assert w.ids(2) == [f"{APP}-2-web-1"]
    assert w.events() == []  # the deploy ended: nothing more is announced


async def test_a_timed_out_deploy_already_serving_keeps_serving_and_the_old_retire(
        w: World) -> None:
    await running(w, 2)
    await running(w, 3)
    await live(w, 2, OLD_SPEC, "d2")
    await live(w, 3, SPEC, w.dep)
    await w.scheduler.on_deploy_failed(timed_out(w), FakeMessage().as_message())
    assert w.ids(3) == [f"{APP}-3-web-1"] and w.ids(2) == []
    assert w.types() == [RetireSucceeded]


async def test_other_failures_are_not_the_schedulers_to_clean(w: World) -> None:
    await running(w, 3)
    await w.scheduler.on_deploy_failed(timed_out(w, "hook-error"), FakeMessage().as_message())
    assert w.runtime.stopped == []


async def test_a_late_after_switch_of_a_timed_out_deploy_ends_it_no_more(w: World) -> None:
    w.timeouts.verdicts[w.dep] = TimedOut(app=APP, deployment_id=w.dep, release=RELEASE,
                                          phase="after-switch", reason="late")
    await w.scheduler.on_after_switch_succeeded(after_switch(w), FakeMessage().as_message())
    assert w.events() == []

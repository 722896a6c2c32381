"""The hook-runner's handlers on in-memory doors, a fake runtime and a recording emitter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from dockyard.contract.events import (
    AfterSwitchFailed,
    AfterSwitchSucceeded,
    BuildSucceeded,
    CommandData,
    CommandFinished,
    CommandResultData,
    CommandStarted,
    DeployAborted,
    DeployFailed,
    DeploySpec,
    Event,
    FailureData,
    HookFailed,
    HookStarted,
    HookSucceeded,
    InstanceRef,
    InstancesData,
    ReleaseFailed,
    ReleaseStarted,
    ReleaseSucceeded,
    SpecData,
    StartSucceeded,
    TrafficSwitched,
    event_id,
    new_id,
)
from dockyard.contract.phase import Phase
from dockyard.contract.plan import DEFAULT_MEMORY, Command, Plan, ProcessType
from dockyard.contract.state import LiveRelease, TimedOut
from dockyard.hook_runner.app import SERVICE, HookRunnerDoors
from dockyard.hook_runner.handlers import HookRunner
from dockyard.pipeline.env import oneoff_env
from dockyard.runtime.base import OneOffSpec
from dockyard.settings import Settings
from dockyard.state.locks import LockLost
from tests.events import make
from tests.fakes import (
    Crash,
    FakeCancels,
    FakeConfig,
    FakeInFlight,
    FakeLocks,
    FakeMessage,
    FakeNats,
    FakeRoutes,
    FakeRuntime,
    FakeRuntimes,
    FakeSteps,
    RecordingBroker,
    service_context,
)

APP = "shop"
RELEASE = 3
PRE = Command(label="Pre", command="./pre", timeout=60)
MIGRATE = Command(label="Migrate", command="./migrate", timeout=90)
WARM = Command(label="Warm", command="./warm", timeout=30)
PURGE = Command(label="Purge", command="./purge", timeout=30)
ALERT = Command(label="Alert", command="./alert", timeout=30)
PLAN = Plan(processes=[ProcessType(name="web", command="./serve")], predeploy=[PRE],
            release=[MIGRATE], postdeploy=[WARM], after_switch=[PURGE], on_failure=[ALERT])
SPEC = DeploySpec(runtime="process", build_id="v3-abc", artifact="img", build_artifact="img",
                  plan=PLAN)
WEB = InstanceRef(id="web-1", process="web", release=RELEASE, port=4000)


@dataclass
class World:
    """A hook-runner on fakes, and the fakes to look at."""

    runner: HookRunner
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

    def ran(self) -> list[str]:
        return [spec.command for spec in self.runtime.ran]


async def world() -> World:
    broker, nc, runtime = RecordingBroker(), FakeNats(), FakeRuntime()
    locks, cancels, steps, config, routes = (FakeLocks(), FakeCancels(), FakeSteps(),
                                             FakeConfig(), FakeRoutes())
    timeouts = FakeInFlight()
    doors = HookRunnerDoors(locks=locks, cancels=cancels, steps=steps, config=config,
                            routes=routes, timeouts=timeouts)
    runner = HookRunner(service_context(SERVICE, broker, nc, Settings(kill_grace=4.0)), doors,
                        FakeRuntimes(runtime))
    dep = new_id()
    # The builder took the lock when the deploy's turn came; it stays taken until the end.
    assert await locks.acquire(APP, dep)
    return World(runner=runner, broker=broker, nc=nc, runtime=runtime, locks=locks,
                 cancels=cancels, steps=steps, config=config, routes=routes, dep=dep,
                 timeouts=timeouts)


def about(phase: Phase, command: Command, index: int = 1, total: int = 1) -> CommandData:
    return CommandData(hook_phase=phase, label=command.label, index=index, total=total,
                       command=command.command)


def finished(phase: Phase, command: Command, exit_code: int = 0,
             tail: list[str] | None = None) -> CommandResultData:
    return CommandResultData(hook_phase=phase, label=command.label, index=1, total=1,
                             command=command.command, exit_code=exit_code, duration=0.01,
                             tail=tail if tail is not None else [f"ran {command.command}"])


def built(w: World, spec: DeploySpec = SPEC) -> BuildSucceeded:
    return make(BuildSucceeded, app=APP, deployment_id=w.dep, release=RELEASE, spec=spec)


def started(w: World, spec: DeploySpec = SPEC) -> StartSucceeded:
    return make(StartSucceeded, app=APP, deployment_id=w.dep, release=RELEASE, spec=spec,
                instances=[WEB])


def switched(w: World, spec: DeploySpec = SPEC) -> TrafficSwitched:
    return make(TrafficSwitched, app=APP, deployment_id=w.dep, release=RELEASE, spec=spec,
                instances=[WEB], previous_release=2)


def aborted(w: World, spec: DeploySpec | None = SPEC,
            status: str = "hook-error") -> DeployAborted:
    return make(DeployAborted, app=APP, deployment_id=w.dep, release=RELEASE, status=status,
                reason="postdeploy command 'Warm' exited with code 5", exit_code=5,
                tail=["boom"], command="./warm", spec=spec)


def pinned(version: int, artifact: str = "img") -> DeploySpec:
    return msgspec.structs.replace(SPEC, config_version=version, artifact=artifact)


def holding_while_running(w: World) -> list[set[tuple[str, str]]]:
    """The lock holds in force while each command runs, one set per command."""
    seen: list[set[tuple[str, str]]] = []

    async def look(operation: str, _: object) -> None:
        seen.append(set(w.locks.holding))

    w.runtime.on_call = look
    return seen


# ---------------------------------------------------------------- predeploy and release


async def test_release_runs_predeploy_then_release_on_the_committed_artifact() -> None:
    w = await world()
    await w.config.change(APP, {"A": "1"}, [])
    await w.config.change(APP, {"SECRET": "hunter22"}, [])
    holds = holding_while_running(w)
    msg = FakeMessage()

    await w.runner.on_build_succeeded(built(w), msg.as_message())

    assert w.events() == [
        (ReleaseStarted, SpecData(spec=pinned(2))),
        (CommandStarted, about(Phase.PREDEPLOY, PRE)),
        (CommandFinished, finished(Phase.PREDEPLOY, PRE)),
        (CommandStarted, about(Phase.RELEASE, MIGRATE)),
        (CommandFinished, finished(Phase.RELEASE, MIGRATE)),
        (ReleaseSucceeded, SpecData(spec=pinned(2, artifact="img+predeploy-1"))),
    ]
    assert [e.id for e in w.broker.events] == [
        event_id(w.dep, "dockyard.release.started"),
        event_id(w.dep, "dockyard.command.started", "predeploy", 1),
        event_id(w.dep, "dockyard.command.finished", "predeploy", 1),
        event_id(w.dep, "dockyard.command.started", "release", 1),
        event_id(w.dep, "dockyard.command.finished", "release", 1),
        event_id(w.dep, "dockyard.release.succeeded"),
    ]
    assert all(e.release == RELEASE and e.source == "dockyard/hook-runner"
               for e in w.broker.events)
    values = {"A": "1", "SECRET": "hunter22"}
    assert w.runtime.ran == [
        OneOffSpec(app=APP, deployment_id=w.dep, release=RELEASE, phase="predeploy",
                   container="predeploy-1", artifact="img", command="./pre",
                   env=oneoff_env(values, app=APP, container="predeploy-1", artifact="img",
                                  release=RELEASE, deployment_id=w.dep, phase="predeploy"),
                   timeout=60, memory=DEFAULT_MEMORY, kill_grace=4.0, commit=True),
        OneOffSpec(app=APP, deployment_id=w.dep, release=RELEASE, phase="release",
                   container="release-1", artifact="img+predeploy-1", command="./migrate",
                   env=oneoff_env(values, app=APP, container="release-1",
                                  artifact="img+predeploy-1", release=RELEASE,
                                  deployment_id=w.dep, phase="release"),
                   timeout=90, memory=DEFAULT_MEMORY, kill_grace=4.0, commit=False),
    ]
    assert holds == [{(APP, w.dep)}, {(APP, w.dep)}]
    # The release phase does not end the deploy: the lock stays with it.
    assert w.locks.held == {APP: w.dep} and w.locks.holding == set()
    log = w.nc.texts(w.dep)
    assert log[0] == "===== predeploy =====" and "===== release =====" in log
    assert w.nc.flushes >= 1


async def test_config_values_are_redacted_from_the_log_and_the_tails() -> None:
    w = await world()
    await w.config.change(APP, {"TOKEN": "hunter22", "ON": "1"}, [])
    leaky = Command(label="Leak", command="echo hunter22 1", timeout=5)
    spec = msgspec.structs.replace(SPEC, plan=Plan(release=[leaky]))
    await w.runner.on_build_succeeded(built(w, spec), FakeMessage().as_message())
    [result] = [data for cls, data in w.events() if cls is CommandFinished]
    assert result.tail == ["ran echo [REDACTED] 1"]
    assert not any("hunter22" in line for line in w.nc.texts(w.dep))


async def test_a_redelivered_build_event_publishes_the_recorded_outcome_and_runs_nothing(
) -> None:
    w = await world()
    event = built(w)
    await w.runner.on_build_succeeded(event, FakeMessage().as_message())
    outcome = w.broker.events[-1]
    w.broker.clear()

    await w.runner.on_build_succeeded(event, FakeMessage().as_message())

    assert w.broker.events == [outcome]
    assert w.ran() == ["./pre", "./migrate"]


async def test_killed_after_a_command_the_redelivery_runs_only_the_rest() -> None:
    w = await world()
    event = built(w)
    w.broker.crash_on = {CommandFinished}
    with pytest.raises(Crash):
        await w.runner.on_build_succeeded(event, FakeMessage().as_message())
    assert w.ran() == ["./pre"]

    await w.runner.on_build_succeeded(event, FakeMessage().as_message())

    assert w.ran() == ["./pre", "./migrate"]
    assert w.broker.events[-1].data == SpecData(spec=pinned(0, artifact="img+predeploy-1"))
    # The finished predeploy command is announced on the redelivery (same id: deduplicated).
    finishes = [e.id for e in w.broker.events if isinstance(e, CommandFinished)]
    assert finishes == [event_id(w.dep, "dockyard.command.finished", "predeploy", 1),
                        event_id(w.dep, "dockyard.command.finished", "release", 1)]


async def test_the_config_version_is_chosen_once_per_deployment() -> None:
    w = await world()
    await w.config.change(APP, {"A": "1"}, [])
    event = built(w)
    w.broker.crash_on = {ReleaseStarted}
    with pytest.raises(Crash):
        await w.runner.on_build_succeeded(event, FakeMessage().as_message())
    await w.config.change(APP, {"A": "2"}, [])

    await w.runner.on_build_succeeded(event, FakeMessage().as_message())

    assert w.events()[0] == (ReleaseStarted, SpecData(spec=pinned(1)))
    assert {spec.env["A"] for spec in w.runtime.ran} == {"1"}


async def test_a_rollback_runs_with_the_config_version_its_spec_pins() -> None:
    w = await world()
    await w.config.change(APP, {"A": "1"}, [])
    await w.config.change(APP, {"A": "2"}, [])
    rollback = msgspec.structs.replace(SPEC, config_version=1, kind="rollback")

    await w.runner.on_build_succeeded(built(w, rollback), FakeMessage().as_message())

    assert w.events()[0] == (ReleaseStarted, SpecData(spec=rollback))
    assert {spec.env["A"] for spec in w.runtime.ran} == {"1"}


async def test_a_failed_rollback_leaves_the_kept_release_it_ran_alone() -> None:
    w = await world()
    kept = msgspec.structs.replace(SPEC, artifact="img-v1+pre", build_artifact="img-v1")
    await w.routes.set_live(LiveRelease(app=APP, release=1, deployment_id="d1", spec=kept,
                                        instances=[]))
    await w.routes.set_live(LiveRelease(app=APP, release=2, deployment_id="d2",
                                        spec=msgspec.structs.replace(SPEC, artifact="img-v2"),
                                        instances=[]))
    failed = msgspec.structs.replace(kept, artifact="img-v1", kind="rollback")
    await w.runner.on_deploy_aborted(aborted(w, spec=failed), FakeMessage().as_message())
    assert w.runtime.removed == []


async def test_a_cancel_before_the_release_phase_ends_it_cancelled_without_running() -> None:
    w = await world()
    await w.cancels.request(w.dep, "stop")
    await w.runner.on_build_succeeded(built(w), FakeMessage().as_message())
    assert w.events() == [(ReleaseFailed, FailureData(status="cancelled", reason="stop",
                                                      spec=pinned(0)))]
    assert w.ran() == []


async def test_a_cancel_while_predeploy_runs_ends_the_release_cancelled() -> None:
    w = await world()

    async def cancel(operation: str, _: object) -> None:
        await w.cancels.request(w.dep, "stop")

    w.runtime.on_call = cancel
    await w.runner.on_build_succeeded(built(w), FakeMessage().as_message())
    assert w.types()[-1] is ReleaseFailed
    assert w.last() == FailureData(status="cancelled",
                                   reason="cancelled during predeploy command 'Pre'",
                                   exit_code=-128, tail=["ran ./pre", "cancelled: stopped"],
                                   command="./pre", spec=pinned(0))
    assert w.ran() == ["./pre"]


async def test_a_failing_predeploy_fails_the_release_and_release_never_runs() -> None:
    w = await world()
    w.runtime.exit_codes["./pre"] = 3
    await w.runner.on_build_succeeded(built(w), FakeMessage().as_message())
    assert w.last() == FailureData(status="release-error",
                                   reason="predeploy command 'Pre' exited with code 3",
                                   exit_code=3, tail=["ran ./pre"], command="./pre",
                                   spec=pinned(0))
    assert w.ran() == ["./pre"]
    assert w.locks.held == {APP: w.dep}


async def test_a_failing_release_fails_with_predeploys_artifact_in_the_spec() -> None:
    w = await world()
    w.runtime.exit_codes["./migrate"] = 1
    await w.runner.on_build_succeeded(built(w), FakeMessage().as_message())
    assert w.types()[-1] is ReleaseFailed
    assert w.last() == FailureData(status="release-error",
                                   reason="release command 'Migrate' exited with code 1",
                                   exit_code=1, tail=["ran ./migrate"], command="./migrate",
                                   spec=pinned(0, artifact="img+predeploy-1"))


async def test_a_release_command_past_its_timeout_fails_the_release() -> None:
    w = await world()
    w.runtime.timeouts.add("./migrate")
    await w.runner.on_build_succeeded(built(w), FakeMessage().as_message())
    assert w.last().reason == "release command 'Migrate' timed out after 90s (exit code -128)"
    assert w.last().exit_code == -128


async def test_a_runtime_that_cannot_run_the_command_fails_the_release() -> None:
    w = await world()
    w.runtime.raising["./pre"] = OSError("no such image")
    await w.runner.on_build_succeeded(built(w), FakeMessage().as_message())
    assert w.last() == FailureData(
        status="release-error", reason="predeploy command 'Pre' exited with code 1",
        exit_code=1, tail=["ran ./pre", "could not run the command: no such image"],
        command="./pre", spec=pinned(0))


async def test_a_plan_without_release_commands_passes_at_once() -> None:
    w = await world()
    spec = msgspec.structs.replace(SPEC, plan=Plan())
    await w.runner.on_build_succeeded(built(w, spec), FakeMessage().as_message())
    assert w.events() == [(ReleaseStarted, SpecData(spec=spec)),
                          (ReleaseSucceeded, SpecData(spec=spec))]
    assert w.ran() == []


async def test_a_release_whose_lock_another_deployment_took_runs_nothing() -> None:
    w = await world()
    await w.locks.release(APP, w.dep)
    other = new_id()
    await w.locks.acquire(APP, other)
    with pytest.raises(LockLost, match=f"held by {other}"):
        await w.runner.on_build_succeeded(built(w), FakeMessage().as_message())
    assert w.ran() == []
    assert await w.steps.outcome(w.dep, "release-phase") is None
    assert w.locks.held == {APP: other}


# ---------------------------------------------------------------- postdeploy (the gate)


async def test_postdeploy_passing_opens_the_gate() -> None:
    w = await world()
    holds = holding_while_running(w)
    await w.runner.on_start_succeeded(started(w), FakeMessage().as_message())
    placed = InstancesData(spec=SPEC, instances=[WEB])
    assert w.events() == [
        (HookStarted, placed),
        (CommandStarted, about(Phase.POSTDEPLOY, WARM)),
        (CommandFinished, finished(Phase.POSTDEPLOY, WARM)),
        (HookSucceeded, placed),
    ]
    [spec] = w.runtime.ran
    assert (spec.phase, spec.container, spec.artifact, spec.commit) == ("postdeploy",
                                                                       "postdeploy-1", "img",
                                                                       False)
    assert holds == [{(APP, w.dep)}]
    assert w.locks.held == {APP: w.dep}


async def test_postdeploy_failing_shuts_the_gate() -> None:
    w = await world()
    w.runtime.exit_codes["./warm"] = 5
    await w.runner.on_start_succeeded(started(w), FakeMessage().as_message())
    assert w.types() == [HookStarted, CommandStarted, CommandFinished, HookFailed]
    assert w.last() == FailureData(status="hook-error",
                                   reason="postdeploy command 'Warm' exited with code 5",
                                   exit_code=5, tail=["ran ./warm"], command="./warm", spec=SPEC)


async def test_postdeploy_runtime_failure_shuts_the_gate() -> None:
    w = await world()
    w.runtime.raising["./warm"] = RuntimeError("engine down")
    await w.runner.on_start_succeeded(started(w), FakeMessage().as_message())
    assert w.types()[-1] is HookFailed
    assert (w.last().status, w.last().exit_code) == ("hook-error", 1)


async def test_a_cancel_before_postdeploy_shuts_the_gate_without_running() -> None:
    w = await world()
    await w.cancels.request(w.dep, "abort")
    await w.runner.on_start_succeeded(started(w), FakeMessage().as_message())
    assert w.events() == [(HookFailed, FailureData(status="cancelled", reason="abort",
                                                   spec=SPEC))]
    assert w.ran() == []


async def test_a_cancel_while_postdeploy_runs_shuts_the_gate_cancelled() -> None:
    w = await world()

    async def cancel(operation: str, _: object) -> None:
        await w.cancels.request(w.dep, "abort")

    w.runtime.on_call = cancel
    await w.runner.on_start_succeeded(started(w), FakeMessage().as_message())
    assert w.types()[-1] is HookFailed
    assert (w.last().status, w.last().reason) == ("cancelled",
                                                  "cancelled during postdeploy command 'Warm'")


async def test_a_redelivered_start_event_publishes_the_recorded_gate_and_runs_nothing() -> None:
    w = await world()
    event = started(w)
    w.broker.crash_on = {HookSucceeded}
    with pytest.raises(Crash):
        await w.runner.on_start_succeeded(event, FakeMessage().as_message())
    assert await w.steps.outcome(w.dep, "postdeploy-phase") is not None
    w.broker.clear()

    await w.runner.on_start_succeeded(event, FakeMessage().as_message())

    assert w.events() == [(HookSucceeded, InstancesData(spec=SPEC, instances=[WEB]))]
    assert w.ran() == ["./warm"]


# ---------------------------------------------------------------- after the switch


async def test_after_switch_passing() -> None:
    w = await world()
    holds = holding_while_running(w)
    await w.runner.on_traffic_switched(switched(w), FakeMessage().as_message())
    assert w.events() == [
        (CommandStarted, about(Phase.AFTER_SWITCH, PURGE)),
        (CommandFinished, finished(Phase.AFTER_SWITCH, PURGE)),
        (AfterSwitchSucceeded, SpecData(spec=SPEC)),
    ]
    assert holds == [{(APP, w.dep)}]


async def test_after_switch_failing_keeps_traffic_and_reports_hook_error() -> None:
    w = await world()
    w.runtime.exit_codes["./purge"] = 2
    await w.runner.on_traffic_switched(switched(w), FakeMessage().as_message())
    assert w.types()[-1] is AfterSwitchFailed
    assert w.last() == FailureData(status="hook-error",
                                   reason="after_switch command 'Purge' exited with code 2",
                                   exit_code=2, tail=["ran ./purge"], command="./purge",
                                   spec=SPEC)


async def test_a_cancel_while_after_switch_runs_reports_it_cancelled() -> None:
    w = await world()

    async def cancel(operation: str, _: object) -> None:
        await w.cancels.request(w.dep, "enough")

    w.runtime.on_call = cancel
    await w.runner.on_traffic_switched(switched(w), FakeMessage().as_message())
    assert w.types()[-1] is AfterSwitchFailed
    assert w.last().status == "cancelled"


async def test_a_redelivered_switch_publishes_the_recorded_outcome_and_runs_nothing() -> None:
    w = await world()
    event = switched(w)
    await w.runner.on_traffic_switched(event, FakeMessage().as_message())
    w.broker.clear()
    await w.runner.on_traffic_switched(event, FakeMessage().as_message())
    assert w.events() == [(AfterSwitchSucceeded, SpecData(spec=SPEC))]
    assert w.ran() == ["./purge"]


# ---------------------------------------------------------------- on failure, and the end


async def test_on_failure_runs_told_why_then_the_deploy_ends_failed_and_the_lock_goes() -> None:
    w = await world()
    holds = holding_while_running(w)
    event = aborted(w)

    await w.runner.on_deploy_aborted(event, FakeMessage().as_message())

    assert w.events() == [
        (CommandStarted, about(Phase.ON_FAILURE, ALERT)),
        (CommandFinished, finished(Phase.ON_FAILURE, ALERT)),
        (DeployFailed, msgspec.structs.replace(event.data, spec=None)),
    ]
    [spec] = w.runtime.ran
    assert spec.env["DOCKYARD_FAILURE_STATUS"] == "hook-error"
    assert spec.env["DOCKYARD_FAILURE_REASON"] == "postdeploy command 'Warm' exited with code 5"
    assert spec.env["DOCKYARD_PHASE"] == "on_failure"
    assert holds == [{(APP, w.dep)}]
    assert w.locks.held == {}
    # The failed deploy's artifact goes once on-failure ran from it.
    assert w.runtime.removed == ["img"]
    assert w.nc.texts(w.dep)[-1] == ("deploy failed: hook-error: postdeploy command 'Warm' "
                                     "exited with code 5")


async def test_a_failing_on_failure_command_still_ends_the_deploy() -> None:
    w = await world()
    w.runtime.exit_codes["./alert"] = 9
    await w.runner.on_deploy_aborted(aborted(w), FakeMessage().as_message())
    assert w.types() == [CommandStarted, CommandFinished, DeployFailed]
    assert w.last().status == "hook-error"
    assert "on-failure: on_failure command 'Alert' exited with code 9" in w.nc.texts(w.dep)
    assert w.locks.held == {}


async def test_a_runtime_failing_on_failure_still_ends_the_deploy() -> None:
    w = await world()
    w.runtime.raising["./alert"] = OSError("gone")
    w.runtime.remove_error = OSError("image in use")
    await w.runner.on_deploy_aborted(aborted(w), FakeMessage().as_message())
    assert w.types()[-1] is DeployFailed
    assert w.locks.held == {}


async def test_without_a_build_the_deploy_ends_without_on_failure_commands() -> None:
    w = await world()
    await w.runner.on_deploy_aborted(aborted(w, spec=None, status="build-error"),
                                     FakeMessage().as_message())
    assert w.types() == [DeployFailed]
    assert w.last().status == "build-error"
    assert w.ran() == [] and w.runtime.removed == []
    assert "no build to run on-failure commands from" in w.nc.texts(w.dep)
    assert w.locks.held == {}


async def test_a_cancelled_deploy_ends_cancelled_and_on_failure_is_told_so() -> None:
    w = await world()
    await w.runner.on_deploy_aborted(aborted(w, status="cancelled"), FakeMessage().as_message())
    assert w.last().status == "cancelled"
    assert w.runtime.ran[0].env["DOCKYARD_FAILURE_STATUS"] == "cancelled"


async def test_artifacts_the_live_release_uses_are_kept() -> None:
    w = await world()
    live_spec = msgspec.structs.replace(SPEC, artifact="img-live", build_artifact="img")
    await w.routes.set_live(LiveRelease(app=APP, release=2, deployment_id="d2", spec=live_spec,
                                        instances=[]))
    failed = msgspec.structs.replace(SPEC, artifact="img+predeploy-1", build_artifact="img")
    await w.runner.on_deploy_aborted(aborted(w, spec=failed), FakeMessage().as_message())
    assert w.runtime.removed == ["img+predeploy-1"]


async def test_the_end_of_another_deployment_leaves_the_lock_to_its_holder() -> None:
    w = await world()
    other = new_id()
    await w.locks.release(APP, w.dep)
    await w.locks.acquire(APP, other)
    await w.runner.on_deploy_aborted(aborted(w, spec=None), FakeMessage().as_message())
    assert w.types() == [DeployFailed]
    assert w.locks.held == {APP: other}


async def test_a_redelivered_abort_ends_the_deploy_again_without_rerunning_anything() -> None:
    w = await world()
    event = aborted(w)
    w.broker.crash_on = {DeployFailed}
    with pytest.raises(Crash):
        await w.runner.on_deploy_aborted(event, FakeMessage().as_message())
    assert w.locks.held == {APP: w.dep}  # killed before giving it up
    w.broker.clear()

    await w.runner.on_deploy_aborted(event, FakeMessage().as_message())

    assert w.types() == [DeployFailed]
    assert w.ran() == ["./alert"] and w.runtime.removed == ["img"]
    assert w.locks.held == {}


# ---------------------------------------------------------------- a deploy the watchdog ended


def timed_out(w: World, spec: DeploySpec | None = SPEC) -> DeployFailed:
    return make(DeployFailed, app=APP, deployment_id=w.dep, release=RELEASE, status="timeout",
                reason="the start phase (scheduler) passed its deadline of 70s", spec=spec)


def verdict(w: World, phase: str = "start") -> TimedOut:
    return TimedOut(app=APP, deployment_id=w.dep, release=RELEASE, phase=phase,
                    reason="the start phase (scheduler) passed its deadline of 70s")


async def test_a_timed_out_deploy_runs_on_failure_once_outside_the_lock_and_ends_no_more(
) -> None:
    w = await world()
    holds = holding_while_running(w)
    await w.locks.release(APP, w.dep)  # the watchdog gave it up; another deploy may hold it
    assert await w.locks.acquire(APP, "f" * 32)
    await w.cancels.request(w.dep, "timed out")  # as the watchdog marks it
    event = timed_out(w)

    await w.runner.on_deploy_failed(event, FakeMessage().as_message())
    await w.runner.on_deploy_failed(event, FakeMessage().as_message())  # redelivered

    assert w.types() == [CommandStarted, CommandFinished]  # no second end
    [spec] = w.runtime.ran
    assert spec.env["DOCKYARD_FAILURE_STATUS"] == "timeout"
    assert holds == [set()]
    assert w.locks.held == {APP: "f" * 32}
    assert w.runtime.removed == ["img"]


async def test_other_ends_leave_on_failure_to_the_abort_path() -> None:
    w = await world()
    for event in (timed_out(w, spec=None), msgspec.structs.replace(
            timed_out(w), data=msgspec.structs.replace(timed_out(w).data, status="hook-error"))):
        await w.runner.on_deploy_failed(event, FakeMessage().as_message())
    assert w.types() == [] and w.ran() == []


async def test_a_late_abort_of_a_timed_out_deploy_ends_it_no_more() -> None:
    w = await world()
    w.timeouts.verdicts[w.dep] = verdict(w)
    await w.runner.on_deploy_aborted(aborted(w, status="cancelled"), FakeMessage().as_message())
    assert w.types() == [] and w.ran() == []


async def test_timed_out_before_its_release_phase_on_failure_gets_the_current_config() -> None:
    w = await world()
    await w.config.change(APP, {"A": "1"}, [])
    await w.runner.on_deploy_failed(timed_out(w), FakeMessage().as_message())
    [spec] = w.runtime.ran
    assert spec.env["A"] == "1"

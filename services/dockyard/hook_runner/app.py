"""The hook-runner's doors: the events that start each hook phase in, and one-off run requests;
phase outcomes out (a run's output and exit code go to its log)."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.bus.service import On, Service, ServiceContext
from dockyard.contract.events import (
    AfterSwitchFailed,
    AfterSwitchSucceeded,
    BuildSucceeded,
    CommandFinished,
    CommandStarted,
    DeployAborted,
    DeployFailed,
    HookFailed,
    HookStarted,
    HookSucceeded,
    ReleaseFailed,
    ReleaseStarted,
    ReleaseSucceeded,
    RunRequested,
    StartSucceeded,
    TrafficSwitched,
)
from dockyard.hook_runner.handlers import HookRunner
from dockyard.runtime.select import Runtimes
from dockyard.state.cancels import CancelReader
from dockyard.state.config import ConfigReader
from dockyard.state.inflight import TimeoutReader
from dockyard.state.locks import AppLocks
from dockyard.state.routes import RouteReader
from dockyard.state.steps import StepRecords


@dataclass(frozen=True)
class HookRunnerDoors:
    """The state the hook-runner uses."""

    locks: AppLocks
    cancels: CancelReader
    steps: StepRecords
    config: ConfigReader
    routes: RouteReader
    timeouts: TimeoutReader


async def make(ctx: ServiceContext, doors: HookRunnerDoors) -> HookRunner:
    """The hook-runner, with the runtimes its one-offs run on."""
    runtimes = Runtimes(ctx.settings)
    ctx.on_stop(runtimes.close)
    return HookRunner(ctx, doors, runtimes)


SERVICE = Service(
    name="hook-runner",
    doors=HookRunnerDoors,
    subscribes=(
        On(BuildSucceeded, "on_build_succeeded"),
        On(StartSucceeded, "on_start_succeeded"),
        On(TrafficSwitched, "on_traffic_switched"),
        On(DeployAborted, "on_deploy_aborted"),
        # A deploy the watchdog ended (`timeout`): on-failure runs, whenever we are back.
        On(DeployFailed, "on_deploy_failed"),
        On(RunRequested, "on_run_requested"),
    ),
    publishes=(ReleaseStarted, ReleaseSucceeded, ReleaseFailed, HookStarted, HookSucceeded,
               HookFailed, AfterSwitchSucceeded, AfterSwitchFailed, DeployFailed,
               CommandStarted, CommandFinished),
    make=make,
    logs=True,
)

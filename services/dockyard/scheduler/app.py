"""The scheduler's doors: release, failure and after-switch events in; start, abort, end out;
the running instances' output shipped to dockyard.applog.*."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.bus.service import On, Service, ServiceContext
from dockyard.contract.events import (
    AfterSwitchFailed,
    AfterSwitchSucceeded,
    BuildFailed,
    DeployAborted,
    DeployFailed,
    DeploySucceeded,
    DestroyStopped,
    DestroyUnrouted,
    HookFailed,
    ReleaseFailed,
    ReleaseSucceeded,
    RetireSucceeded,
    RolloutRolledBack,
    RolloutWatched,
    ScaleFailed,
    ScalePlaced,
    ScaleRequested,
    ScaleSucceeded,
    StartFailed,
    StartStarted,
    StartSucceeded,
    TrafficFailed,
    TrafficScaled,
)
from dockyard.runtime.select import Runtimes
from dockyard.scheduler.applogs import AppLogShipper
from dockyard.scheduler.handlers import Scheduler
from dockyard.state.cancels import CancelReader
from dockyard.state.config import ConfigReader
from dockyard.state.formation import FormationWriter
from dockyard.state.inflight import TimeoutReader
from dockyard.state.locks import AppLocks
from dockyard.state.placements import PlacementKeeper
from dockyard.state.routes import RouteReader
from dockyard.state.steps import StepRecords


@dataclass(frozen=True)
class SchedulerDoors:
    """The state the scheduler uses."""

    locks: AppLocks
    cancels: CancelReader
    steps: StepRecords
    config: ConfigReader
    routes: RouteReader
    placements: PlacementKeeper
    timeouts: TimeoutReader
    formation: FormationWriter


async def make(ctx: ServiceContext, doors: SchedulerDoors) -> Scheduler:
    """The scheduler, with the runtimes its instances run on."""
    runtimes = Runtimes(ctx.settings)
    ctx.on_stop(runtimes.close)
    # The running instances' output, shipped to dockyard.applog.* for `dockyard logs APP`.
    shipper = AppLogShipper(ctx.nc, doors.routes, doors.config, runtimes)
    ctx.spawn(shipper.run())
    ctx.on_stop(shipper.close)
    return Scheduler(ctx, doors, runtimes)


SERVICE = Service(
    name="scheduler",
    doors=SchedulerDoors,
    subscribes=(
        On(ReleaseSucceeded, "on_release_succeeded"),
        # Failures before the switch: the new instances go, then on-failure runs.
        On(BuildFailed, "on_pre_switch_failure"),
        On(ReleaseFailed, "on_pre_switch_failure"),
        On(StartFailed, "on_pre_switch_failure"),
        On(HookFailed, "on_pre_switch_failure"),
        On(TrafficFailed, "on_pre_switch_failure"),
        On(RolloutRolledBack, "on_pre_switch_failure"),
        On(RolloutWatched, "on_rollout_watched"),
        On(AfterSwitchSucceeded, "on_after_switch_succeeded"),
        On(AfterSwitchFailed, "on_after_switch_failed"),
        # A deploy the watchdog ended (`timeout`): its new instances go, whenever we are back.
        On(DeployFailed, "on_deploy_failed"),
        # Scale and restart: in the app's turn; the router routes before extras stop.
        On(ScaleRequested, "on_scale"),
        On(TrafficScaled, "on_traffic_scaled"),
        On(DestroyUnrouted, "on_destroy_unrouted"),
    ),
    publishes=(StartStarted, StartSucceeded, StartFailed, DeployAborted, DeploySucceeded,
               RetireSucceeded, ScalePlaced, ScaleSucceeded, ScaleFailed, DestroyStopped),
    make=make,
    logs=True,
    app_logs=True,
)

"""The builder's doors: deploy and cancel requests in; queue, build and failure facts out."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.builder.handlers import Builder
from dockyard.bus.service import On, Service, ServiceContext
from dockyard.contract.events import (
    BuildFailed,
    BuildStarted,
    BuildSucceeded,
    CancelRequested,
    DeployFailed,
    DeployQueued,
    DeployRequested,
    DestroyFailed,
    DestroyRequested,
    DestroyStarted,
    DestroyStopped,
    DestroySucceeded,
)
from dockyard.runtime.select import Runtimes
from dockyard.state.builds import ManifestKeeper
from dockyard.state.cancels import CancelMarkers
from dockyard.state.config import ConfigForgetter
from dockyard.state.hooks import HookKeeper
from dockyard.state.inflight import InFlightRecords
from dockyard.state.locks import AppLocks
from dockyard.state.maintenance import MaintenanceForgetter
from dockyard.state.queue import DeployQueue
from dockyard.state.releases import ReleaseNumbers
from dockyard.state.routes import RouteReader
from dockyard.state.sinks import SinkForgetter
from dockyard.state.sources import SourceKeeper
from dockyard.state.steps import StepRecords


@dataclass(frozen=True)
class BuilderDoors:
    """The state the builder uses."""

    queue: DeployQueue
    locks: AppLocks
    releases: ReleaseNumbers
    steps: StepRecords
    cancels: CancelMarkers
    hooks: HookKeeper
    manifests: ManifestKeeper
    sources: SourceKeeper
    routes: RouteReader
    inflight: InFlightRecords
    # Written by operators (CLI, api); the builder forgets them, unread, when it destroys an app.
    config: ConfigForgetter
    sinks: SinkForgetter
    maintenance: MaintenanceForgetter


async def make(ctx: ServiceContext, doors: BuilderDoors) -> Builder:
    """The builder, with the runtimes it builds on, and its watchdog running."""
    runtimes = Runtimes(ctx.settings)
    ctx.on_stop(runtimes.close)
    builder = Builder(ctx, doors, runtimes)
    ctx.spawn(builder.watch())
    return builder


SERVICE = Service(
    name="builder",
    doors=BuilderDoors,
    subscribes=(
        On(DeployRequested, "on_deploy"),
        On(CancelRequested, "on_cancel"),
        # Every event: the watchdog's record of each deploy's phase and deadline.
        On(None, "on_event", new_only=True),
        On(DestroyRequested, "on_destroy"),
        On(DestroyStopped, "on_destroy_stopped"),
    ),
    publishes=(DeployQueued, BuildStarted, BuildSucceeded, BuildFailed, DeployFailed,
               DestroyStarted, DestroySucceeded, DestroyFailed),
    make=make,
    logs=True,
)

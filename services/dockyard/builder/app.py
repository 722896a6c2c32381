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
)
from dockyard.runtime.select import Runtimes
from dockyard.state.builds import ManifestStore
from dockyard.state.cancels import CancelMarkers
from dockyard.state.hooks import HookReader
from dockyard.state.inflight import InFlightRecords
from dockyard.state.locks import AppLocks
from dockyard.state.queue import DeployQueue
from dockyard.state.releases import ReleaseNumbers
from dockyard.state.routes import RouteReader
from dockyard.state.sources import SourceReader
from dockyard.state.steps import StepRecords


@dataclass(frozen=True)
class BuilderDoors:
    """The state the builder uses."""

    queue: DeployQueue
    locks: AppLocks
    releases: ReleaseNumbers
    steps: StepRecords
    cancels: CancelMarkers
    hooks: HookReader
    manifests: ManifestStore
    sources: SourceReader
    routes: RouteReader
    inflight: InFlightRecords


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
    ),
    publishes=(DeployQueued, BuildStarted, BuildSucceeded, BuildFailed, DeployFailed),
    make=make,
    logs=True,
)

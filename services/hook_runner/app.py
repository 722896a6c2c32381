"""Hook-runner wiring."""

from __future__ import annotations

from dockyard.bus.broker import durable_subscriber
from dockyard.bus.service import ServiceContext
from dockyard.hook_runner.handlers import HookRunner
from dockyard.runtime.select import Runtimes
from dockyard.schemas import subjects


async def setup(ctx: ServiceContext) -> None:
    """Subscribe the hook-runner to the events that start each hook phase."""
    runtimes = Runtimes(ctx.settings)
    runner = HookRunner(ctx, runtimes)
    for phase, outcome, handler in (
        ("build", "succeeded", runner.on_build_succeeded),
        ("start", "succeeded", runner.on_start_succeeded),
        ("traffic", "switched", runner.on_traffic_switched),
        ("deploy", "aborted", runner.on_deploy_aborted),
    ):
        durable_subscriber(ctx.broker, subjects.events_of(phase, outcome),
                           f"hook-runner-{phase}-{outcome}", subjects.STREAM_EVENTS)(handler)
    ctx.on_stop(runtimes.close)

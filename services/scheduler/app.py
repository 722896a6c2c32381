"""Scheduler wiring."""

from __future__ import annotations

from dockyard.bus.broker import durable_subscriber
from dockyard.bus.service import ServiceContext
from dockyard.runtime.select import Runtimes
from dockyard.scheduler.handlers import Scheduler
from dockyard.schemas import subjects

# Failures before the switch: the scheduler removes the new instances, then on-failure runs.
PRE_SWITCH_FAILURES = ("build", "release", "start", "hook", "traffic")


async def setup(ctx: ServiceContext) -> None:
    """Subscribe the scheduler to the events that start, remove and retire instances."""
    runtimes = Runtimes(ctx.settings)
    scheduler = Scheduler(ctx, runtimes)

    def sub(phase: str, outcome: str, handler: object) -> None:
        durable_subscriber(ctx.broker, subjects.events_of(phase, outcome),
                           f"scheduler-{phase}-{outcome}", subjects.STREAM_EVENTS)(handler)  # type: ignore[arg-type]

    sub("release", "succeeded", scheduler.on_release_succeeded)
    for phase in PRE_SWITCH_FAILURES:
        sub(phase, "failed", scheduler.on_pre_switch_failure)
    sub("afterswitch", "succeeded", scheduler.on_after_switch_succeeded)
    sub("afterswitch", "failed", scheduler.on_after_switch_failed)
    ctx.on_stop(runtimes.close)

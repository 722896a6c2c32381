"""Builder wiring."""

from __future__ import annotations

from dockyard.builder.handlers import Builder
from dockyard.bus.broker import durable_subscriber
from dockyard.bus.service import ServiceContext
from dockyard.runtime.select import Runtimes
from dockyard.schemas import subjects


async def setup(ctx: ServiceContext) -> None:
    """Subscribe the builder to deploy and cancel requests."""
    runtimes = Runtimes(ctx.settings)
    builder = Builder(ctx, runtimes)
    durable_subscriber(ctx.broker, subjects.CMD_DEPLOY, "builder-deploy",
                       subjects.STREAM_COMMANDS)(builder.on_deploy)
    durable_subscriber(ctx.broker, subjects.CMD_CANCEL, "builder-cancel",
                       subjects.STREAM_COMMANDS)(builder.on_cancel)
    ctx.on_stop(runtimes.close)

"""What the hook-runner and scheduler share: run a deployment's step once, log to its deploy log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.nats.annotations import NatsMessage

from dockyard.bus.broker import publish
from dockyard.bus.logs import DeployLog
from dockyard.bus.service import ServiceContext
from dockyard.pipeline import cancel, runs
from dockyard.pipeline.emit import Emitter
from dockyard.pipeline.progress import working
from dockyard.runtime.select import Runtimes
from dockyard.schemas.events import DeploySpec, Event, Failure


class StepService:
    """A service whose handlers each run one recorded step of a deployment."""

    service = ""

    def __init__(self, ctx: ServiceContext, runtimes: Runtimes) -> None:
        self.ctx = ctx
        self.stores = ctx.stores
        self.runtimes = runtimes
        self.emitter = Emitter(ctx.broker, self.service)

    async def _once(self, event: Event, step: str, msg: NatsMessage,
                    body: Callable[[], Awaitable[Event]]) -> None:
        """Run a step unless it already ran for this deployment (then publish its outcome again)."""
        previous = await runs.replay(self.stores.runs, event.deployment_id, step)
        if previous is not None:
            await publish(self.ctx.broker, previous)
            return
        async with working(msg, self.ctx.settings.ack_wait / 3):
            outcome = await body()
        await runs.finish(self.stores.runs, event.deployment_id, step, outcome)

    async def _cancelled(self, event: Event, failed: type[Failure],
                         spec: DeploySpec) -> Event | None:
        """If the deployment was cancelled, publish this phase's failure with status cancelled."""
        reason = await cancel.reason(self.stores.cancel, event.deployment_id)
        if reason is None:
            return None
        return await self.emitter.forward(failed, event, status="cancelled", reason=reason,
                                          spec=spec)

    def _log(self, event: Event) -> DeployLog:
        return DeployLog(self.stores.nc, event.subject, event.deployment_id, self.service)

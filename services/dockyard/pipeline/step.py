"""Run a deployment's step once: its outcome is recorded before it is published.

A redelivered trigger finds the record and publishes the same event again (JetStream drops the
duplicate by its id), so a step whose outcome exists never runs again, whatever failed after.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from dockyard.bus.emit import Emitter
from dockyard.contract.events import Event
from dockyard.state.steps import StepRecords
from dockyard.state.tasks import background


class Acker(Protocol):
    """The part of a JetStream message a long step needs: telling the server it still works."""

    async def in_progress(self) -> None:
        """Reset the message's ack wait."""


@contextlib.asynccontextmanager
async def working(msg: Acker, every: float) -> AsyncIterator[None]:
    """Send in-progress acks every `every` seconds while the block runs."""

    async def beat() -> None:
        with contextlib.suppress(Exception):  # a lost beat only risks an early redelivery
            await msg.in_progress()

    async with background(beat, every=every):
        yield


class Steps:
    """Runs steps of deployments once, for one service."""

    def __init__(self, records: StepRecords, emitter: Emitter, beat: float) -> None:
        self.records = records
        self.emitter = emitter
        self.beat = beat

    async def once(self, deployment_id: str, step: str, msg: Acker,
                   body: Callable[[], Awaitable[Event[Any]]]) -> Event[Any]:
        """The step's outcome event: recorded earlier, or made by running body now."""
        previous = await self.records.outcome(deployment_id, step)
        if previous is not None:
            return await self.emitter.emit(previous)
        async with working(msg, self.beat):
            event = await body()
        # Too big to record or publish: refused once (dead letter), not built again and again.
        self.emitter.check(event)
        await self.records.finish(deployment_id, step, event)
        return await self.emitter.emit(event)

"""Build events with their envelope and publish them, deduplicated by a deterministic id."""

from __future__ import annotations

from typing import Any, TypeVar

from faststream.nats import NatsBroker

from dockyard.bus.broker import publish
from dockyard.schemas.events import Event, event_id, type_of

E = TypeVar("E", bound=Event)


class Emitter:
    """Publishes events on behalf of one service."""

    def __init__(self, broker: NatsBroker, service: str) -> None:
        self.broker = broker
        self.source = f"dockyard/{service}"

    def make(self, cls: type[E], *, app: str, deployment_id: str, release: int,
             id_parts: tuple[object, ...] = (), **fields: Any) -> E:
        """An event with its envelope filled in."""
        return cls(id=event_id(deployment_id, type_of(cls), *id_parts), source=self.source,
                   subject=app, deployment_id=deployment_id, release=release, **fields)

    async def emit(self, cls: type[E], *, app: str, deployment_id: str, release: int,
                   id_parts: tuple[object, ...] = (), **fields: Any) -> E:
        """Make and publish an event."""
        event = self.make(cls, app=app, deployment_id=deployment_id, release=release,
                          id_parts=id_parts, **fields)
        await publish(self.broker, event)
        return event

    async def forward(self, cls: type[E], after: Event, **fields: Any) -> E:
        """Publish the next event of the same deployment (same app, deployment, release)."""
        return await self.emit(cls, app=after.subject, deployment_id=after.deployment_id,
                               release=after.release, **fields)

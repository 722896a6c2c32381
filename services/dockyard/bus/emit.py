"""Publish the facts a service decided, as events with their envelope, only of declared types."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import structlog
from faststream.nats import NatsBroker

from dockyard.bus.broker import PayloadTooLarge, check_size, publish
from dockyard.contract import codec
from dockyard.contract.events import Event, Fact, Message, stamp

log = structlog.get_logger()

D = TypeVar("D")
# A publish JetStream did not confirm is tried again, for up to this long in all.
PUBLISH_PATIENCE = 60.0


class UndeclaredEvent(TypeError):
    """A service tried to publish an event type its declaration does not list."""


async def publish_patiently(broker: NatsBroker, message: Message,
                            patience: float = PUBLISH_PATIENCE) -> None:
    """Publish, retrying (deduplicated by id) while the bus does not confirm, up to `patience`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    delay = 0.1
    while True:
        try:
            await publish(broker, message)
            return
        except PayloadTooLarge:
            raise  # as big the next time: waiting cannot help
        except Exception as exc:
            if loop.time() + delay > deadline:
                raise
            log.warning("publish not confirmed, retrying", type=message.type, error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


class Emitter:
    """Stamps and publishes the events of one service."""

    def __init__(self, broker: NatsBroker, service: str,
                 declared: tuple[type[Event[Any]], ...]) -> None:
        self.broker = broker
        self.source = f"dockyard/{service}"
        self.declared = frozenset(declared)

    def stamp(self, fact: Fact[Any], *, app: str, deployment_id: str, release: int) -> Event[Any]:
        """The event of a fact, with this service's envelope (checked against the declaration)."""
        if fact.cls not in self.declared:
            raise UndeclaredEvent(f"{self.source} does not declare {fact.cls.__name__}")
        return stamp(fact, source=self.source, app=app, deployment_id=deployment_id,
                     release=release)

    def after(self, trigger: Event[Any], fact: Fact[Any]) -> Event[Any]:
        """The event of a fact about the same deployment as `trigger`."""
        return self.stamp(fact, app=trigger.subject, deployment_id=trigger.deployment_id,
                          release=trigger.release)

    def check(self, event: Event[Any]) -> Event[Any]:
        """The event, if it fits on the bus (PayloadTooLarge, never retried, if not)."""
        check_size(self.broker, event, codec.encode(event))
        return event

    async def emit(self, event: Event[Any]) -> Event[Any]:
        """Publish a stamped event (patiently)."""
        await publish_patiently(self.broker, event)
        return event

"""Event in → deliveries out: send one event to its due sinks, record each attempt as an event."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from nats.js.kv import KeyValue

from dockyard.notifier import ledger
from dockyard.notifier.delivery import (
    DeliveryState,
    after_attempt,
    is_due,
    redelivery_delay,
    state_key,
)
from dockyard.notifier.sender import Sender
from dockyard.notifier.sinks import Sink, list_sinks, request, select
from dockyard.schemas.events import (
    Event,
    NotificationAttempted,
    NotificationDelivered,
    NotificationFailed,
    event_id,
    type_of,
)

SOURCE = "dockyard/notifier"


@dataclass
class Notifier:
    """What the handler needs: the buckets, the HTTP sender, a way to publish, the global sinks."""

    notify: KeyValue
    runs: KeyValue
    sender: Sender
    publish: Callable[[Event], Awaitable[None]]
    global_sinks: list[Sink] = field(default_factory=list)
    clock: Callable[[], float] = time.time
    log: Any = field(default_factory=structlog.get_logger)


async def handle(n: Notifier, event: Event) -> float | None:
    """Deliver to every matching sink that is due; seconds until a redelivery is needed, or None."""
    etype = type_of(type(event))
    chosen = select(n.global_sinks + await list_sinks(n.notify, event.app), etype)
    if not chosen:
        return None
    states = await asyncio.gather(*(_deliver(n, event, sink) for sink in chosen))
    return redelivery_delay(states, n.clock())


async def _deliver(n: Notifier, event: Event, sink: Sink) -> DeliveryState:
    key = state_key(event.id, sink.name)
    state, revision = await ledger.load(n.runs, key)
    if not is_due(state, n.clock()):
        return state
    log = n.log.bind(app=event.app, deployment_id=event.deployment_id, event_id=event.id,
                     sink=sink.name, attempt=state.attempts + 1)
    log.info("notifying", kind=sink.kind)
    body, headers = request(sink, event)
    result = await n.sender.post(sink.url, body, headers, sink.timeout)
    new = after_attempt(state, result, max_attempts=sink.max_attempts, backoff=sink.backoff,
                        now=n.clock())
    await ledger.save(n.runs, key, new, revision)
    at = datetime.fromtimestamp(n.clock(), UTC)
    for outcome in notification_events(event, sink.name, new, at):
        await n.publish(outcome)
    log.info("notified", status=new.status, status_code=result.status_code, error=result.error)
    if new.status == "failed":
        log.warning("notification failed", attempts=new.attempts, reason=result.describe())
    return new


def notification_events(event: Event, sink: str, state: DeliveryState,
                        at: datetime) -> list[Event]:
    """The events recording where a delivery stands after its latest attempt."""
    assert state.last is not None, "only called after an attempt"
    last = state.last
    envelope: dict[str, Any] = {"source": SOURCE, "subject": event.subject, "time": at,
                                "deployment_id": event.deployment_id, "release": event.release}

    def ident(cls: type[Event], *parts: object) -> str:
        return event_id(event.deployment_id, type_of(cls), event.id, sink, *parts)

    out: list[Event] = [NotificationAttempted(
        id=ident(NotificationAttempted, state.attempts), sink=sink, event_id=event.id,
        attempt=state.attempts, status_code=last.status_code, error=last.error, **envelope)]
    if state.status == "delivered" and last.status_code is not None:
        out.append(NotificationDelivered(
            id=ident(NotificationDelivered), sink=sink, event_id=event.id,
            attempts=state.attempts, status_code=last.status_code, **envelope))
    elif state.status == "failed":
        out.append(NotificationFailed(
            id=ident(NotificationFailed), sink=sink, event_id=event.id,
            attempts=state.attempts, reason=last.describe(), **envelope))
    return out

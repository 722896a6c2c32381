"""Event in → deliveries out: send one event to its due sinks, record each attempt as an event."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from dockyard.contract.events import (
    DestroySucceeded,
    Event,
    Fact,
    NotificationAttemptData,
    NotificationAttempted,
    NotificationDelivered,
    NotificationDeliveredData,
    NotificationFailed,
    NotificationFailedData,
    stamp,
    type_of,
)
from dockyard.contract.names import InvalidName, check_app
from dockyard.contract.sinks import InvalidSink, Sink, validate
from dockyard.contract.state import AttemptResult, DeliveryState
from dockyard.notifier.delivery import (
    after_attempt,
    is_due,
    redelivery_delay,
    refused,
    state_key,
    status_after,
)
from dockyard.notifier.sender import Sender
from dockyard.notifier.sinks import request, select
from dockyard.state.deliveries import Deliveries
from dockyard.state.sinks import SinkReader

SOURCE = "dockyard/notifier"


@dataclass
class Notifier:
    """What the handler needs: its doors, the HTTP sender, a way to publish, the global sinks."""

    sinks: SinkReader
    deliveries: Deliveries
    sender: Sender
    publish: Callable[[Event[Any]], Awaitable[Any]]
    global_sinks: list[Sink] = field(default_factory=list)
    clock: Callable[[], float] = time.time
    log: Any = field(default_factory=structlog.get_logger)


async def handle(n: Notifier, event: Event[Any]) -> float | None:
    """Deliver to every matching sink that is due; seconds until a redelivery is needed, or None."""
    etype = type_of(type(event))
    try:
        own = (await n.sinks.load(check_app(event.app))).sinks
    except InvalidName:
        own = []  # no sink can be stored under such a name, so an event about it has none
    else:
        if isinstance(event, DestroySucceeded):
            # The app is gone: its sinks' failure counts must not greet a new app of the name.
            await n.deliveries.forget_statuses(event.app)
    chosen = select(n.global_sinks + own, etype)
    if not chosen:
        return None
    states = await asyncio.gather(*(_deliver(n, event, sink) for sink in chosen))
    return redelivery_delay(states, n.clock())


async def _deliver(n: Notifier, event: Event[Any], sink: Sink) -> DeliveryState:
    key = state_key(event.id, sink.name)
    state, revision = await n.deliveries.load(key)
    if not is_due(state, n.clock()):
        return state
    try:
        usable = validate(sink)
    except InvalidSink as exc:
        # Stored around `notify add` (a raw KV write, or before secrets were checked): the sink's
        # own problem, recorded and given up at once rather than retried or dead-lettered.
        result = AttemptResult(error=f"the sink cannot be used: {exc.problem}")
        new = refused(state, result)
    else:
        body, headers = request(usable, event)
        result = await n.sender.post(usable.url, body, headers, usable.timeout)
        new = after_attempt(state, result, max_attempts=sink.max_attempts, backoff=sink.backoff,
                            now=n.clock())
    await n.deliveries.save(key, new, revision)
    at = datetime.fromtimestamp(n.clock(), UTC)
    await n.deliveries.change_status(event.app, sink.name, lambda s: status_after(s, new, at))
    for outcome in notification_events(event, sink.name, new, at):
        await n.publish(outcome)
    _log_attempt(n, event, sink, new)
    return new


def _log_attempt(n: Notifier, event: Event[Any], sink: Sink, state: DeliveryState) -> None:
    """One line per attempt: delivered, failed with a retry due, or given up."""
    assert state.last is not None, "only called after an attempt"
    log = n.log.bind(app=event.app, deployment_id=event.deployment_id, event_id=event.id,
                     sink=sink.name, kind=sink.kind, attempt=state.attempts)
    if state.status == "delivered":
        log.info("notified", status_code=state.last.status_code)
    elif state.status == "failed":
        log.warning("notification failed, giving up", reason=state.last.describe())
    else:
        log.warning("notification attempt failed, will retry", reason=state.last.describe(),
                    of=sink.max_attempts, retry_in=round(max(state.next_at - n.clock(), 0), 3))


def notification_events(event: Event[Any], sink: str, state: DeliveryState,
                        at: datetime) -> list[Event[Any]]:
    """The events recording where a delivery stands after its latest attempt."""
    assert state.last is not None, "only called after an attempt"
    last = state.last
    facts: list[Fact[Any]] = [Fact.of(NotificationAttempted, NotificationAttemptData(
        sink=sink, event_id=event.id, attempt=state.attempts, status_code=last.status_code,
        error=last.error), event.id, sink, state.attempts)]
    if state.status == "delivered" and last.status_code is not None:
        facts.append(Fact.of(NotificationDelivered, NotificationDeliveredData(
            sink=sink, event_id=event.id, attempts=state.attempts,
            status_code=last.status_code), event.id, sink))
    elif state.status == "failed":
        facts.append(Fact.of(NotificationFailed, NotificationFailedData(
            sink=sink, event_id=event.id, attempts=state.attempts, reason=last.describe()),
            event.id, sink))
    return [stamp(f, source=SOURCE, app=event.subject, deployment_id=event.deployment_id,
                  release=event.release, time=at) for f in facts]

"""The notifier's doors: every event in (new ones only, the first time); delivery facts out."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from faststream.nats.annotations import NatsMessage

from dockyard.bus.service import On, Service, ServiceContext
from dockyard.contract.events import (
    AnyEvent,
    NotificationAttempted,
    NotificationDelivered,
    NotificationFailed,
)
from dockyard.contract.sinks import InvalidSink
from dockyard.notifier.handlers import Notifier, handle
from dockyard.notifier.sender import Sender
from dockyard.notifier.sinks import global_sink
from dockyard.settings import SettingsError
from dockyard.state.deliveries import Deliveries
from dockyard.state.sinks import SinkReader


@dataclass(frozen=True)
class NotifierDoors:
    """The state the notifier uses."""

    sinks: SinkReader
    deliveries: Deliveries


@dataclass
class NotifierService:
    """The notifier's handler."""

    notifier: Notifier

    async def on_event(self, event: AnyEvent, msg: NatsMessage) -> None:
        """Deliver the event to its due sinks; come back when a retry is due."""
        delay = await handle(self.notifier, event)
        if delay is not None:
            # JetStream brings the message back after the earliest pending retry is due.
            await msg.nack(delay=delay)


async def make(ctx: ServiceContext, doors: NotifierDoors) -> NotifierService:
    """The notifier with one shared HTTP client."""
    settings = ctx.settings
    try:
        fallback = global_sink(settings.webhook_url, settings.webhook_secret)
    except InvalidSink as exc:
        # Refused once, at start, rather than failing every event it would have signed.
        raise SettingsError(f"DOCKYARD_WEBHOOK_URL/SECRET: {exc.problem}") from None
    sender = Sender(httpx.AsyncClient())
    ctx.on_stop(sender.close)
    return NotifierService(Notifier(sinks=doors.sinks, deliveries=doors.deliveries,
                                    sender=sender, publish=ctx.emitter.emit,
                                    global_sinks=[fallback] if fallback else [], log=ctx.log))


SERVICE = Service(
    name="notifier",
    doors=NotifierDoors,
    # new_only: a notifier started for the first time must not replay months of history to
    # every sink; once the durable exists it resumes where it stopped.
    subscribes=(On(None, "on_event", new_only=True),),
    publishes=(NotificationAttempted, NotificationDelivered, NotificationFailed),
    make=make,
)

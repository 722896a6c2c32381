"""Wiring of the notifier: one durable consumer of every event, one shared HTTP client."""

from __future__ import annotations

from functools import partial

import httpx
from faststream.nats.annotations import NatsMessage

from dockyard.bus.broker import durable_subscriber, publish
from dockyard.bus.service import ServiceContext
from dockyard.notifier.handlers import Notifier, handle
from dockyard.notifier.sender import Sender
from dockyard.notifier.sinks import global_sink
from dockyard.schemas import subjects
from dockyard.schemas.events import AnyEvent


async def setup(ctx: ServiceContext) -> None:
    """Subscribe the notifier to every event."""
    sender = Sender(httpx.AsyncClient())
    ctx.on_stop(sender.close)
    fallback = global_sink(ctx.settings.webhook_url, ctx.settings.webhook_secret)
    notifier = Notifier(
        notify=ctx.stores.notify,
        runs=ctx.stores.runs,
        sender=sender,
        publish=partial(publish, ctx.broker),
        global_sinks=[fallback] if fallback else [],
        log=ctx.log,
    )

    # new_only: a notifier started for the first time must not replay months of history to
    # every sink; once the durable exists it resumes where it stopped.
    @durable_subscriber(ctx.broker, subjects.EVT_ALL, ctx.name, subjects.STREAM_EVENTS,
                        new_only=True)
    async def on_event(event: AnyEvent, msg: NatsMessage) -> None:
        delay = await handle(notifier, event)
        if delay is not None:
            # JetStream brings the message back after the earliest pending retry is due.
            await msg.nack(delay=delay)

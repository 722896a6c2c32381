"""What the api reads and sends on the bus besides its doors: commands out, streams followed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import nats
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from dockyard.contract import codec
from dockyard.contract.events import (
    CancelRequested,
    DeployRequested,
    DestroyRequested,
    ScaleRequested,
)

Command = DeployRequested | CancelRequested | ScaleRequested | DestroyRequested
Stop = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class Kept:
    """One message of a stream: its sequence in the stream, and its bytes."""

    seq: int
    data: bytes


class Commands(Protocol):
    """Publishes the commands the api may send."""

    async def send(self, command: Command, msg_id: str) -> None:
        """Publish one command (deduplicated by msg_id within the stream's window)."""


class Streams(Protocol):
    """Follows a stream's subject from a sequence on."""

    def follow(self, stream: str, subject: str, after: int, stop: Stop,
               idle: float = 0.5) -> AsyncIterator[Kept]:
        """Messages after sequence `after`, oldest first; when none came for `idle` seconds,
        ends if stop() says so, else keeps waiting."""


class NatsCommands:
    """Commands on JetStream (the publish waits for the stream's ack)."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    async def send(self, command: Command, msg_id: str) -> None:
        """Publish one command."""
        await self.js.publish(command.subject, codec.encode(command),
                              headers={"Nats-Msg-Id": msg_id})


class NatsStreams:
    """Ordered consumers of the api's own (its permissions allow them on FEED and LOGS)."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    async def follow(self, stream: str, subject: str, after: int, stop: Stop,
                     idle: float = 0.5) -> AsyncIterator[Kept]:
        """Messages after sequence `after`; ends once idle and stop() says so."""
        config = (ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                 opt_start_seq=after + 1) if after
                  else ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
        sub = await self.js.subscribe(subject, ordered_consumer=True, stream=stream,
                                      config=config)
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=idle)
                except nats.errors.TimeoutError:
                    if await stop():
                        return
                    continue
                yield Kept(seq=msg.metadata.sequence.stream, data=msg.data)
        finally:
            await sub.unsubscribe()

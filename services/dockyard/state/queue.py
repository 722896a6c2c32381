"""Each app's deploy requests waiting for the lock, in request order (the `queue` bucket)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from dockyard.contract import subjects
from dockyard.contract.state import Queue
from dockyard.state import kv
from dockyard.state.door import Door, Grant

_decoder = msgspec.json.Decoder(Queue)


class DeployQueue(Protocol):
    """The per-app queues."""

    async def load(self, app: str) -> Queue:
        """The app's queue."""

    async def change(self, app: str, fn: Callable[[Queue], Queue]) -> tuple[Queue, Queue]:
        """Apply fn to the app's queue atomically; (before, after)."""

    async def forget_if_empty(self, app: str) -> bool:
        """Purge the app's queue key if no deploy waits in it (the app is destroyed); whether
        it is gone (a deploy that queued meanwhile keeps it)."""


class NatsDeployQueue:
    """DeployQueue on the `queue` bucket, one key per app."""

    def __init__(self, bucket: KeyValue) -> None:
        self.kv = bucket

    async def load(self, app: str) -> Queue:
        """The app's queue."""
        raw, _ = await kv.read(self.kv, app)
        return _decoder.decode(raw) if raw else Queue()

    async def change(self, app: str, fn: Callable[[Queue], Queue]) -> tuple[Queue, Queue]:
        """Apply fn to the app's queue atomically; (before, after)."""
        return await kv.change(self.kv, subjects.KV_QUEUE, app,
                               lambda raw: _decoder.decode(raw) if raw else Queue(), fn,
                               msgspec.json.encode)

    async def forget_if_empty(self, app: str) -> bool:
        """Purge the app's queue key if no deploy waits in it (compare-and-delete)."""
        raw, revision = await kv.read(self.kv, app)
        if raw is None:
            return True
        if _decoder.decode(raw).entries:
            return False
        try:
            await self.kv.delete(app, last=revision)
        except KeyWrongLastSequenceError:
            return False
        return True


async def open_queue(js: JetStreamContext, service: str) -> DeployQueue:
    """The deploy queues."""
    del service
    return NatsDeployQueue(await js.key_value(subjects.KV_QUEUE))


DOOR = Door(DeployQueue, open_queue, (Grant("kv", subjects.KV_QUEUE, "write"),))

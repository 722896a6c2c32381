"""Deploy requests of one app wait in request order; only the head may take the lock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from dockyard.schemas.state import Queue, QueueEntry, queue_key


def enqueue(queue: Queue, deployment_id: str, requested_at: datetime) -> Queue:
    """The queue with the deployment added at its place by request time (no-op if present)."""
    if any(e.deployment_id == deployment_id for e in queue.entries):
        return queue
    entries = [*queue.entries, QueueEntry(deployment_id=deployment_id, requested_at=requested_at)]
    entries.sort(key=lambda e: e.requested_at)
    return Queue(entries=entries)


def remove(queue: Queue, deployment_id: str) -> Queue:
    """The queue without the deployment."""
    return Queue(entries=[e for e in queue.entries if e.deployment_id != deployment_id])


def head(queue: Queue) -> str | None:
    """The deployment whose turn it is."""
    return queue.entries[0].deployment_id if queue.entries else None


def position(queue: Queue, deployment_id: str) -> int | None:
    """1-based place of a deployment in the queue."""
    for i, entry in enumerate(queue.entries, start=1):
        if entry.deployment_id == deployment_id:
            return i
    return None


async def load(kv: KeyValue, app: str) -> tuple[Queue, int]:
    """The app's queue and its KV revision (0 if none)."""
    try:
        entry = await kv.get(queue_key(app))
    except KeyNotFoundError:
        return Queue(), 0
    if not entry.value:
        return Queue(), entry.revision or 0
    return msgspec.json.decode(entry.value, type=Queue), entry.revision or 0


async def change(kv: KeyValue, app: str, fn: Callable[[Queue], Queue]) -> tuple[Queue, Queue]:
    """Apply fn to the app's queue atomically; returns (before, after)."""
    while True:
        before, revision = await load(kv, app)
        after = fn(before)
        if after == before:
            return before, after
        data = msgspec.json.encode(after)
        try:
            if revision == 0:
                await kv.create(queue_key(app), data)
            else:
                await kv.update(queue_key(app), data, last=revision)
            return before, after
        except KeyWrongLastSequenceError:
            continue

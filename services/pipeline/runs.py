"""Idempotency records: a step done for a deployment is never done twice on redelivery."""

from __future__ import annotations

import re

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from dockyard.schemas import codec
from dockyard.schemas.events import AnyEvent, Event

_UNSAFE = re.compile(r"[^-/_=.a-zA-Z0-9]")


def key(deployment_id: str, step: str) -> str:
    """KV key of one step of one deployment."""
    return _UNSAFE.sub("_", f"run.{deployment_id}.{step}")


async def done(kv: KeyValue, deployment_id: str, step: str) -> bytes | None:
    """The recorded result of a finished step, if any."""
    try:
        entry = await kv.get(key(deployment_id, step))
    except KeyNotFoundError:
        return None
    return entry.value or None


async def record(kv: KeyValue, deployment_id: str, step: str, result: bytes) -> None:
    """Record that a step finished, with its result."""
    await kv.put(key(deployment_id, step), result)


async def replay(kv: KeyValue, deployment_id: str, step: str) -> AnyEvent | None:
    """The event a finished step published, decoded (to publish again with the same id)."""
    data = await done(kv, deployment_id, step)
    return None if data is None else codec.decode_event(data)


async def finish(kv: KeyValue, deployment_id: str, step: str, event: Event) -> None:
    """Record a step's outcome event."""
    await record(kv, deployment_id, step, codec.encode(event))

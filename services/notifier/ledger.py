"""Delivery state of each (event, sink) in the runs bucket, written with optimistic concurrency."""

from __future__ import annotations

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from dockyard.notifier.delivery import DeliveryState
from dockyard.notifier.errors import ConcurrentUpdate

_decoder = msgspec.json.Decoder(DeliveryState)


async def load(kv: KeyValue, key: str) -> tuple[DeliveryState, int | None]:
    """The state under key (fresh if none) and its revision (None if absent)."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return DeliveryState(), None
    if not entry.value:
        return DeliveryState(), entry.revision
    return _decoder.decode(entry.value), entry.revision


async def save(kv: KeyValue, key: str, state: DeliveryState, revision: int | None) -> None:
    """Write state if the key is still at revision, else ConcurrentUpdate (the edge retries)."""
    value = msgspec.json.encode(state)
    try:
        if revision is None:
            await kv.create(key, value)
        else:
            await kv.update(key, value, last=revision)
    except KeyWrongLastSequenceError:
        raise ConcurrentUpdate(key, 1) from None

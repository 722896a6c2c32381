"""Cancellation markers in the KV `cancel` bucket, seen by every service working on a deployment."""

from __future__ import annotations

import asyncio

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue


async def request(kv: KeyValue, deployment_id: str, reason: str) -> None:
    """Mark a deployment cancelled."""
    await kv.put(deployment_id, reason.encode() or b"cancelled")


async def reason(kv: KeyValue, deployment_id: str) -> str | None:
    """Why a deployment was cancelled, or None if it was not."""
    try:
        entry = await kv.get(deployment_id)
    except KeyNotFoundError:
        return None
    if entry.value is None or entry.operation in ("DEL", "PURGE"):
        return None
    return entry.value.decode()


async def watch(kv: KeyValue, deployment_id: str, event: asyncio.Event, every: float = 0.5) -> None:
    """Set `event` once the deployment is cancelled (run as a task; cancel it when done)."""
    while not event.is_set():
        if await reason(kv, deployment_id) is not None:
            event.set()
            return
        await asyncio.sleep(every)

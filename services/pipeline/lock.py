"""One deploy per app at a time: a lease in the KV `locks` bucket, refreshed while work goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from dockyard.bus.topology import LOCK_LEASE


class LockError(Exception):
    """Base of lock failures."""


class LockLost(LockError):
    """Another deployment holds the app's lock now."""

    def __init__(self, app: str, holder: str | None) -> None:
        super().__init__(f"lock of {app} is held by {holder or 'nobody'}")
        self.app = app
        self.holder = holder


async def holder(kv: KeyValue, app: str) -> str | None:
    """The deployment holding the app's lock, if any (an expired lease reads as none)."""
    try:
        entry = await kv.get(app)
    except KeyNotFoundError:
        return None
    if entry.value is None or entry.operation in ("DEL", "PURGE"):
        return None
    return entry.value.decode()


async def acquire(kv: KeyValue, app: str, deployment_id: str) -> bool:
    """Take the lock for a deployment; True if it now holds it (re-entrant for the same one)."""
    try:
        await kv.create(app, deployment_id.encode())
        return True
    except KeyWrongLastSequenceError:
        return await holder(kv, app) == deployment_id


async def refresh(kv: KeyValue, app: str, deployment_id: str) -> None:
    """Renew the lease of a deployment that holds the lock (re-take it if it lapsed)."""
    try:
        entry = await kv.get(app)
    except KeyNotFoundError:
        if not await acquire(kv, app, deployment_id):
            raise LockLost(app, await holder(kv, app)) from None
        return
    current = entry.value.decode() if entry.value else None
    if current not in (None, "", deployment_id):
        raise LockLost(app, current)
    try:
        await kv.update(app, deployment_id.encode(), last=entry.revision)
    except KeyWrongLastSequenceError:
        if await holder(kv, app) != deployment_id:
            raise LockLost(app, await holder(kv, app)) from None


async def release(kv: KeyValue, app: str, deployment_id: str) -> None:
    """Give the lock up, if this deployment holds it."""
    try:
        entry = await kv.get(app)
    except KeyNotFoundError:
        return
    if entry.value and entry.value.decode() == deployment_id:
        try:
            await kv.delete(app, last=entry.revision)
        except KeyWrongLastSequenceError:
            pass


@asynccontextmanager
async def hold(kv: KeyValue, app: str, deployment_id: str,
               every: float = LOCK_LEASE / 3) -> AsyncIterator[None]:
    """Keep the lease alive for as long as the block runs."""
    await refresh(kv, app, deployment_id)

    async def keep() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await refresh(kv, app, deployment_id)
            except LockLost:
                return
            except Exception:  # a passing bus hiccup: try again next period
                continue

    task = asyncio.create_task(keep())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

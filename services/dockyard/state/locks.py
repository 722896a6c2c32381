"""One deploy per app at a time: a lease in the `locks` bucket, refreshed while its holder works."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from dockyard.contract import subjects
from dockyard.state import kv
from dockyard.state.door import Door, Grant
from dockyard.state.tasks import background

# The bucket's TTL: a lock whose holder stops refreshing it is gone this long after.
LEASE = 30.0
# Any one bus call of the refresher: a hung call must not outlive the lease silently.
CALL_TIMEOUT = 5.0


class LockLost(Exception):
    """Another deployment holds the app's lock now."""

    def __init__(self, app: str, holder: str | None) -> None:
        super().__init__(f"lock of {app} is held by {holder or 'nobody'}")
        self.app = app
        self.holder = holder


class AppLocks(Protocol):
    """The per-app deploy lock."""

    async def holder(self, app: str) -> str | None:
        """The deployment holding the app's lock, if any (an expired lease reads as none)."""

    async def acquire(self, app: str, deployment_id: str) -> bool:
        """Take the lock; True if this deployment now holds it (re-entrant)."""

    async def refresh(self, app: str, deployment_id: str) -> None:
        """Renew the lease (re-take it if it lapsed); LockLost if another holds it."""

    async def renew(self, app: str, deployment_id: str) -> bool:
        """Renew the lease only if this deployment holds it now (never re-take a lock that was
        released or lapsed); False when nobody holds it; LockLost if another does."""

    async def release(self, app: str, deployment_id: str) -> None:
        """Give the lock up, if this deployment holds it."""

    def hold(self, app: str, deployment_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Keep the lease alive while the block runs."""


class NatsAppLocks:
    """AppLocks on a KV bucket whose TTL is the lease."""

    def __init__(self, bucket: KeyValue, every: float = LEASE / 3) -> None:
        self.kv = bucket
        self.every = every

    async def holder(self, app: str) -> str | None:
        """The deployment holding the app's lock, if any."""
        value, _ = await kv.read(self.kv, app)
        return value.decode() if value else None

    async def acquire(self, app: str, deployment_id: str) -> bool:
        """Take the lock; True if this deployment now holds it (re-entrant)."""
        value, revision = await kv.read(self.kv, app)
        if value is not None:
            return value.decode() == deployment_id
        if await kv.write(self.kv, app, deployment_id.encode(), revision):
            return True
        return await self.holder(app) == deployment_id

    async def refresh(self, app: str, deployment_id: str) -> None:
        """Renew the lease (re-take it if it lapsed); LockLost if another holds it."""
        value, revision = await kv.read(self.kv, app)
        if value is not None and value.decode() != deployment_id:
            raise LockLost(app, value.decode())
        if not await kv.write(self.kv, app, deployment_id.encode(), revision):
            current = await self.holder(app)
            if current != deployment_id:
                raise LockLost(app, current)

    async def renew(self, app: str, deployment_id: str) -> bool:
        """Renew the lease only if this deployment holds it now; False when nobody holds it
        (released at the deploy's end, or lapsed); LockLost if another does."""
        value, revision = await kv.read(self.kv, app)
        if value is None:
            return False
        if value.decode() != deployment_id:
            raise LockLost(app, value.decode())
        if await kv.write(self.kv, app, deployment_id.encode(), revision):
            return True
        current = await self.holder(app)
        if current is not None and current != deployment_id:
            raise LockLost(app, current)
        return current == deployment_id

    async def release(self, app: str, deployment_id: str) -> None:
        """Give the lock up, if this deployment holds it."""
        value, revision = await kv.read(self.kv, app)
        if value is not None and value.decode() == deployment_id:
            with contextlib.suppress(Exception):
                await self.kv.delete(app, last=revision)

    @contextlib.asynccontextmanager
    async def hold(self, app: str, deployment_id: str) -> AsyncIterator[None]:
        """Keep the lease alive while the block runs (refreshed every third of the lease)."""
        await self.refresh(app, deployment_id)

        async def keep() -> None:
            try:
                await asyncio.wait_for(self.refresh(app, deployment_id), CALL_TIMEOUT)
            except LockLost:
                raise
            except Exception:  # noqa: BLE001 - a passing bus hiccup: try again next period
                return

        async with background(keep, every=self.every, stop_on=(LockLost,)):
            yield


async def open_locks(js: JetStreamContext, service: str) -> AppLocks:
    """The locks door on the bus."""
    del service
    return NatsAppLocks(await js.key_value(subjects.KV_LOCKS))


DOOR = Door(AppLocks, open_locks, (Grant("kv", subjects.KV_LOCKS, "write"),))

"""Cancellation markers in the `cancel` bucket, seen by every service working on a deployment."""

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

POLL = 0.5
CALL_TIMEOUT = 5.0


class CancelReader(Protocol):
    """Whether a deployment was cancelled."""

    async def reason(self, deployment_id: str) -> str | None:
        """Why a deployment was cancelled, or None if it was not."""

    def watching(self, deployment_id: str) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        """An event set once the deployment is cancelled, watched while the block runs."""


class CancelMarkers(CancelReader, Protocol):
    """Cancellation markers, writable."""

    async def request(self, deployment_id: str, reason: str) -> None:
        """Mark a deployment cancelled."""


class NatsCancelMarkers:
    """CancelMarkers on the `cancel` bucket."""

    def __init__(self, bucket: KeyValue, every: float = POLL) -> None:
        self.kv = bucket
        self.every = every

    async def request(self, deployment_id: str, reason: str) -> None:
        """Mark a deployment cancelled."""
        await self.kv.put(deployment_id, reason.encode() or b"cancelled")

    async def reason(self, deployment_id: str) -> str | None:
        """Why a deployment was cancelled, or None if it was not."""
        value, _ = await kv.read(self.kv, deployment_id)
        return value.decode() if value else None

    @contextlib.asynccontextmanager
    async def watching(self, deployment_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set once the deployment is cancelled, polled while the block runs."""
        cancelled = asyncio.Event()

        async def look() -> None:
            with contextlib.suppress(Exception):  # a bus hiccup: look again next time
                if await asyncio.wait_for(self.reason(deployment_id), CALL_TIMEOUT) is not None:
                    cancelled.set()

        async with background(look, every=self.every):
            yield cancelled


async def open_cancel_markers(js: JetStreamContext, service: str) -> CancelMarkers:
    """The cancel markers, writable."""
    del service
    return NatsCancelMarkers(await js.key_value(subjects.KV_CANCEL))


async def open_cancel_reader(js: JetStreamContext, service: str) -> CancelReader:
    """The cancel markers, read-only."""
    return await open_cancel_markers(js, service)


WRITER = Door(CancelMarkers, open_cancel_markers, (Grant("kv", subjects.KV_CANCEL, "write"),))
READER = Door(CancelReader, open_cancel_reader, (Grant("kv", subjects.KV_CANCEL, "read"),))

"""Tell JetStream a long handler is still working, so the message is not redelivered meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

IN_PROGRESS_EVERY = 10.0


@contextlib.asynccontextmanager
async def working(msg: Any, every: float = IN_PROGRESS_EVERY) -> AsyncIterator[None]:
    """Send in-progress acks every `every` seconds while the block runs."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

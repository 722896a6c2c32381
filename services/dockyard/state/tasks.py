"""Background work tied to a block: it stops on a flag, and every wait on it is bounded.

A cancellation alone is not enough to stop a loop: nats-py's request path (through
`asyncio.wait_for`) can swallow a cancellation that arrives in the same loop tick as the reply
(Python 3.11), and a loop that never sees it runs, and keeps its caller waiting, forever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

log = structlog.get_logger()

# How long leaving the block waits for the task to notice the flag before cancelling it.
STOP_WAIT = 2.0


@contextlib.asynccontextmanager
async def background(step: Callable[[], Awaitable[None]], *, every: float,
                     stop_on: tuple[type[BaseException], ...] = ()) -> AsyncIterator[None]:
    """Run `step` every `every` seconds while the block runs; stop on a flag when it ends.

    An exception in `stop_on` ends the loop quietly; the block goes on.
    """
    stopping = asyncio.Event()

    async def loop() -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every)
            if stopping.is_set():
                return
            try:
                await step()
            except stop_on:
                return

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        stopping.set()
        await settle(task)


async def settle(task: asyncio.Task[object] | asyncio.Task[None], wait: float = STOP_WAIT) -> None:
    """Wait a bounded time for a task told to stop; cancel it if it did not; never hang."""
    done, _ = await asyncio.wait({task}, timeout=wait)
    if not done:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=wait)
        if not done:
            # The task swallowed the cancellation: leave it, rather than hang its caller.
            log.warning("background task did not stop", task=task.get_name())
            return
    if not task.cancelled() and task.exception() is not None:
        log.warning("background task failed", task=task.get_name(), error=repr(task.exception()))

"""Waiting on a condition, never on a fixed sleep: poll a check (plain or async) until it
answers something truthy, and fail naming what never came."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def until(check: Callable[[], Any | Awaitable[Any]], what: str = "the condition",
                within: float = 15.0, every: float = 0.05) -> Any:
    """Poll `check` until it answers something truthy and return that; fail after `within`
    seconds naming `what` and the last answer."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, f"not within {within}s: {what} (last: {result!r})"
        await asyncio.sleep(every)

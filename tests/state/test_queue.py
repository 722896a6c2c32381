"""The deploy queues on a real nats-server: concurrent changes all land."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from dockyard.builder.queue import enqueue, remove
from dockyard.contract.events import new_id
from dockyard.contract.state import Queue
from dockyard.state.queue import open_queue
from tests.conftest import Bus

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def app() -> str:
    return f"q-{new_id()[:10]}"


async def test_a_change_gives_before_and_after(bus: Bus) -> None:
    queues = await open_queue(bus.js, "builder")
    a = app()
    assert await queues.load(a) == Queue()
    before, after = await queues.change(a, lambda q: enqueue(q, "d1", T0))
    assert before == Queue() and [e.deployment_id for e in after.entries] == ["d1"]
    assert await queues.load(a) == after
    again = await queues.change(a, lambda q: enqueue(q, "d1", T0))
    assert again == (after, after)
    assert await queues.load(app()) == Queue()


async def test_concurrent_changes_all_land(bus: Bus) -> None:
    queues = await open_queue(bus.js, "builder")
    a = app()
    deps = [new_id() for _ in range(10)]
    await asyncio.gather(*(queues.change(a, lambda q, d=d, n=n: enqueue(  # type: ignore[misc]
        q, d, T0 + timedelta(seconds=n))) for n, d in enumerate(deps)))
    assert [e.deployment_id for e in (await queues.load(a)).entries] == deps
    await asyncio.gather(*(queues.change(a, lambda q, d=d: remove(q, d))  # type: ignore[misc]
                           for d in deps[::2]))
    assert [e.deployment_id for e in (await queues.load(a)).entries] == deps[1::2]

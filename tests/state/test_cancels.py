"""Cancellation markers on a real nats-server."""

from __future__ import annotations

import asyncio

from dockyard.contract import subjects
from dockyard.contract.events import new_id
from dockyard.state.cancels import NatsCancelMarkers, open_cancel_markers, open_cancel_reader
from tests.conftest import Bus


async def test_a_marker_says_why(bus: Bus) -> None:
    markers = await open_cancel_markers(bus.js, "builder")
    reader = await open_cancel_reader(bus.js, "scheduler")
    dep, other = new_id(), new_id()
    assert await reader.reason(dep) is None
    await markers.request(dep, "not today")
    await markers.request(other, "")
    assert await reader.reason(dep) == "not today"
    assert await reader.reason(other) == "cancelled"


async def test_watching_sets_the_event_once_the_deployment_is_cancelled(bus: Bus) -> None:
    markers = NatsCancelMarkers(await bus.kv(subjects.KV_CANCEL), every=0.02)
    dep = new_id()
    before = asyncio.all_tasks()
    async with markers.watching(dep) as cancelled:
        assert not cancelled.is_set()
        await markers.request(dep, "stop")
        await asyncio.wait_for(cancelled.wait(), 15)
    # The watcher stopped with the block.
    assert asyncio.all_tasks() - before == set()


async def test_watching_an_already_cancelled_deployment(bus: Bus) -> None:
    markers = NatsCancelMarkers(await bus.kv(subjects.KV_CANCEL), every=0.02)
    dep = new_id()
    await markers.request(dep, "early")
    async with markers.watching(dep) as cancelled:
        await asyncio.wait_for(cancelled.wait(), 15)


async def test_watching_another_deployment_is_not_set(bus: Bus) -> None:
    markers = NatsCancelMarkers(await bus.kv(subjects.KV_CANCEL), every=0.02)
    dep, other = new_id(), new_id()
    looks = 0
    original = markers.reason

    async def counted(deployment_id: str) -> str | None:
        nonlocal looks
        looks += 1
        return await original(deployment_id)

    markers.reason = counted  # type: ignore[method-assign]
    await markers.request(other, "not this one")
    async with markers.watching(dep) as cancelled:
        deadline = asyncio.get_running_loop().time() + 15
        while looks < 3:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        assert not cancelled.is_set()

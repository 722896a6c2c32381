"""Operator hooks on a real nats-server."""

from __future__ import annotations

import asyncio

import pytest

from dockyard.contract.events import new_id
from dockyard.contract.manifest import OperatorHook, OperatorHooks
from dockyard.state.hooks import open_hook_reader, open_hook_store
from tests.conftest import Bus


def app() -> str:
    return f"hk-{new_id()[:10]}"


async def test_hooks_are_kept_in_the_order_they_were_added(bus: Bus) -> None:
    store = await open_hook_store(bus.js, "cli")
    reader = await open_hook_reader(bus.js, "builder")
    a = app()
    assert await reader.load(a) == OperatorHooks()
    first = OperatorHook(phase="postdeploy", label="Warm", command="./warm")
    second = OperatorHook(phase="release", label="Seed", command="./seed", timeout=30.0)
    await store.change(a, lambda h: OperatorHooks(hooks=[*h.hooks, first]))
    after = await store.change(a, lambda h: OperatorHooks(hooks=[*h.hooks, second]))
    assert after == OperatorHooks(hooks=[first, second])
    assert await reader.load(a) == after


async def test_a_refused_change_stores_nothing(bus: Bus) -> None:
    store = await open_hook_store(bus.js, "cli")
    a = app()

    def refuse(current: OperatorHooks) -> OperatorHooks:
        raise ValueError("no such phase")

    with pytest.raises(ValueError, match="no such phase"):
        await store.change(a, refuse)
    assert await store.load(a) == OperatorHooks()


async def test_concurrent_changes_all_land(bus: Bus) -> None:
    store = await open_hook_store(bus.js, "cli")
    a = app()
    hooks = [OperatorHook(phase="postdeploy", label=f"h{n}", command="true") for n in range(8)]
    await asyncio.gather(*(store.change(a, lambda h, k=k: OperatorHooks(  # type: ignore[misc]
        hooks=[*h.hooks, k])) for k in hooks))
    assert sorted(h.label for h in (await store.load(a)).hooks) == sorted(h.label for h in hooks)

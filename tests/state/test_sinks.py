"""Notification sinks on a real nats-server."""

from __future__ import annotations

import asyncio

import pytest

from dockyard.contract.events import new_id
from dockyard.contract.sinks import InvalidSink, Sink, SinkNotFound, Sinks, with_sink, without_sink
from dockyard.state.sinks import open_sink_reader, open_sink_store
from tests.conftest import Bus


def app() -> str:
    return f"sk-{new_id()[:10]}"


async def test_sinks_are_added_replaced_and_removed(bus: Bus) -> None:
    store = await open_sink_store(bus.js, "cli")
    reader = await open_sink_reader(bus.js, "notifier")
    a = app()
    assert await reader.load(a) == Sinks()
    ops = Sink(name="ops", url="https://hooks.example.com/x", secret="s")
    chat = Sink(name="chat", url="https://chat.example.com/y", kind="slack")
    await store.change(a, lambda s: with_sink(s, ops))
    await store.change(a, lambda s: with_sink(s, chat))
    moved = Sink(name="ops", url="https://hooks.example.com/moved")
    await store.change(a, lambda s: with_sink(s, moved))
    assert await reader.load(a) == Sinks(sinks=[chat, moved])
    await store.change(a, lambda s: without_sink(s, a, "chat"))
    assert await reader.load(a) == Sinks(sinks=[moved])


async def test_a_refused_change_stores_nothing(bus: Bus) -> None:
    store = await open_sink_store(bus.js, "cli")
    a = app()
    with pytest.raises(SinkNotFound):
        await store.change(a, lambda s: without_sink(s, a, "ghost"))
    with pytest.raises(InvalidSink):
        await store.change(a, lambda s: with_sink(s, Sink(name="x", url="ftp://x")))
    assert await store.load(a) == Sinks()


async def test_concurrent_changes_all_land(bus: Bus) -> None:
    store = await open_sink_store(bus.js, "cli")
    a = app()
    sinks = [Sink(name=f"s{n}", url=f"https://h{n}.example.com/") for n in range(8)]
    await asyncio.gather(*(store.change(a, lambda s, k=k: with_sink(s, k))  # type: ignore[misc]
                           for k in sinks))
    assert sorted(s.name for s in (await store.load(a)).sinks) == [f"s{n}" for n in range(8)]

"""Where traffic goes, on a real nats-server: live records with history, pending markers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from dockyard.contract.events import DeploySpec, InstanceRef, new_id
from dockyard.contract.plan import Plan
from dockyard.contract.state import LiveRelease, Pending
from dockyard.state.routes import (
    LIVE,
    PENDING,
    RouteGone,
    RouteUpdate,
    live_key,
    open_route_reader,
    open_route_writer,
    pending_key,
    route_update,
)
from tests.conftest import Bus

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def app() -> str:
    return f"rt-{new_id()[:10]}"


def record(a: str, release: int) -> LiveRelease:
    spec = DeploySpec(runtime="process", build_id=f"v{release}", artifact=f"img{release}",
                      plan=Plan())
    return LiveRelease(app=a, release=release, deployment_id=f"d{release}", spec=spec,
                       instances=[InstanceRef(id=f"w{release}", process="web", release=release,
                                              port=5000 + release)],
                       switched_at=T0)


async def test_the_live_record_and_its_history(bus: Bus) -> None:
    writer = await open_route_writer(bus.js, "router")
    reader = await open_route_reader(bus.js, "scheduler")
    a = app()
    assert await reader.live(a) is None
    assert await reader.live_history(a) == []
    v1, v2 = record(a, 1), record(a, 2)
    await writer.set_live(v1)
    await writer.set_live(v2)
    assert await reader.live(a) == v2
    assert await reader.live_history(a) == [v1, v2]


async def test_all_live_and_all_pending_by_app(bus: Bus) -> None:
    writer = await open_route_writer(bus.js, "router")
    a, b, c = app(), app(), app()
    await writer.set_live(record(a, 1))
    await writer.set_live(record(b, 3))
    await writer.set_pending(Pending(app=c, deployment_id="d9"))
    everything = await writer.all_live()
    assert everything[a] == record(a, 1) and everything[b] == record(b, 3)
    assert c not in everything
    pending = await writer.all_pending()
    assert pending[c] == Pending(app=c, deployment_id="d9")
    assert a not in pending


async def test_clear_pending_and_clearing_nothing(bus: Bus) -> None:
    writer = await open_route_writer(bus.js, "router")
    a = app()
    await writer.clear_pending(a)  # nothing pending: nothing happens
    await writer.set_pending(Pending(app=a, deployment_id="d1"))
    await writer.clear_pending(a)
    assert a not in await writer.all_pending()
    await writer.clear_pending(a)


async def test_updates_yield_every_record_then_each_change_by_any_writer(bus: Bus) -> None:
    writer = await open_route_writer(bus.js, "router")
    other = await open_route_writer(bus.js, "router")
    a, b = app(), app()
    await other.set_live(record(b, 3))  # there before the watch: yielded first

    async def next_of(updates: AsyncIterator[RouteUpdate], name: str) -> RouteUpdate:
        async for update in updates:
            if update.app == name:
                return update
        raise AssertionError("the updates ended")

    async with writer.updates() as updates:
        assert await asyncio.wait_for(next_of(updates, b), 15) == record(b, 3)
        await other.set_pending(Pending(app=a, deployment_id="d1"))
        assert await asyncio.wait_for(next_of(updates, a), 15) == Pending(app=a,
                                                                          deployment_id="d1")
        await other.set_live(record(a, 1))
        assert await asyncio.wait_for(next_of(updates, a), 15) == record(a, 1)
        await other.clear_pending(a)
        assert await asyncio.wait_for(next_of(updates, a), 15) == RouteGone(app=a, kind=PENDING)
        await other.forget(b)
        assert await asyncio.wait_for(next_of(updates, b), 15) == RouteGone(app=b, kind=LIVE)
    assert await writer.pending_mark(a) is None


def test_a_change_of_an_unknown_key_or_a_bad_record_is_no_update() -> None:
    assert route_update("other.shop", b"{}") is None
    assert route_update("live.shop", b"not json") is None
    assert route_update("live.", None) is None
    assert route_update("pending.shop", None) == RouteGone(app="shop", kind=PENDING)


def test_keys() -> None:
    assert live_key("shop") == "live.shop" and pending_key("shop") == "pending.shop"

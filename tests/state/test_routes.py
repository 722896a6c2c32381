"""Where traffic goes, on a real nats-server: live records with history, pending markers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from dockyard.contract.events import DeploySpec, InstanceRef, new_id
from dockyard.contract.plan import Plan
from dockyard.contract.state import LiveRelease, Pending
from dockyard.state.routes import live_key, open_route_reader, open_route_writer, pending_key
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


async def test_changes_yield_once_per_change_by_any_writer(bus: Bus) -> None:
    writer = await open_route_writer(bus.js, "router")
    other = await open_route_writer(bus.js, "router")
    a = app()
    async with writer.changes() as ticks:
        await other.set_pending(Pending(app=a, deployment_id="d1"))
        await asyncio.wait_for(anext(ticks), 15)
        await other.set_live(record(a, 1))
        await asyncio.wait_for(anext(ticks), 15)


def test_keys() -> None:
    assert live_key("shop") == "live.shop" and pending_key("shop") == "pending.shop"

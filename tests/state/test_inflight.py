"""The deploys in flight on a real nats-server: records per app, verdicts created once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from dockyard.contract import subjects
from dockyard.contract.events import new_id
from dockyard.contract.state import InFlight, TimedOut
from dockyard.state.inflight import open_inflight, open_timeouts
from tests.conftest import Bus

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def record(app: str, dep: str, phase: str = "start") -> InFlight:
    return InFlight(app=app, deployment_id=dep, release=3, phase=phase, since=T0,
                    deadline=T0 + timedelta(seconds=70))


def verdict(app: str, dep: str, reason: str) -> TimedOut:
    return TimedOut(app=app, deployment_id=dep, release=3, phase="start", reason=reason)


async def test_the_bucket_is_provisioned(bus: Bus) -> None:
    assert (await (await bus.kv(subjects.KV_INFLIGHT)).status()).bucket == subjects.KV_INFLIGHT


async def test_records_change_atomically_and_end_only_as_their_deployment(bus: Bus) -> None:
    doors = await open_inflight(bus.js, "builder")
    app, dep, other = f"fly-{new_id()[:10]}", new_id(), new_id()
    assert await doors.get(app) is None
    assert await doors.change(app, lambda _: record(app, dep)) == record(app, dep)
    assert await doors.get(app) == record(app, dep)
    assert record(app, dep) in await doors.all()
    await doors.end(app, other)  # not its record: nothing happens
    assert await doors.get(app) == record(app, dep)
    later = record(app, dep, "postdeploy")
    assert await doors.change(app, lambda _: later) == later
    await doors.end(app, dep)
    assert await doors.get(app) is None
    assert all(r.app != app for r in await doors.all())
    # Made again after a delete (the key's last operation is a delete marker).
    assert await doors.change(app, lambda _: record(app, other)) == record(app, other)
    await doors.end(app, other)


async def test_a_verdict_is_created_once_whoever_races_for_it(bus: Bus) -> None:
    one, two = await open_inflight(bus.js, "builder"), await open_inflight(bus.js, "builder")
    app, dep = f"fly-{new_id()[:10]}", new_id()
    stood = await asyncio.gather(*(d.time_out(verdict(app, dep, f"by {n}"))
                                   for n, d in enumerate((one, two, one, two))))
    assert len({v.reason for v in stood}) == 1
    reader = await open_timeouts(bus.js, "router")
    assert await reader.timed_out(dep) == stood[0]
    assert await reader.timed_out(new_id()) is None

"""Maintenance flags on a real nats-server: turned on and off per app, followed by watchers;
the message rules as values."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from dockyard.contract.events import new_id
from dockyard.contract.state import Maintenance
from dockyard.state.maintenance import (
    MAX_MESSAGE,
    MaintenanceError,
    check_message,
    open_maintenance_reader,
    open_maintenance_store,
    turned,
)
from tests.conftest import Bus

T0 = datetime(2025, 1, 1, tzinfo=UTC)
T1 = datetime(2025, 1, 2, tzinfo=UTC)


def app() -> str:
    return f"mnt-{new_id()[:10]}"


def test_turning_on_records_since_when_and_the_message() -> None:
    off = Maintenance(app="shop")
    first = turned(off, True, " back at 10:00 ", T0)
    assert first == Maintenance(app="shop", enabled=True, since=T0, message="back at 10:00")
    # On again: nothing changes (same message), or only the message (since stays).
    assert turned(first, True, "back at 10:00", T1) is first
    assert turned(first, True, "back at 11:00", T1).since == T0
    assert turned(first, False, "ignored", T1) == Maintenance(app="shop", enabled=False, since=T1)


@pytest.mark.parametrize("bad", ["{file./etc/passwd}", "two\nlines", "x" * (MAX_MESSAGE + 1),
                                 "bell\a"])
def test_a_message_caddy_could_misread_or_too_long_is_refused(bad: str) -> None:
    with pytest.raises(MaintenanceError):
        check_message(bad)
    assert check_message("  ") is None


async def test_on_off_and_listing(bus: Bus) -> None:
    store = await open_maintenance_store(bus.js, "cli")
    reader = await open_maintenance_reader(bus.js, "router")
    a, b = app(), app()
    assert await store.get(a) == Maintenance(app=a)
    on = await store.turn(a, True, "upgrading")
    assert (on.enabled, on.message) == (True, "upgrading") and on.since is not None
    await store.turn(b, True)
    await store.turn(b, False)
    found = await reader.all_on()
    assert found[a] == on and b not in found
    assert (await reader.get(b)).enabled is False
    with pytest.raises(MaintenanceError):
        await store.turn(a, True, "{bad}")
    assert await reader.get(a) == on


async def test_a_watcher_sees_each_change(bus: Bus) -> None:
    store = await open_maintenance_store(bus.js, "cli")
    reader = await open_maintenance_reader(bus.js, "router")
    a = app()
    async with reader.updates() as updates:
        await store.turn(a, True)

        async def next_of_a() -> Maintenance:
            async for record in updates:
                if record.app == a:
                    return record
            raise AssertionError("the updates ended")

        assert (await asyncio.wait_for(next_of_a(), 10)).enabled
        await store.turn(a, False)
        assert not (await asyncio.wait_for(next_of_a(), 10)).enabled

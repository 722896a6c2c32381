"""Delivery states on a real nats-server: optimistic concurrency between notifiers."""

from __future__ import annotations

import pytest

from dockyard.contract.events import new_id
from dockyard.contract.state import AttemptResult, DeliveryState
from dockyard.state.deliveries import Conflict, open_deliveries
from tests.conftest import Bus


async def test_a_state_is_saved_at_the_revision_it_was_loaded_at(bus: Bus) -> None:
    deliveries = await open_deliveries(bus.js, "notifier")
    key = f"notify.{new_id()}.ops"
    state, revision = await deliveries.load(key)
    assert (state, revision) == (DeliveryState(), 0)
    first = DeliveryState(attempts=1, next_at=5.0, last=AttemptResult(status_code=500))
    await deliveries.save(key, first, revision)
    loaded, at = await deliveries.load(key)
    assert loaded == first and at > 0
    done = DeliveryState(attempts=2, status="delivered", last=AttemptResult(status_code=200))
    await deliveries.save(key, done, at)
    assert (await deliveries.load(key))[0] == done


async def test_a_save_after_another_instances_is_a_conflict(bus: Bus) -> None:
    mine = await open_deliveries(bus.js, "notifier")
    theirs = await open_deliveries(bus.js, "notifier")
    key = f"notify.{new_id()}.ops"
    _, revision = await mine.load(key)
    await theirs.save(key, DeliveryState(attempts=1), revision)
    with pytest.raises(Conflict) as conflict:
        await mine.save(key, DeliveryState(attempts=1), revision)
    assert conflict.value.key == key
    assert str(conflict.value) == f"delivery {key!r} changed concurrently"
    assert (await mine.load(key))[0] == DeliveryState(attempts=1)

"""Release numbers on a real nats-server: one per deployment, the same on redelivery."""

from __future__ import annotations

import asyncio

from dockyard.contract.events import new_id
from dockyard.state.releases import open_release_numbers
from tests.conftest import Bus


def app() -> str:
    return f"rel-{new_id()[:10]}"


async def test_numbers_count_per_app_and_repeat_for_the_same_deployment(bus: Bus) -> None:
    numbers = await open_release_numbers(bus.js, "builder")
    a, b = app(), app()
    one, two = new_id(), new_id()
    assert await numbers.allocate(a, one) == 1
    assert await numbers.allocate(a, two) == 2
    assert await numbers.allocate(a, one) == 1  # redelivered: the same number
    assert await numbers.allocate(b, one) == 1


async def test_concurrent_allocations_all_land_with_distinct_numbers(bus: Bus) -> None:
    numbers = await open_release_numbers(bus.js, "builder")
    a = app()
    deps = [new_id() for _ in range(10)]
    given = await asyncio.gather(*(numbers.allocate(a, d) for d in deps))
    assert sorted(given) == list(range(1, 11))
    assert [await numbers.allocate(a, d) for d in deps] == given

"""The per-app deploy lock on a real nats-server: a lease refreshed while its holder works."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from nats.js.api import KeyValueConfig, StorageType

from dockyard.contract import subjects
from dockyard.contract.events import new_id
from dockyard.state import kv
from dockyard.state.locks import LEASE, LockLost, NatsAppLocks, open_locks
from tests.conftest import Bus

TTL = 1.0


def app() -> str:
    return f"lock-{new_id()[:10]}"


async def until(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    """Wait until check() holds; fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"not so within {within}s"
        await asyncio.sleep(0.05)


@pytest.fixture
async def short(bus: Bus) -> AsyncIterator[NatsAppLocks]:
    """Locks on a bucket of this test's own whose lease (TTL) is one second."""
    name = f"test_locks_{new_id()[:12]}"
    bucket = await bus.js.create_key_value(KeyValueConfig(bucket=name, ttl=TTL,
                                                          storage=StorageType.MEMORY))
    yield NatsAppLocks(bucket, every=TTL / 5)
    await bus.js.delete_key_value(name)


async def test_the_provisioned_bucket_s_ttl_is_the_lease(bus: Bus) -> None:
    status = await (await bus.kv(subjects.KV_LOCKS)).status()
    assert status.ttl == LEASE


async def test_acquire_is_reentrant_and_exclusive_release_only_by_the_holder(bus: Bus) -> None:
    locks = await open_locks(bus.js, "builder")
    a, one, two = app(), new_id(), new_id()
    assert await locks.holder(a) is None
    assert await locks.acquire(a, one)
    assert await locks.acquire(a, one)  # a redelivered request holds it already
    assert not await locks.acquire(a, two)
    assert await locks.holder(a) == one
    await locks.release(a, two)  # not its lock: nothing happens
    assert await locks.holder(a) == one
    await locks.release(a, one)
    assert await locks.holder(a) is None
    await locks.release(a, one)  # again: nothing to give up
    assert await locks.acquire(a, two)
    assert await locks.holder(a) == two


async def test_refresh_renews_retakes_a_lapsed_lease_and_refuses_anothers(bus: Bus) -> None:
    locks = await open_locks(bus.js, "scheduler")
    a, one, two = app(), new_id(), new_id()
    await locks.refresh(a, one)  # not held: taken
    assert await locks.holder(a) == one
    bucket = await bus.kv(subjects.KV_LOCKS)
    _, before = await kv.read(bucket, a)
    await locks.refresh(a, one)
    assert (await kv.read(bucket, a))[1] > before  # written again: the lease starts over
    with pytest.raises(LockLost) as lost:
        await locks.refresh(a, two)
    assert (lost.value.app, lost.value.holder) == (a, one)
    assert str(lost.value) == f"lock of {a} is held by {one}"
    await locks.release(a, one)


async def test_a_lease_nobody_refreshes_expires(short: NatsAppLocks) -> None:
    a, one, two = app(), new_id(), new_id()
    assert await short.acquire(a, one)

    async def lapsed() -> bool:
        return await short.holder(a) is None

    await until(lapsed)
    assert await short.acquire(a, two)


async def test_hold_keeps_the_lease_alive_past_its_ttl(short: NatsAppLocks) -> None:
    a, one, two = app(), new_id(), new_id()
    assert await short.acquire(a, one)
    _, first = await kv.read(short.kv, a)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with short.hold(a, one):
        async def renewed_past_the_ttl() -> bool:
            _, revision = await kv.read(short.kv, a)
            return revision > first and loop.time() - started > 2 * TTL

        await until(renewed_past_the_ttl)
        assert await short.holder(a) == one
        assert not await short.acquire(a, two)
    await short.release(a, one)


async def test_hold_of_a_lock_another_took_is_refused(short: NatsAppLocks) -> None:
    a, one, two = app(), new_id(), new_id()
    assert await short.acquire(a, two)
    with pytest.raises(LockLost):
        async with short.hold(a, one):
            raise AssertionError("the block must not run")


class Counting(NatsAppLocks):
    """Counts refreshes, so a test can wait for the next one."""

    refreshes = 0

    async def refresh(self, app: str, deployment_id: str) -> None:
        self.refreshes += 1
        await super().refresh(app, deployment_id)


async def test_a_lease_lost_while_held_is_never_taken_back(bus: Bus, short: NatsAppLocks) -> None:
    locks = Counting(short.kv, every=TTL / 5)
    a, one, two = app(), new_id(), new_id()
    async with locks.hold(a, one):
        # Another deployment took the lock (say our lease lapsed while the bus was away).
        await short.kv.delete(a)
        assert await short.acquire(a, two)
        seen = locks.refreshes

        async def refreshed_since() -> bool:
            return locks.refreshes > seen

        await until(refreshed_since)
        assert await short.holder(a) == two
    assert await short.holder(a) == two

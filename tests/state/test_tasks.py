"""Background work tied to a block: stops on its flag; every wait on it is bounded."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from dockyard.state import tasks
from dockyard.state.tasks import background, settle
from tests.waiting import until


def looping() -> set[asyncio.Task[object]]:
    """The loops `background` runs now. The suite shares one event loop, so another test's
    leftovers (found by CI: a stack a failed test never stopped) must not count here."""
    return {t for t in asyncio.all_tasks()
            if getattr(t.get_coro(), "__qualname__", "") == "background.<locals>.loop"}


async def test_the_step_runs_every_period_while_the_block_runs_and_not_after() -> None:
    calls = 0

    async def step() -> None:
        nonlocal calls
        calls += 1

    assert looping() == set()
    async with background(step, every=0.01):
        await until(lambda: calls >= 3, every=0.005)
    # The loop is over with the block: no step can run after it.
    assert looping() == set()


async def test_an_exception_in_stop_on_ends_the_loop_and_the_block_goes_on() -> None:
    calls = 0

    class Lost(Exception):
        pass

    async def step() -> None:
        nonlocal calls
        calls += 1
        raise Lost

    assert looping() == set()
    async with background(step, every=0.01, stop_on=(Lost,)):
        # The loop ended quietly while the block still runs.
        await until(lambda: looping() == set())
        assert calls == 1
    assert calls == 1


async def test_a_failing_step_is_logged_when_the_block_ends_not_raised() -> None:
    async def step() -> None:
        raise ValueError("broken step")

    assert looping() == set()
    with capture_logs() as logs:
        async with background(step, every=0.01):
            await until(lambda: looping() == set())
    assert [e["event"] for e in logs] == ["background task failed"]
    assert "broken step" in logs[0]["error"]


async def test_a_step_that_swallows_its_cancellation_still_stops_on_the_flag() -> None:
    # nats-py's request path can swallow a cancellation that arrives with its reply (Python
    # 3.11): the step then returns as if nothing happened. Only the flag stops the loop.
    calls = 0
    entered = asyncio.Event()

    async def swallowing() -> None:
        nonlocal calls
        calls += 1
        entered.set()
        try:
            await asyncio.Event().wait()  # a bus call that never answers
        except asyncio.CancelledError:
            return  # swallowed, and keeps going

    assert looping() == set()
    loop = asyncio.get_running_loop()
    async with background(swallowing, every=0.01):
        await asyncio.wait_for(entered.wait(), 10)
        left_at = loop.time()
    assert loop.time() - left_at < 2 * tasks.STOP_WAIT + 1.0
    # The loop saw the flag after the swallowed cancellation: it ended, it ran no step again.
    assert looping() == set()
    assert calls == 1


async def test_settle_never_hangs_on_a_task_that_will_not_stop() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # refuses every cancellation

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with capture_logs() as logs:
        await settle(task, wait=0.05)
    assert loop.time() - started < 1.0
    assert [e["event"] for e in logs] == ["background task did not stop"]
    assert not task.done()
    release.set()  # leave nothing behind
    await asyncio.wait_for(task, 10)


async def test_settle_of_a_finished_task_returns_at_once() -> None:
    async def quick() -> None:
        return None

    task = asyncio.create_task(quick())
    await task
    with capture_logs() as logs:
        await settle(task, wait=60)
    assert logs == []

"""Step records on a real nats-server: each service under its own prefix."""

from __future__ import annotations

from dockyard.contract import subjects
from dockyard.contract.events import HookSucceeded, new_id
from dockyard.state import kv
from dockyard.state.steps import HOOK_RUNNER, key, open_steps, open_verdicts
from tests.conftest import Bus
from tests.contract.samples import sample_event


async def test_records_live_under_the_services_own_prefix(bus: Bus) -> None:
    builder = await open_steps(bus.js, "builder")
    scheduler = await open_steps(bus.js, "scheduler")
    dep = new_id()
    assert await builder.get(dep, "build") is None
    await builder.put(dep, "build", b"done")
    assert await builder.get(dep, "build") == b"done"
    # Another service's records are its own: the same step name is another key.
    assert await scheduler.get(dep, "build") is None
    raw, _ = await kv.read(await bus.kv(subjects.KV_STEPS), f"builder.{dep}.build")
    assert raw == b"done"
    assert key("builder", dep, "build") == f"builder.{dep}.build"


async def test_an_outcome_round_trips_as_its_event(bus: Bus) -> None:
    steps = await open_steps(bus.js, HOOK_RUNNER)
    dep = new_id()
    event = sample_event(HookSucceeded)
    assert await steps.outcome(dep, "postdeploy-phase") is None
    await steps.finish(dep, "postdeploy-phase", event)
    assert await steps.outcome(dep, "postdeploy-phase") == event


async def test_verdicts_read_the_hook_runners_records_only(bus: Bus) -> None:
    runner = await open_steps(bus.js, HOOK_RUNNER)
    other = await open_steps(bus.js, "scheduler")
    verdicts = await open_verdicts(bus.js, "router")
    dep = new_id()
    event = sample_event(HookSucceeded)
    await other.finish(dep, "postdeploy-phase", event)
    assert await verdicts.outcome(dep, "postdeploy-phase") is None
    await runner.finish(dep, "postdeploy-phase", event)
    assert await verdicts.outcome(dep, "postdeploy-phase") == event

"""A canary at the router, on a real Caddy and the real bus's records: each step's share of
requests goes to the new release, sticky per client; a step is judged on what Caddy's access
log says both releases answered; a good release is promoted, a failing one sent back."""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import pytest

from dockyard.contract.events import (
    AfterSwitchSucceeded,
    DeploySpec,
    HookSucceeded,
    InstanceRef,
    RolloutAborted,
    RolloutPromoted,
    RolloutRolledBack,
    RolloutStep,
    RolloutWatched,
    TrafficFailed,
    TrafficSwitched,
)
from dockyard.contract.plan import Plan, Rollout
from dockyard.router.access_log import AccessLogServer, socket_path
from dockyard.router.app import RouterDoors
from dockyard.router.caddy import start_caddy
from dockyard.router.config import STICKY_COOKIE
from dockyard.router.handlers import Router
from dockyard.settings import Settings
from tests.events import make
from tests.load import Load
from tests.waiting import until

from .conftest import Gate, RecordingEmitter, Upstream, app_name, deployment, hook_succeeded
from .test_handlers import LOG, switch

# Short steps: the load below gives the new release far more than min_requests in each.
ROLLOUT = Rollout(steps=[10, 50], hold=1.5, min_requests=5)


@dataclass
class Canaried:
    router: Router
    emitter: RecordingEmitter
    port: int

    def types(self) -> list[type]:
        return [type(e) for e in self.emitter.emitted]


@pytest.fixture
async def canaried(doors: RouterDoors, http_port: int) -> AsyncIterator[Canaried]:
    """A router on its own Caddy, measuring from its access log, its events recorded."""
    data = Path(tempfile.mkdtemp(prefix="router-canary-"))  # short: a unix socket path
    caddy = await start_caddy(data)
    access = socket_path(Path(caddy.admin.url).parent)
    emitter = RecordingEmitter()
    router = Router(admin=caddy.admin, doors=doors, emitter=emitter,
                    settings=Settings(data_dir=data, http_port=http_port), log=LOG,
                    access_log=access)
    server = await AccessLogServer(access, router.measure).start()
    try:
        await router.rebuild()
        yield Canaried(router=router, emitter=emitter, port=http_port)
    finally:
        await router.stop()
        await caddy.stop()
        await server.stop()
        shutil.rmtree(data, ignore_errors=True)


def canary_event(app: str, release: int, instances: list[InstanceRef],
                 rollout: Rollout = ROLLOUT) -> HookSucceeded:
    spec = DeploySpec(runtime="process", build_id=f"b{release}", artifact="/tmp/artifact",
                      plan=Plan(rollout=rollout))
    return make(HookSucceeded, app=app, deployment_id=deployment(), release=release, spec=spec,
                instances=instances)


async def serving_v1(canaried: Canaried, gate: Gate,
                     upstreams: Callable[[str], Awaitable[Upstream]],
                     prefix: str) -> tuple[str, Upstream, Upstream]:
    """A new app whose v1 serves every request, and a v2 upstream to deploy."""
    app = app_name(prefix)
    v1, v2 = await upstreams("v1"), await upstreams("v2")
    await switch(canaried.router, await gate.open(hook_succeeded(app, deployment(), 1,
                                                                 [v1.instance(1)])))
    return app, v1, v2


async def test_a_good_release_is_promoted_step_by_step_with_no_failed_request(
        canaried: Canaried, gate: Gate,
        upstreams: Callable[[str], Awaitable[Upstream]]) -> None:
    app, v1, v2 = await serving_v1(canaried, gate, upstreams, "canary")
    load = Load(canaried.port, f"{app}.localhost")
    event = await gate.open(canary_event(app, 2, [v2.instance(2)]))

    async def switched() -> bool:
        return TrafficSwitched in canaried.types()[1:]

    await switch(canaried.router, event)  # returns at once: the canary runs on its own
    await load.run(switched, within=60)

    answers = load.all()
    assert load.failures == [] and all(status == 200 for status, _ in answers), answers[-5:]
    seen = Counter(text for _, text in answers)
    assert seen["v1"] > 0 and seen["v2"] > 0, seen
    # Sticky: a user's answers never go back from v2 to v1 (its slot only ever turns new).
    for got in load.answers.values():
        texts = [text for _, text in got]
        if "v2" in texts:
            assert "v1" not in texts[texts.index("v2"):], texts
    steps = [e for e in canaried.emitter.emitted if isinstance(e, RolloutStep)]
    assert [(e.data.step, e.data.percent, e.data.verdict) for e in steps] == [
        (1, 10, "started"), (1, 10, "passed"), (2, 50, "started"), (2, 50, "passed")]
    judged = steps[1].data
    assert judged.new is not None and judged.new.requests >= ROLLOUT.min_requests
    assert judged.new.errors == 0 and judged.old is not None and judged.old.release == 1
    promoted = [e for e in canaried.emitter.emitted if isinstance(e, RolloutPromoted)]
    assert len(promoted) == 1 and promoted[0].data.percent == 100
    # Every request now goes to v2; the app stays sticky for its next canary.
    async with httpx.AsyncClient(timeout=10) as client:
        cookies = set()
        for _ in range(10):
            answer = await client.get(f"http://127.0.0.1:{canaried.port}/",
                                      headers={"Host": f"{app}.localhost"})
            assert answer.text == "v2"
            cookies.add(answer.headers.get("set-cookie", "").split("=")[0])
    assert STICKY_COOKIE in cookies


async def test_a_release_failing_a_fifth_of_requests_is_sent_back_at_the_first_step(
        canaried: Canaried, gate: Gate,
        upstreams: Callable[[str], Awaitable[Upstream]]) -> None:
    app = app_name("canary")
    v1, v2 = await upstreams("v1"), await upstreams("v2")
    v2.fail_every = 5  # 20 % of its answers are 500s
    await switch(canaried.router, await gate.open(hook_succeeded(app, deployment(), 1,
                                                                 [v1.instance(1)])))
    load = Load(canaried.port, f"{app}.localhost")
    event = await gate.open(canary_event(app, 2, [v2.instance(2)]))

    async def failed() -> bool:
        return TrafficFailed in canaried.types()

    await switch(canaried.router, event)
    await load.run(failed, within=60)

    types = canaried.types()
    assert RolloutAborted in types and RolloutPromoted not in types
    assert TrafficSwitched not in types[1:], "the canary must never switch every request"
    (aborted,) = [e for e in canaried.emitter.emitted if isinstance(e, RolloutAborted)]
    assert (aborted.data.step, aborted.data.percent, aborted.data.verdict) == (1, 10, "failed")
    assert aborted.data.new is not None and aborted.data.new.error_rate > 0.1
    (ended,) = [e for e in canaried.emitter.emitted if isinstance(e, TrafficFailed)]
    assert ended.data.status == "canary-error"
    assert "error rate" in ended.data.reason and "v2:" in ended.data.reason
    # At most the step's share of requests failed, and the old release serves all afterwards.
    answers = load.all()
    errors = sum(1 for status, _ in answers if status >= 500)
    assert errors <= 0.1 * len(answers) + 5, (errors, len(answers))
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(20):
            answer = await client.get(f"http://127.0.0.1:{canaried.port}/",
                                      headers={"Host": f"{app}.localhost"})
            assert (answer.status_code, answer.text) == (200, "v1")
    live = await canaried.router.routes.live(app)
    assert live is not None and live.release == 1


async def test_too_few_requests_is_inconclusive_and_the_stated_policy_decides(
        canaried: Canaried, gate: Gate,
        upstreams: Callable[[str], Awaitable[Upstream]]) -> None:
    app = app_name("idle")
    v1, v2, v3 = await upstreams("v1"), await upstreams("v2"), await upstreams("v3")
    await switch(canaried.router, await gate.open(hook_succeeded(app, deployment(), 1,
                                                                 [v1.instance(1)])))
    quick = Rollout(steps=[25], hold=0.2, min_requests=1000)
    # Nobody asks: "promote" (the default) switches, "abort" sends the release back.
    await switch(canaried.router, await gate.open(canary_event(app, 2, [v2.instance(2)], quick)))
    await until(lambda: TrafficSwitched in canaried.types()[1:], "promoted")
    step = next(e for e in canaried.emitter.emitted
                if isinstance(e, RolloutStep) and e.data.verdict != "started")
    assert step.data.verdict == "inconclusive" and "too few requests" in step.data.reason
    aborting = Rollout(steps=[25], hold=0.2, min_requests=1000, inconclusive="abort")
    await switch(canaried.router, await gate.open(canary_event(app, 3, [v3.instance(3)],
                                                               aborting)))
    await until(lambda: TrafficFailed in canaried.types(), "aborted")
    live = await canaried.router.routes.live(app)
    assert live is not None and live.release == 2


# ------------------------------------------------------------------ the watch window


def after_switch(event: HookSucceeded) -> AfterSwitchSucceeded:
    """What the hook-runner publishes once the release's after-switch passed."""
    return make(AfterSwitchSucceeded, app=event.app, deployment_id=event.deployment_id,
                release=event.release, spec=event.data.spec)


async def test_a_release_that_degrades_inside_the_watch_window_is_switched_back(
        canaried: Canaried, gate: Gate,
        upstreams: Callable[[str], Awaitable[Upstream]]) -> None:
    app, v1, v2 = await serving_v1(canaried, gate, upstreams, "watch")
    load = Load(canaried.port, f"{app}.localhost")
    watched = Rollout(steps=[], watch=30, min_requests=5)
    event = await gate.open(canary_event(app, 2, [v2.instance(2)], watched))
    await switch(canaried.router, event)  # no steps: every request at once
    assert canaried.types()[-1] is TrafficSwitched
    await canaried.router.on_after_switch_succeeded(after_switch(event),
                                                    after_switch(event).nats_subject())

    async def degraded_then_back() -> bool:
        if v2.hits > 40:
            v2.fail_every = 1  # every answer a 500 from now on
        return RolloutRolledBack in canaried.types()

    await load.run(degraded_then_back, within=30)
    (back,) = [e for e in canaried.emitter.emitted if isinstance(e, RolloutRolledBack)]
    assert back.data.status == "rolled-back" and back.data.spec == event.data.spec
    assert back.data.reason.startswith("switched back to v1, ")
    assert "watch window: error rate" in back.data.reason, back.data.reason
    live = await canaried.router.routes.live(app)
    assert live is not None and live.release == 1
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(10):
            answer = await client.get(f"http://127.0.0.1:{canaried.port}/",
                                      headers={"Host": f"{app}.localhost"})
            assert (answer.status_code, answer.text) == (200, "v1")


async def test_a_clean_watch_window_passes_and_says_so(
        canaried: Canaried, gate: Gate,
        upstreams: Callable[[str], Awaitable[Upstream]]) -> None:
    app, v1, v2 = await serving_v1(canaried, gate, upstreams, "watch")
    watched = Rollout(steps=[], watch=2, min_requests=5)
    event = await gate.open(canary_event(app, 2, [v2.instance(2)], watched))
    await switch(canaried.router, event)
    await canaried.router.on_after_switch_succeeded(after_switch(event),
                                                    after_switch(event).nats_subject())
    load = Load(canaried.port, f"{app}.localhost")
    await load.run(lambda: RolloutWatched in canaried.types(), within=30)
    (passed,) = [e for e in canaried.emitter.emitted if isinstance(e, RolloutWatched)]
    assert passed.data.reason == "the watch window passed" and passed.data.watch == 2
    assert passed.data.new is not None and passed.data.new.errors == 0
    assert RolloutRolledBack not in canaried.types()
    live = await canaried.router.routes.live(app)
    assert live is not None and live.release == 2
    assert load.failures == [] and {text for _, text in load.all()} == {"v2"}


async def test_a_window_the_live_record_does_not_have_is_not_watched_and_ends_at_once(
        canaried: Canaried, gate: Gate,
        upstreams: Callable[[str], Awaitable[Upstream]]) -> None:
    # The window is the live record's (from a verified switch), not the event's: an event
    # claiming one the switched release never had ends the wait at once, watching nothing.
    app, _, v2 = await serving_v1(canaried, gate, upstreams, "nowatch")
    event = await gate.open(hook_succeeded(app, deployment(), 2, [v2.instance(2)]))
    await switch(canaried.router, event)
    claimed = msgspec.structs.replace(event.data.spec, plan=Plan(rollout=Rollout(steps=[],
                                                                                watch=600)))
    claiming = make(AfterSwitchSucceeded, app=app, deployment_id=event.deployment_id,
                    release=2, spec=claimed)
    await canaried.router.on_after_switch_succeeded(claiming, claiming.nats_subject())
    (ended,) = [e for e in canaried.emitter.emitted if isinstance(e, RolloutWatched)]
    assert ended.data.reason == "its live record has no watch window"
    assert canaried.router.watching == {}

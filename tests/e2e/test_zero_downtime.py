"""Zero downtime under load: while a poller sends steady requests through the proxy, 20
consecutive deploys of one app — succeeding, a failing postdeploy, a failing release phase, one
cancelled mid-postdeploy, one with the router killed and restarted mid-postdeploy — give 0 failed
requests, and every answer comes from the release that was live at that moment."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

from dockyard.bus.service import SERVICES
from dockyard.client import Followers
from dockyard.contract.events import AnyEvent, DeployFailed, DeploySucceeded, HookStarted
from tests.e2e.apps import make_app
from tests.e2e.conftest import Running, start_running, stop_running
from tests.e2e.recovery_support import (
    ACK_WAIT,
    Poller,
    end_left_running,
    router_ready,
    spawn_router,
    tail,
)
from tests.runtime.process_support import reachable_tmp, remove

DEPLOYS = 20
FAILING_POSTDEPLOY, FAILING_RELEASE, CANCELLED, ROUTER_RESTARTED = 5, 9, 13, 17
WAIT = 180


def _gated(gate: Path) -> str:
    """A postdeploy that waits (bounded) for the test to open its gate, then passes."""
    return f"for i in $(seq 600); do [ -e {gate} ] && exit 0; sleep 0.1; done; exit 1"


async def _restart_router(running: Running, routers: list[subprocess.Popen[bytes]],
                          poller: Poller, log: Path, gate: Path, deployment_id: str) -> None:
    """Kill the router mid-postdeploy, requests still answered, start another; open the gate."""
    del deployment_id
    routers[-1].send_signal(signal.SIGKILL)
    routers[-1].wait(10)
    await poller.polled(5)  # no router at all for a while: the proxy still answers
    routers.append(spawn_router(running.settings, log))
    await router_ready(running.settings, routers[-1], log)
    gate.touch()  # noqa: ASYNC240 (one local file)


async def _deploy(running: Running, app: str, src: Path, *,
                  during: Callable[[str], Awaitable[None]] | None = None) -> AnyEvent:
    """Deploy; while its postdeploy runs (gated), call `during(deployment_id)` if given."""
    started: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_event(event: AnyEvent) -> None:
        if isinstance(event, HookStarted) and not started.done():
            started.set_result(event.deployment_id)

    deploy = asyncio.ensure_future(running.client.deploy(app, src, Followers(on_event=on_event),
                                                         wait=WAIT))
    if during is not None:
        deployment_id = await asyncio.wait_for(started, WAIT)
        await during(deployment_id)
    end: AnyEvent = await deploy
    return end


def _index(answer: str) -> int:
    """Which deploy answered: `200 app d7` → 7 (anything else fails the test)."""
    code, _, body = answer.partition(" ")
    assert code == "200" and body.startswith("app d"), answer
    return int(body.removeprefix("app d"))


async def test_twenty_deploys_under_steady_requests_fail_none(tmp_path: Path) -> None:
    others = tuple(s for s in SERVICES if s != "router")
    running = await start_running(tmp_path, "process", services=others, ack_wait=float(ACK_WAIT))
    log = tmp_path / "router.log"
    routers: list[subprocess.Popen[bytes]] = [spawn_router(running.settings, log)]
    shared = reachable_tmp("dockyard-gates-")
    poller: Poller | None = None
    try:
        await router_ready(running.settings, routers[0], log)
        app = running.app_name("steady")
        first = await _deploy(running, app, make_app(tmp_path / "d0", "process", "d0"))
        assert isinstance(first, DeploySucceeded), first
        poller = Poller(running.port, app).start()
        await poller.polled(5)
        succeeded, failed = [0], []
        for i in range(1, DEPLOYS + 1):
            gate = shared / f"gate-{i}"
            src = tmp_path / f"d{i}"
            during: Callable[[str], Awaitable[None]] | None = None
            if i == FAILING_POSTDEPLOY:
                make_app(src, "process", f"d{i}", postdeploy="echo failing; exit 1")
            elif i == FAILING_RELEASE:
                make_app(src, "process", f"d{i}", release="echo failing; exit 3")
            elif i == CANCELLED:
                make_app(src, "process", f"d{i}", postdeploy=_gated(gate))
                during = partial(running.client.cancel, app)
            elif i == ROUTER_RESTARTED:
                make_app(src, "process", f"d{i}", postdeploy=_gated(gate))
                during = partial(_restart_router, running, routers, poller, log, gate)
            else:
                make_app(src, "process", f"d{i}")
            end = await _deploy(running, app, src, during=during)
            if i in (FAILING_POSTDEPLOY, FAILING_RELEASE, CANCELLED):
                assert isinstance(end, DeployFailed), (i, end)
                failed.append(i)
            else:
                assert isinstance(end, DeploySucceeded), (i, end, tail(log))
                succeeded.append(i)
            await poller.polled(3)
            # The newest answers come from the release live now.
            assert _index(poller.answers[-1]) == succeeded[-1], (i, poller.answers[-3:])
        answers = await poller.stop()
        errors = [a for a in answers if not a.startswith("200 ")]
        print(f"{len(answers)} requests across {DEPLOYS} deploys "
              f"({len(succeeded) - 1} succeeded, {len(failed)} failed or cancelled, "
              f"router restarted once): {len(errors)} errors")
        assert errors == []
        seen = [_index(a) for a in answers]
        assert not set(seen) & set(failed), "a failed or cancelled release answered"
        assert seen == sorted(seen), "an older release answered after a newer one"
        assert set(seen) == set(succeeded), "every succeeded release answered"
    finally:
        if poller is not None and poller.running:
            await poller.stop()
        for proc in routers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
        await stop_running(running)
        remove(shared)
        left = end_left_running(running.settings.data_dir)
    assert left == {}

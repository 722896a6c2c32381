"""Scale and restart on a real stack (both runtimes, real nats-server and Caddy): the CLI
scales web to 2 and back to 1 and restarts it while a poller requests the app every 50 ms;
`ps` and the recorded route follow; a later deploy keeps the formation; bad input is one line."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from dockyard.contract.events import DeploySucceeded
from tests.e2e.api_support import client, until
from tests.e2e.apps import make_app
from tests.e2e.cli_support import cli, deploy
from tests.e2e.conftest import Running
from tests.e2e.recovery_support import Poller

FAST_DRAIN = 'drain = "1s"\n'


def answering(running: Running, app: str, wanted: Callable[[httpx.Response], bool]
              ) -> Callable[[], Awaitable[httpx.Response | None]]:
    """A check: the app's host through Caddy, when its answer is the wanted one."""
    async def check() -> httpx.Response | None:
        async with httpx.AsyncClient(timeout=5) as http:
            try:
                found = await http.get(f"http://127.0.0.1:{running.port}/",
                                       headers={"Host": f"{app}.localhost"})
            except httpx.TransportError:
                return None
        return found if wanted(found) else None

    return check


async def web_ids(running: Running, app: str, release: int) -> set[str]:
    """The ids of the release's running web instances (the runtime's own view)."""
    return {i.id for i in await running.instances(app)
            if i.process == "web" and i.release == release}


async def routed(running: Running, app: str) -> set[str]:
    """The web instances the router recorded as the live route."""
    live = await running.client.doors.routes.live(app)
    assert live is not None
    return {i.id for i in live.instances if i.process == "web"}


async def ps_web(running: Running, app: str) -> set[str]:
    """The running web instances `dockyard ps --json` shows."""
    shown = await cli(running, "ps", app, "--json")
    assert shown.returncode == 0, shown.stderr
    return {r["id"] for r in json.loads(shown.stdout)["instances"]
            if r["process"] == "web" and r.get("state", "running") == "running"}


async def test_scale_up_down_restart_and_a_later_deploy_keep_every_request_answered(
        running: Running, tmp_path: Path) -> None:
    stack = running
    app = stack.app_name("scl")
    first = await deploy(stack, app, make_app(tmp_path / "v1", stack.runtime, "v1",
                                              toml=FAST_DRAIN))
    assert isinstance(first.end, DeploySucceeded), first.end
    (original,) = await web_ids(stack, app, 1)
    poller = Poller(stack.port, app).start()
    try:
        await poller.polled(3)
        up = await cli(stack, "scale", app, "web=2")
        assert up.returncode == 0, up.stderr
        assert f"{app} v1: web=2" in up.stdout
        two = await web_ids(stack, app, 1)
        assert len(two) == 2 and original in two
        assert await routed(stack, app) == two
        assert await ps_web(stack, app) == two
        shown = await cli(stack, "ps", app)
        assert "formation: web=2" in shown.stdout, shown.stdout
        await poller.polled(10)

        down = await cli(stack, "scale", app, "web=1")
        assert down.returncode == 0, down.stderr
        one = await web_ids(stack, app, 1)
        assert len(one) == 1 and one < two
        assert await routed(stack, app) == one
        assert await ps_web(stack, app) == one
        await poller.polled(5)

        again = await cli(stack, "restart", app)
        assert again.returncode == 0, again.stderr
        renewed = await web_ids(stack, app, 1)
        assert len(renewed) == 1 and not renewed & one
        assert await routed(stack, app) == renewed
        await poller.polled(5)

        assert (await cli(stack, "scale", app, "web=2")).returncode == 0
        second = await deploy(stack, app, make_app(tmp_path / "v2", stack.runtime, "v2",
                                                   toml=FAST_DRAIN))
        assert isinstance(second.end, DeploySucceeded), second.end
        assert len(await web_ids(stack, app, 2)) == 2  # the formation outlives the release
        await poller.polled(5)
    finally:
        answers = await poller.stop()
    failed = [a for a in answers if not a.startswith("200 ")]
    assert failed == [], failed
    print(f"\n{stack.runtime}: {len(answers)} requests through scale up, down, restart and a "
          "deploy: 0 failed")


async def test_bad_scale_requests_are_one_line_and_exit_2(running: Running,
                                                          tmp_path: Path) -> None:
    stack = running
    app = stack.app_name("sclbad")
    first = await deploy(stack, app, make_app(tmp_path / "v1", stack.runtime, "v1"))
    assert isinstance(first.end, DeploySucceeded), first.end
    for args, problem in [
        (["scale", app, "web"], "expected PROCESS=COUNT"),
        (["scale", app, "web=two"], "expected PROCESS=COUNT"),
        (["scale", app, "web=-1"], "between 0 and 20"),
        (["scale", app, "web=21"], "between 0 and 20"),
        (["scale", app, "clock=1"], "no process type 'clock'"),
        (["scale", "nosuchapp", "web=1"], "no app named 'nosuchapp'"),
        (["scale", "Bad_App", "web=1"], "error:"),
        (["restart", app, "clock"], "no process type 'clock'"),
    ]:
        done = await cli(stack, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and problem in lines[0], (args, done.stderr)
    assert len(await web_ids(stack, app, 1)) == 1


async def test_the_api_scales_web_to_0_and_back_and_restarts(running: Running,
                                                             tmp_path: Path) -> None:
    stack = running
    app = stack.app_name("sclapi")
    first = await deploy(stack, app, make_app(tmp_path / "v1", stack.runtime, "v1",
                                              toml=FAST_DRAIN))
    assert isinstance(first.end, DeploySucceeded), first.end
    async with client(stack) as http:
        zero = await http.post(f"/apps/{app}/scale", json={"process": "web", "count": 0})
        assert zero.status_code == 202, zero.text
        assert zero.json()["operation"] == "scale"
        page = await until(answering(stack, app, lambda r: r.status_code == 503),
                           "the host answers 503 with no web process")
        assert page.text == "app has no web process\n"
        await until(lambda: _none_left(stack, app), "the web instance stops")

        assert (await http.post(f"/apps/{app}/scale",
                                json={"process": "web", "count": 1})).status_code == 202
        await until(answering(stack, app, lambda r: r.text == "app v1\n"), "v1 served again")
        (before,) = await web_ids(stack, app, 1)

        restarted = await http.post(f"/apps/{app}/restart", json={})
        assert restarted.status_code == 202 and restarted.json()["operation"] == "restart"

        async def replaced() -> bool:
            now = await web_ids(stack, app, 1)
            return len(now) == 1 and before not in now and await routed(stack, app) == now

        await until(replaced, "the restart replaces the web instance")
        detail = (await http.get(f"/apps/{app}")).json()
        assert detail["formation"] == {"web": 1}
        unknown = await http.post(f"/apps/{app}/scale", json={"process": "clock", "count": 1})
        assert unknown.status_code == 400 and "no process type 'clock'" in unknown.json()["error"]
        missing = await http.post("/apps/nosuchapp/restart", json={})
        assert missing.status_code == 404 and "has no live release" in missing.json()["error"]


async def _none_left(running: Running, app: str) -> bool:
    return not await web_ids(running, app, 1)

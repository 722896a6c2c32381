"""Scale and restart on a real stack (process runtime, real nats-server and Caddy): the CLI
scales web to 2 and back to 1 and restarts it while a poller requests the app every 50 ms;
`ps` and the recorded route follow; a later deploy keeps the formation; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

from dockyard.contract.events import DeploySucceeded
from tests.e2e.api_support import stack
from tests.e2e.apps import make_app
from tests.e2e.cli_support import cli, deploy
from tests.e2e.conftest import Running
from tests.e2e.recovery_support import Poller

__all__ = ["stack"]  # the module's stack fixture
FAST_DRAIN = 'drain = "1s"\n'


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
        stack: Running, tmp_path: Path) -> None:
    app = stack.app_name("scl")
    first = await deploy(stack, app, make_app(tmp_path / "v1", "process", "v1",
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
        second = await deploy(stack, app, make_app(tmp_path / "v2", "process", "v2",
                                                   toml=FAST_DRAIN))
        assert isinstance(second.end, DeploySucceeded), second.end
        assert len(await web_ids(stack, app, 2)) == 2  # the formation outlives the release
        await poller.polled(5)
    finally:
        answers = await poller.stop()
    failed = [a for a in answers if not a.startswith("200 ")]
    assert failed == [], failed
    print(f"\n{len(answers)} requests through scale up, down, restart and a deploy: 0 failed")


async def test_bad_scale_requests_are_one_line_and_exit_2(stack: Running,
                                                          tmp_path: Path) -> None:
    app = stack.app_name("sclbad")
    first = await deploy(stack, app, make_app(tmp_path / "v1", "process", "v1"))
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

"""Maintenance mode on a real stack (process runtime: routing is the runtime's no concern):
the CLI and the HTTP API turn it on and off; the router's Caddy answers 503 with Retry-After and
the page while the app's instances keep running, through a deploy and a router restart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from dockyard.bus.service import start_service
from dockyard.contract.events import DeploySucceeded
from tests.e2e.api_support import client, stack, until
from tests.e2e.apps import make_app
from tests.e2e.cli_support import cli, deploy
from tests.e2e.conftest import Running

__all__ = ["stack"]  # the module's stack fixture
PAGE = "app is down for maintenance, retry later\n"


async def answer(running: Running, app: str) -> httpx.Response | None:
    """The app's host through the router's Caddy (None while nothing listens)."""
    async with httpx.AsyncClient(timeout=5) as http:
        try:
            return await http.get(f"http://127.0.0.1:{running.port}/",
                                  headers={"Host": f"{app}.localhost"})
        except httpx.TransportError:  # a reload resets connections arriving then
            return None


def answering(running: Running, app: str,
              wanted: Callable[[httpx.Response], bool]
              ) -> Callable[[], Awaitable[httpx.Response | None]]:
    async def check() -> httpx.Response | None:
        found = await answer(running, app)
        return found if found is not None and wanted(found) else None

    return check


def in_maintenance(r: httpx.Response) -> bool:
    return r.status_code == 503 and r.text.startswith(PAGE)


async def instances_answer(running: Running, app: str, release: int, text: str) -> None:
    """The release's web instances still run and answer, straight (not through the router)."""
    refs = [i for i in await running.instances(app)
            if i.process == "web" and i.port and i.release == release]
    assert refs, f"{app} has no running web instance"
    async with httpx.AsyncClient(timeout=5) as http:
        for ref in refs:
            r = await http.get(f"http://{ref.host}:{ref.port}/")
            assert (r.status_code, r.text) == (200, text), ref


async def restart_router(running: Running) -> None:
    """Stop the stack's router service and start a new one (it rebuilds from the records)."""
    (old,) = [s for s in running.stack.services if s.ctx.name == "router"]
    await old.stop()
    running.stack.services.remove(old)
    running.stack.services.append(await start_service("router", running.settings,
                                                      serve_metrics=False))


async def test_cli_maintenance_through_a_deploy_and_a_router_restart(
        stack: Running, tmp_path: Path) -> None:
    app = stack.app_name("mnt")
    first = await deploy(stack, app, make_app(tmp_path / "v1", "process", "v1"))
    assert isinstance(first.end, DeploySucceeded), first.end
    await until(answering(stack, app, lambda r: r.text == "app v1\n"), "v1 served")

    on = await cli(stack, "maintenance", "on", app, "--message", "Back at 14:00 UTC")
    assert on.returncode == 0, on.stderr
    assert f"{app} is in maintenance since" in on.stdout and "Back at 14:00 UTC" in on.stdout
    page = await until(answering(stack, app, in_maintenance), "the maintenance page")
    assert page.headers["Retry-After"] == "60"
    assert page.text == PAGE + "Back at 14:00 UTC\n"
    await instances_answer(stack, app, 1, "app v1\n")
    status = await cli(stack, "maintenance", "status", app, "--json")
    assert status.returncode == 0, status.stderr
    assert '"enabled":true' in status.stdout.replace(" ", "")
    said = await cli(stack, "status", app)
    assert said.returncode == 0, said.stderr
    assert "maintenance: on since" in said.stdout and "Back at 14:00 UTC" in said.stdout

    # A deploy meanwhile proceeds and becomes the live release, but is not served yet.
    second = await deploy(stack, app, make_app(tmp_path / "v2", "process", "v2"))
    assert isinstance(second.end, DeploySucceeded), second.end
    assert any("is in maintenance" in line for line in second.system), second.system
    assert in_maintenance(await until(answering(stack, app, lambda r: True), "an answer"))
    await instances_answer(stack, app, 2, "app v2\n")

    # A restarted router rebuilds the page from the records.
    await restart_router(stack)
    assert in_maintenance(await until(answering(stack, app, lambda r: True),
                                      "the restarted router answers"))

    off = await cli(stack, "maintenance", "off", app)
    assert off.returncode == 0, off.stderr
    assert "is not in maintenance" in off.stdout
    said = await cli(stack, "status", app)
    assert said.returncode == 0 and "maintenance" not in said.stdout, said.stdout
    await until(answering(stack, app, lambda r: r.text == "app v2\n"), "v2 served again")


async def test_cli_refuses_unknown_apps_bad_names_and_bad_messages(stack: Running) -> None:
    for args, problem in (
            (("on", "no-such-app"), "no app named 'no-such-app'"),
            (("status", "no-such-app"), "no app named 'no-such-app'"),
            (("off", "Bad_Name"), "Bad_Name"),
    ):
        done = await cli(stack, "maintenance", *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert problem in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    app = stack.app_name("mntbad")
    await stack.client.config_change(app, {"A": "1"}, [])  # known, never deployed
    bad = await cli(stack, "maintenance", "on", app, "--message", "{file./etc/passwd}")
    assert bad.returncode == 2 and "without { or }" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (await stack.client.maintenance(app)).enabled


async def test_api_maintenance_with_the_token_only(stack: Running, tmp_path: Path) -> None:
    app = stack.app_name("mntapi")
    done = await deploy(stack, app, make_app(tmp_path / "v1", "process", "v1"))
    assert isinstance(done.end, DeploySucceeded), done.end
    async with client(stack) as http:
        await until(lambda: _known(http, app), "the api knows the app")
        async with httpx.AsyncClient(base_url=str(http.base_url), timeout=10) as anonymous:
            refused = await anonymous.post(f"/apps/{app}/maintenance", json={"enabled": True})
            assert refused.status_code == 401
        assert not (await stack.client.maintenance(app)).enabled

        on = await http.post(f"/apps/{app}/maintenance",
                             json={"enabled": True, "message": "upgrading the database"})
        assert on.status_code == 200, on.text
        assert (on.json()["enabled"], on.json()["message"]) == (True, "upgrading the database")
        page = await until(answering(stack, app, in_maintenance), "the maintenance page")
        assert page.headers["Retry-After"] == "60" and "upgrading the database" in page.text
        await instances_answer(stack, app, 1, "app v1\n")
        shown = await http.get(f"/apps/{app}/maintenance")
        assert shown.status_code == 200 and shown.json()["enabled"] is True

        unknown = await http.post("/apps/no-such-app/maintenance", json={"enabled": True})
        assert unknown.status_code == 404, unknown.text

        off = await http.post(f"/apps/{app}/maintenance", json={"enabled": False})
        assert off.status_code == 200 and off.json()["enabled"] is False
        await until(answering(stack, app, lambda r: r.text == "app v1\n"), "v1 served again")


async def _known(http: httpx.AsyncClient, app: str) -> bool:
    return (await http.get(f"/apps/{app}")).status_code == 200

"""Destroying an app on the real stack, on both runtimes: after `dockyard destroy APP --yes` (or
`DELETE /apps/{app}`) the app is gone everywhere — instances, containers, images, release dirs,
its user, its route (the host answers 404), every bucket's keys, the api's records — and the name
deploys again as a new app, v1."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiodocker
import httpx
import pytest
from nats.js.errors import NotFoundError

from dockyard.api_client import ApiNotFound, api_get, api_token, api_url
from dockyard.bus.service import start_service
from dockyard.contract import subjects
from dockyard.runtime.docker_config import LABEL_APP
from dockyard.runtime.users import uid_of
from dockyard.state import kv
from tests.e2e.apps import get, make_app
from tests.e2e.cli_support import DOCKYARD, cli, cli_env, deployment_of, lock_holder
from tests.e2e.conftest import Running, start_running, stop_running

pytestmark = pytest.mark.timeout(900)

# A bucket, the identity that owns (or reads) it, and the key patterns of one app.
BUCKETS = (
    (subjects.KV_ROUTES, "router", ("live.{app}", "pending.{app}")),
    (subjects.KV_PLACEMENTS, "scheduler", ("{app}.*",)),
    (subjects.KV_RELEASES, "builder", ("{app}", "{app}.*")),
    (subjects.KV_QUEUE, "builder", ("{app}",)),
    (subjects.KV_CONFIG, "api", ("{app}", "{app}.*")),
    (subjects.KV_HOOKS, "api", ("{app}",)),
    (subjects.KV_SINKS, "api", ("{app}",)),
)


async def until(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    """Wait (bounded) for a condition."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.2)


async def keys_left(running: Running, app: str) -> dict[str, list[str]]:
    """Every key of the app still holding a value in each bucket, read as the bucket's owner
    (a purged key leaves only an empty purge marker)."""
    left: dict[str, list[str]] = {}
    for bucket, identity, patterns in BUCKETS:
        js = await running.js_as(identity)
        store = await js.key_value(bucket)
        found = [k for p in patterns for k in await kv.keys(js, bucket, p.format(app=app))
                 if (await kv.read(store, k))[0] is not None]
        if found:
            left[bucket] = found
    return left


async def objects_left(running: Running, app: str) -> list[str]:
    """The app's source archives and manifests left in the object stores."""
    js = await running.js_as("builder")
    left = []
    for name in (subjects.OBJ_SOURCES, subjects.OBJ_BUILDS):
        store = await js.object_store(name)
        try:
            infos = await store.list(ignore_deletes=True)
        except NotFoundError:  # an empty store
            continue
        left += [i.name for i in infos if i.name.startswith(f"{app}/") and not i.deleted]
    return left


async def docker_left(app: str) -> list[str]:
    """Containers (running or not), images and networks labelled with the app."""
    filters = {"label": [f"{LABEL_APP}={app}"]}
    async with aiodocker.Docker() as docker:
        containers = await docker.containers.list(all=True, filters=filters)
        images = await docker.images.list(filters=filters)
        networks = await docker.networks.list(filters=filters)
    return [*(c.id for c in containers), *(i["Id"] for i in images),
            *(n["Id"] for n in networks)]


def runtime_files(running: Running, app: str) -> list[Path]:
    """The process runtime's tree, release env files and instance records of the app."""
    paths = [running.settings.apps_root / app,
             running.settings.data_dir / "process" / "releases" / app,
             running.settings.data_dir / "process" / "instances" / app]
    return [p for p in paths if p.exists()]


async def api_forgot(running: Running, app: str) -> bool:
    try:
        await asyncio.to_thread(api_get, running.settings, f"/apps/{app}")
    except ApiNotFound:
        return True
    return False


async def assert_gone(running: Running, app: str) -> None:
    """Everything the brief lists, as each owner sees it."""
    assert get(running.port, app).status_code == 404
    assert await running.instances(app) == []
    assert await keys_left(running, app) == {}
    assert await objects_left(running, app) == []
    if running.runtime == "docker":
        assert await docker_left(app) == []
    else:
        assert runtime_files(running, app) == []
        assert uid_of(app) is None
    assert await api_forgot(running, app)
    status = await cli(running, "status", app)
    assert status.returncode == 2, status
    assert f"no app named {app!r}" in status.stderr and status.stderr.count("\n") == 1
    assert not await running.client.app_exists(app)


async def test_destroy_removes_everything_and_the_name_deploys_again_from_v1(
        running: Running, tmp_path: Path) -> None:
    app = running.app_name("gone")
    src = make_app(tmp_path / "src", running.runtime, "one", release="true")
    setup = [("config", "set", app, "GREETING=hi", "--create"),
             ("hooks", "add", app, "postdeploy", "--label", "Check", "--", "true"),
             ("notify", "add", app, "ops", "http://127.0.0.1:9/hook", "--secret", "s3cret")]
    for args in setup:
        done = await cli(running, *args)
        assert done.returncode == 0, done
    deployed = await cli(running, "deploy", app, str(src))
    assert deployed.returncode == 0, deployed
    assert get(running.port, app).text == "app one\n"
    assert await keys_left(running, app) != {}

    destroyed = await cli(running, "destroy", app, "--yes")
    assert destroyed.returncode == 0, destroyed
    said = destroyed.stdout
    assert f"destroyed {app}" in said
    for removed in ("instance ", "route of ", "config (every version)", "1 operator hook(s)",
                    "notification sinks", "source archive(s)", "release numbering"):
        assert removed in said, said
    assert ("removed image " if running.runtime == "docker" else "removed release dir ") in said
    await assert_gone(running, app)
    # The notifier forgets the failing sink's status when it reads the destroy's end.
    await until(lambda: _no_sink_status(running, app))

    again = await cli(running, "deploy", app, str(make_app(tmp_path / "two", running.runtime,
                                                            "two")))
    assert again.returncode == 0, again
    live = await running.client.doors.routes.live(app)
    assert live is not None and live.release == 1
    assert get(running.port, app).text == "app two\n"
    releases = await cli(running, "releases", app, "--json")
    assert releases.returncode == 0 and '"number":2' not in releases.stdout.replace(" ", "")
    # The new app's config and hooks start empty.
    assert (await running.client.doors.config.current(app)).version == 0
    assert (await running.client.doors.hooks.load(app)).hooks == []


async def test_destroy_asks_for_confirmation_and_refuses_unknown_apps(
        running: Running, tmp_path: Path) -> None:
    app = running.app_name("kept")
    done = await cli(running, "config", "set", app, "A=1", "--create")
    assert done.returncode == 0, done
    refused = await cli(running, "destroy", app)  # stdin is not a terminal
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "--yes" in refused.stderr
    assert (await running.client.doors.config.current(app)).version == 1
    unknown = await cli(running, "destroy", running.app_name("never"), "--yes")
    assert unknown.returncode == 2 and "no app named" in unknown.stderr
    assert unknown.stderr.count("\n") == 1
    bad = await cli(running, "destroy", "Not_An_App", "--yes")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    # An app with config alone is destroyed too.
    gone = await cli(running, "destroy", app, "--yes")
    assert gone.returncode == 0, gone
    assert not await running.client.app_exists(app)


def typed_at_a_terminal(running: Running, app: str, answer: str) -> tuple[int, str, str]:
    """`dockyard destroy APP` with a terminal as stdin, the answer typed at its prompt."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([DOCKYARD, "destroy", app], stdin=slave, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=cli_env(running), text=True)
        os.close(slave)
        os.write(master, (answer + "\n").encode())
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
    return proc.returncode, out, err


async def test_destroy_on_a_terminal_asks_for_the_app_name(running: Running) -> None:
    app = running.app_name("asked")
    done = await cli(running, "config", "set", app, "A=1", "--create")
    assert done.returncode == 0, done
    code, out, err = await asyncio.to_thread(typed_at_a_terminal, running, app, "wrong")
    assert code == 2 and err == f"error: not confirmed: {app} was not destroyed\n"
    assert "Type the app name to confirm" in out
    assert await running.client.app_exists(app)
    code, out, err = await asyncio.to_thread(typed_at_a_terminal, running, app, app)
    assert code == 0, err
    assert f"destroyed {app}" in out and "removed config (every version)" in out
    assert not await running.client.app_exists(app)


async def test_destroy_is_refused_while_a_deploy_runs(running: Running, tmp_path: Path) -> None:
    app = running.app_name("busy")
    slow = make_app(tmp_path / "src", running.runtime, "one", release="sleep 60")
    cmd = await running.client.request_deploy(app, slow)
    await until(lambda: _holds(running, app, cmd.deployment_id))
    refused = await cli(running, "destroy", app, "--yes")
    assert refused.returncode == 2, refused
    assert f"a deploy of {app} is running ({cmd.deployment_id})" in refused.stderr
    assert refused.stderr.count("\n") == 1
    # The deploy is untouched: it still holds the lock; cancelled, it ends and frees it.
    assert await lock_holder(running, app) == cmd.deployment_id
    await running.client.cancel(app, cmd.deployment_id)
    await until(lambda: _free(running, app), within=60)
    gone = await cli(running, "destroy", app, "--yes")
    assert gone.returncode == 0, gone
    await assert_gone(running, app)


async def test_the_api_destroys_with_the_token(running: Running, tmp_path: Path) -> None:
    app = running.app_name("viaapi")
    deployed = await cli(running, "deploy", app, str(make_app(tmp_path / "s", running.runtime,
                                                              "one")))
    assert deployed.returncode == 0, deployed
    assert deployment_of(deployed.stdout)
    base = api_url(running.settings)
    async with httpx.AsyncClient(base_url=base) as http:
        anonymous = await http.delete(f"/apps/{app}")
        assert anonymous.status_code == 401
        auth = {"Authorization": f"Bearer {api_token(running.settings)}"}
        r = await http.delete(f"/apps/{app}", headers=auth)
        assert r.status_code == 202, r.text
        assert r.json()["operation"] == "destroy"
        await until(lambda: api_forgot(running, app), within=120)
        assert (await http.delete(f"/apps/{app}", headers=auth)).status_code == 404
    await until(lambda: _no_app(running, app), within=30)
    await assert_gone(running, app)


async def _holds(running: Running, app: str, deployment_id: str) -> bool:
    return await lock_holder(running, app) == deployment_id


async def _free(running: Running, app: str) -> bool:
    return await lock_holder(running, app) is None


async def _no_sink_status(running: Running, app: str) -> bool:
    js = await running.js_as("notifier")
    store = await js.key_value(subjects.KV_DELIVERIES)
    keys = await kv.keys(js, subjects.KV_DELIVERIES, f"sink.{app}.*")
    values = [(await kv.read(store, k))[0] for k in keys]
    return all(v is None for v in values)


async def _no_app(running: Running, app: str) -> bool:
    return not await running.client.app_exists(app)



async def test_a_destroy_stopped_mid_way_resumes_when_the_service_is_back(
        tmp_path: Path) -> None:
    """The scheduler is down when the destroy comes: the CLI gives up following after its
    timeout (one line, exit 2), the host already answers 404; the scheduler started again
    does its step from the recorded chain and the destroy ends."""
    running = await start_running(tmp_path / "stack", "process")
    try:
        app = running.app_name("resumed")
        deployed = await cli(running, "deploy", app, str(make_app(tmp_path / "src", "process",
                                                                  "one")))
        assert deployed.returncode == 0, deployed
        [scheduler] = [s for s in running.stack.services if s.ctx.name == "scheduler"]
        await scheduler.stop()
        running.stack.services.remove(scheduler)
        waited = await cli(running, "destroy", app, "--yes", "--timeout", "5")
        assert waited.returncode == 2, waited
        assert waited.stderr == (f"error: the destroy of {app} did not end within 5s; it goes "
                                 f"on (follow it with: dockyard events --app {app} --follow)\n")
        assert get(running.port, app).status_code == 404  # the router's step is done
        assert await running.instances(app) != []  # the scheduler's is not
        running.stack.services.append(await start_service("scheduler", running.settings))
        await until(lambda: _no_app(running, app), within=60)
        await until(lambda: api_forgot(running, app), within=30)
        await assert_gone(running, app)
    finally:
        await stop_running(running)

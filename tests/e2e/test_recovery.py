"""Crashes of the control plane on the real stack: the apps keep answering, one proxy and one bus
per data dir afterwards, deploys in flight end, and a clean stop leaves nothing running."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dockyard.bus.embedded import free_port
from dockyard.bus.service import SERVICES
from dockyard.client import DockyardClient, Followers
from dockyard.contract.events import AnyEvent, DeployFailed, DeploySucceeded, LogLine
from dockyard.runtime.select import Runtimes
from dockyard.settings import Settings
from tests.docker_support import ensure_test_image, require_docker
from tests.e2e.apps import make_app
from tests.e2e.conftest import start_running, stop_running
from tests.e2e.recovery_support import (
    ACK_WAIT,
    DOCKYARD,
    Poller,
    end_left_running,
    failures,
    router_ready,
    spawn_router,
    tail,
    until,
)
from tests.router.listening import processes_of
from tests.runtime.process_support import reachable_tmp, remove, remove_process_app


async def deploy(client: DockyardClient, app: str, src: Path) -> DeploySucceeded:
    end = await client.deploy(app, src, Followers(), wait=180)
    assert isinstance(end, DeploySucceeded), end
    return end


# ---------------------------------------------------------------- (1) the router alone killed


async def test_a_killed_router_restarted_leaves_one_caddy_and_every_request_answered(
        tmp_path: Path) -> None:
    others = tuple(s for s in SERVICES if s != "router")
    running = await start_running(tmp_path, "process", services=others, ack_wait=float(ACK_WAIT))
    log = tmp_path / "router.log"
    routers = [spawn_router(running.settings, log)]
    try:
        await router_ready(running.settings, routers[0], log)
        shop, later = running.app_name("shop"), running.app_name("later")
        await deploy(running.client, shop, make_app(tmp_path / "shop", "process", "v1"))
        (caddy,) = processes_of("caddy", running.settings.data_dir)

        poller = Poller(running.port, shop).start()
        await poller.polled(5)
        routers[0].send_signal(signal.SIGKILL)
        routers[0].wait(10)
        await poller.polled(10)  # no router at all for a while: the proxy still answers
        routers.append(spawn_router(running.settings, log))
        await router_ready(running.settings, routers[1], log)
        assert processes_of("caddy", running.settings.data_dir) == [caddy]
        await poller.polled(5)
        # The window is the kill and the restart (a later reload, for a new host, is not).
        answers = await poller.stop()
        assert failures(answers, {"200 app v1"}) == [], "the live app failed across the restart"

        # An app first deployed after the restart answers every one of 40 requests.
        await deploy(running.client, later, make_app(tmp_path / "later", "process", "later"))
        polled_later = Poller(running.port, later).start()
        await polled_later.polled(40)
        answers_later = await polled_later.stop()
        assert failures(answers_later, {"200 app later"}) == []
        assert processes_of("caddy", running.settings.data_dir) == [caddy]
        print(f"{len(answers)} polls of the live app across the router kill and restart, "
              f"0 failed; {len(answers_later)} of the app deployed after it, 0 failed")
    finally:
        for proc in routers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(20) == 0, tail(log)
        await stop_running(running)
        left = end_left_running(running.settings.data_dir)
    assert left == {}


# ------------------------------------------------- (2) `dockyard up` killed with its process group


@dataclass
class Up:
    """`dockyard up` as a subprocess, in a process group (session) of its own."""

    proc: asyncio.subprocess.Process
    out: Path

    @classmethod
    async def start(cls, env: dict[str, str], out: Path) -> Up:
        marks = ready_marks(out)
        with out.open("ab") as sink:
            proc = await asyncio.create_subprocess_exec(
                DOCKYARD, "up", env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
                start_new_session=True)
        up = cls(proc, out)

        def ready() -> bool:
            assert proc.returncode is None, f"dockyard up exited {proc.returncode}:\n{tail(out)}"
            return ready_marks(out) > marks

        try:
            await until(ready, 60)
        except BaseException:
            await up.kill_group()
            raise
        return up

    async def kill_group(self) -> None:
        """SIGKILL of its whole process group, as a crash or an OOM kill of the session."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 10)

    async def stop(self) -> int:
        """Ctrl-C, and its exit code."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return await asyncio.wait_for(self.proc.wait(), 60)
        except TimeoutError:
            await self.kill_group()
            raise


def ready_marks(out: Path) -> int:
    """How many times `dockyard up` said it is up in its output."""
    return out.read_text(errors="replace").count("Press Ctrl-C to stop.") if out.exists() else 0




@pytest.mark.parametrize("runtime", ["process", "docker"])
async def test_up_killed_with_its_group_mid_deploy_starts_again_adopting_what_survived(
        runtime: str, tmp_path: Path) -> None:
    if runtime == "docker":
        require_docker()
        ensure_test_image()
    data_dir = tmp_path / "data"
    port = free_port()
    # The apps' own users must reach their trees: not under pytest's 0700 tmp dirs.
    apps_dir = reachable_tmp("dockyard-apps-")
    env = {**os.environ, "DOCKYARD_DATA_DIR": str(data_dir), "DOCKYARD_HTTP_PORT": str(port),
           "DOCKYARD_APPS_DIR": str(apps_dir),
           "DOCKYARD_RUNTIME": runtime, "DOCKYARD_DRAIN": "0.5", "DOCKYARD_KILL_GRACE": "2",
           "DOCKYARD_ACK_WAIT": ACK_WAIT, "DOCKYARD_LOG_LEVEL": "INFO", "COLUMNS": "200"}
    for name in ("DOCKYARD_NATS_URL", "DOCKYARD_NATS_KEYS", "DOCKYARD_API_PORT"):
        env.pop(name, None)
    out = tmp_path / "up.log"
    up = await Up.start(env, out)
    settings = Settings.from_env(env={}, data_dir=data_dir, runtime=runtime, apps_dir=apps_dir)
    client = await DockyardClient.connect(settings)
    app = f"recover-{runtime[0]}{uuid.uuid4().hex[:6]}"  # docker's names are machine-wide
    ups = [up]
    try:
        await deploy(client, app, make_app(tmp_path / "v1", runtime, "v1"))
        api_url = (data_dir / "api.url").read_text()
        bus_url = settings.bus_url()
        before = {name: processes_of(name, data_dir) for name in ("nats-server", "caddy")}
        assert all(len(pids) == 1 for pids in before.values()), before

        # v2's postdeploy sleeps; the whole `dockyard up` group is killed while it runs.
        lines: list[str] = []
        started = asyncio.Event()

        async def on_event(event: AnyEvent) -> None:
            if event.type == "dockyard.command.started":
                started.set()

        async def on_line(line: LogLine) -> None:
            lines.append(line.text)

        src = make_app(tmp_path / "v2", runtime, "v2",
                       postdeploy="echo gate-$$; sleep 4; echo postdeploy-done")
        poller = Poller(port, app).start()
        in_flight = asyncio.ensure_future(client.deploy(
            app, src, Followers(on_line=on_line, on_event=on_event), wait=240))
        await asyncio.wait_for(started.wait(), 120)
        await until(lambda: any(line.startswith("gate-") for line in lines), 30)
        await up.kill_group()
        # What runs in sessions of its own survived: the bus, the proxy, the app's instance.
        assert {name: processes_of(name, data_dir) for name in before} == before
        await poller.polled(10)

        ups.append(up := await Up.start(env, out))
        assert {name: processes_of(name, data_dir) for name in before} == before  # adopted
        assert (data_dir / "api.url").read_text() == api_url  # the api kept its port
        assert settings.bus_url() == bus_url
        end = await in_flight
        assert isinstance(end, DeploySucceeded | DeployFailed)
        assert isinstance(end, DeploySucceeded), f"the in-flight deploy ended {end}:\n{lines}"
        assert "postdeploy-done" in lines
        await poller.polled(5)
        answers = await poller.stop()
        assert failures(answers, {"200 app v1", "200 app v2"}) == [], \
            "the live app failed while `dockyard up` was down and started again"
        assert answers[-1] == "200 app v2"
        async with httpx.AsyncClient(timeout=5) as http:  # the api answers on its old port
            assert (await http.get(f"{api_url.strip()}/healthz")).status_code == 200
        print(f"{len(answers)} polls of the live app across the kill -9 of `dockyard up` and "
              f"its restart, 0 failed (gap: none, the proxy was adopted)")
    finally:
        await client.close()
        for each in ups:
            if each.proc.returncode is None:
                code = await each.stop()
                assert code == 0, tail(out)
        if runtime == "process":
            await remove_process_app(settings, app)
        else:
            runtimes = Runtimes(settings)
            try:
                rt = await runtimes.get(runtime)
                for ref in await rt.list_instances(app):
                    await rt.stop_instance(ref, 1.0)
                await rt.remove_app(app)  # its images and network
            finally:
                await runtimes.close()
                remove(apps_dir)
        left = end_left_running(data_dir)
    assert left == {}, tail(out)
    assert not (data_dir / "nats.json").exists() and not (data_dir / "caddy.json").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_up_stopped_leaves_no_bus_and_no_proxy(sig: signal.Signals, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {**os.environ, "DOCKYARD_DATA_DIR": str(data_dir), "DOCKYARD_RUNTIME": "process",
           "DOCKYARD_HTTP_PORT": str(free_port()), "DOCKYARD_LOG_LEVEL": "WARNING"}
    for name in ("DOCKYARD_NATS_URL", "DOCKYARD_NATS_KEYS"):
        env.pop(name, None)
    out = tmp_path / "up.log"
    up = await Up.start(env, out)
    try:
        running = {name: processes_of(name, data_dir) for name in ("nats-server", "caddy")}
        assert all(len(pids) == 1 for pids in running.values()), running
        up.proc.send_signal(sig)
        assert await asyncio.wait_for(up.proc.wait(), 60) == 0, tail(out)
    finally:
        if up.proc.returncode is None:
            await up.kill_group()
        left = end_left_running(data_dir)
    assert left == {}


async def test_a_second_up_on_the_same_http_port_is_refused(tmp_path: Path) -> None:
    # Two stacks (two data dirs) on one HTTP port would share it (Caddy's SO_REUSEPORT) and
    # answer 404 for every other request to each one's apps.
    port = free_port()
    env = {**os.environ, "DOCKYARD_RUNTIME": "process", "DOCKYARD_HTTP_PORT": str(port),
           "DOCKYARD_LOG_LEVEL": "WARNING", "COLUMNS": "200"}
    for name in ("DOCKYARD_NATS_URL", "DOCKYARD_NATS_KEYS"):
        env.pop(name, None)
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    up = await Up.start({**env, "DOCKYARD_DATA_DIR": str(first_dir)}, tmp_path / "a.log")
    second = await asyncio.create_subprocess_exec(
        DOCKYARD, "up", env={**env, "DOCKYARD_DATA_DIR": str(second_dir)},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True)
    try:
        stdout, stderr = await asyncio.wait_for(second.communicate(), 60)
        said = (stdout + stderr).decode()
        assert second.returncode == 2, said
        assert f"127.0.0.1:{port} already has a listener" in said
        assert "Traceback" not in said
        assert end_left_running(second_dir) == {}  # its bus and proxy were stopped
        async with httpx.AsyncClient(timeout=5) as http:
            answers = [(await http.get(f"http://127.0.0.1:{port}/",
                                       headers={"Host": "nobody.localhost"})).status_code
                       for _ in range(10)]
        assert answers == [404] * 10  # the first stack's proxy alone answers
        assert await up.stop() == 0
    finally:
        for each in (up, Up(second, tmp_path / "b.log")):
            if each.proc.returncode is None:
                await each.kill_group()
        left = end_left_running(first_dir) | end_left_running(second_dir)
    assert left == {}

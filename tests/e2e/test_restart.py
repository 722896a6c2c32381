"""A service killed mid-work and started again re-attaches; nothing runs twice."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.bus.service import SERVICES
from dockyard.client import Followers
from dockyard.contract.events import AnyEvent, DeploySucceeded, LogLine
from tests.e2e.apps import get, make_app
from tests.e2e.conftest import Running, start_running, stop_running

DOCKYARD = str(Path(sys.executable).parent / "dockyard")
ACK_WAIT = 3.0


def spawn(service: str, running: Running) -> subprocess.Popen[bytes]:
    """`dockyard service NAME` as its own OS process on the test's bus."""
    env = {**os.environ, "DOCKYARD_NATS_URL": running.settings.nats_url,
           "DOCKYARD_DATA_DIR": str(running.settings.data_dir),
           "DOCKYARD_APPS_DIR": str(running.settings.apps_root),
           "DOCKYARD_RUNTIME": running.runtime, "DOCKYARD_ACK_WAIT": str(ACK_WAIT),
           "DOCKYARD_KILL_GRACE": "2", "DOCKYARD_DRAIN": "0.5", "DOCKYARD_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([DOCKYARD, "service", service], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL: no cleanup, no ack, as a crash."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


async def deploy_with_crash(running: Running, tmp_path: Path, service: str, app: str,
                            src: Path, crash_on: str) -> tuple[DeploySucceeded, list[str]]:
    """Deploy while `service` runs alone; SIGKILL it when `crash_on` is seen; start a new one."""
    procs = [spawn(service, running)]
    lines: list[str] = []
    crashed = asyncio.Event()

    async def on_event(event: AnyEvent) -> None:
        if event.type == crash_on and not crashed.is_set():
            crashed.set()
            await asyncio.sleep(0.5)  # let the work get under way
            kill(procs[0])
            procs.append(spawn(service, running))

    async def on_line(line: LogLine) -> None:
        lines.append(line.text)

    try:
        end = await running.client.deploy(app, src, Followers(on_line=on_line, on_event=on_event),
                                          wait=180)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    kill(proc)
    assert crashed.is_set(), f"{crash_on} never came"
    assert isinstance(end, DeploySucceeded), end
    return end, lines


async def _stack_without(tmp_path: Path, runtime: str, service: str) -> Running:
    others = tuple(s for s in SERVICES if s != service)
    return await start_running(tmp_path, runtime, services=others, ack_wait=ACK_WAIT)


@pytest.mark.parametrize("runtime", ["process", "docker"])
async def test_a_killed_hook_runner_reattaches_to_its_running_command(
        runtime: str, tmp_path: Path) -> None:
    running = await _stack_without(tmp_path, runtime, "hook-runner")
    try:
        app = running.app_name("crashy")
        src = make_app(tmp_path / "v1", runtime, "v1",
                       postdeploy="echo run-$(cat /proc/sys/kernel/random/uuid); sleep 4; "
                                  "echo postdeploy-done")
        _, lines = await deploy_with_crash(running, tmp_path, "hook-runner", app, src,
                                           "dockyard.command.started")
        runs = {line for line in lines if re.fullmatch(r"run-[0-9a-f-]{36}", line)}
        assert len(runs) == 1, f"the postdeploy command ran more than once: {runs}"
        assert "postdeploy-done" in lines
        assert get(running.port, app).text == "app v1\n"
    finally:
        await stop_running(running)


@pytest.mark.parametrize("runtime", ["process", "docker"])
async def test_a_killed_scheduler_reattaches_to_the_instances_it_started(
        runtime: str, tmp_path: Path) -> None:
    running = await _stack_without(tmp_path, runtime, "scheduler")
    try:
        app = running.app_name("slowstart")
        src = make_app(tmp_path / "v1", runtime, "v1")
        # The web process takes 3 s to listen, so the scheduler is killed while waiting.
        procfile = (src / "Procfile").read_text().replace("web: ", "web: sleep 3; ", 1)
        (src / "Procfile").write_text(procfile)
        end, _ = await deploy_with_crash(running, tmp_path, "scheduler", app, src,
                                         "dockyard.start.started")
        instances = [i for i in await running.instances(app) if i.release == end.release]
        assert len(instances) == 1, f"expected the one web instance, found {instances}"
        assert get(running.port, app).text == "app v1\n"
    finally:
        await stop_running(running)

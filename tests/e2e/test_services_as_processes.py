"""Every service as its own OS process (`dockyard service NAME`): the deploy still completes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import nats
import pytest

from dockyard.bus.embedded import free_port
from dockyard.bus.service import SERVICES
from dockyard.settings import Settings
from tests.conftest import TEST, start_provisioned_nats
from tests.docker_support import ensure_test_image, require_docker
from tests.e2e.apps import get, make_app
from tests.runtime.process_support import reachable_tmp, remove_process_app

DOCKYARD = str(Path(sys.executable).parent / "dockyard")


def start_services(env: dict[str, str], logs: Path) -> dict[str, subprocess.Popen[bytes]]:
    """`dockyard service NAME` for every service, each logging to logs/NAME.log."""
    # Each service's own log goes to a file (a pipe nobody reads could fill and block it).
    return {name: subprocess.Popen([DOCKYARD, "service", name], env=env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=open(logs / f"{name}.log", "wb"))  # noqa: SIM115
            for name in SERVICES}


@pytest.mark.parametrize("runtime", ["process", "docker"])
async def test_six_services_as_six_processes_complete_a_deploy(runtime: str,
                                                                tmp_path: Path) -> None:
    if runtime == "docker":
        require_docker()
        ensure_test_image()
    # Services never create the streams and buckets: the bus is provisioned first, as an
    # operator provisions one before starting services against it.
    bus = start_provisioned_nats(tmp_path / "nats")
    port = free_port()
    settings = Settings(data_dir=tmp_path / "data", runtime=runtime,
                        apps_dir=reachable_tmp("dockyard-apps-"))
    env = {**os.environ, "DOCKYARD_NATS_URL": bus.url, "DOCKYARD_NATS_KEYS": str(bus.keys_dir),
           "DOCKYARD_DATA_DIR": str(tmp_path / "data"),
           "DOCKYARD_APPS_DIR": str(settings.apps_root),
           "DOCKYARD_HTTP_PORT": str(port), "DOCKYARD_RUNTIME": runtime,
           "DOCKYARD_DRAIN": "0.5", "DOCKYARD_LOG_LEVEL": "WARNING", "COLUMNS": "200"}
    procs = await asyncio.to_thread(start_services, env, tmp_path)
    try:
        src = make_app(tmp_path / "v1", runtime, "v1", postdeploy="echo gate-open")
        result = await asyncio.to_thread(
            subprocess.run, [DOCKYARD, "deploy", "solo", str(src)], env=env,
            capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "gate-open" in result.stdout
        assert get(port, "solo").text == "app v1\n"
        assert all(p.poll() is None for p in procs.values()), "a service died"

        # Each service published its own part: the events' sources name six processes' work.
        nc = await nats.connect(bus.url, **bus.credentials(TEST).options())
        sources = set()
        try:
            sub = await nc.jetstream().subscribe("dockyard.evt.solo.>", ordered_consumer=True)
            while True:
                try:
                    msg = await sub.next_msg(timeout=1)
                except nats.errors.TimeoutError:
                    break
                sources.add(json.loads(msg.data)["source"])
        finally:
            await nc.close()
        assert {"dockyard/builder", "dockyard/hook-runner", "dockyard/scheduler",
                "dockyard/router"} <= sources
        assert (tmp_path / "data" / "api.url").exists()  # the api service served too
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | str] = {}
        for name, proc in procs.items():
            try:
                codes[name] = proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = "killed"
        await remove_process_app(settings, "solo")
        bus.stop()
    assert all(code == 0 for code in codes.values()), f"services did not stop cleanly: {codes}"

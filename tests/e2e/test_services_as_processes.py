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

from dockyard.bus.embedded import free_port, start_nats
from dockyard.bus.service import SERVICES
from dockyard.runtime.select import Runtimes
from dockyard.settings import Settings
from tests.docker_support import ensure_test_image, require_docker
from tests.e2e.apps import get, make_app

DOCKYARD = str(Path(sys.executable).parent / "dockyard")


@pytest.mark.parametrize("runtime", ["process", "docker"])
async def test_six_services_as_six_processes_complete_a_deploy(runtime: str,
                                                                tmp_path: Path) -> None:
    if runtime == "docker":
        require_docker()
        ensure_test_image()
    bus = start_nats(tmp_path / "nats")
    port = free_port()
    env = {**os.environ, "DOCKYARD_NATS_URL": bus.url, "DOCKYARD_DATA_DIR": str(tmp_path / "data"),
           "DOCKYARD_HTTP_PORT": str(port), "DOCKYARD_RUNTIME": runtime,
           "DOCKYARD_DRAIN": "0.5", "DOCKYARD_LOG_LEVEL": "WARNING", "COLUMNS": "200"}
    # Each service's own log goes to a file (a pipe nobody reads could fill and block it).
    procs = {name: subprocess.Popen([DOCKYARD, "service", name], env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=open(tmp_path / f"{name}.log", "wb"))  # noqa: SIM115
             for name in SERVICES}
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
        nc = await nats.connect(bus.url)
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
        codes = {}
        for name, proc in procs.items():
            try:
                codes[name] = proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = "killed"
        runtimes = Runtimes(Settings(data_dir=tmp_path / "data", runtime=runtime))
        rt = await runtimes.get(runtime)
        for ref in await rt.list_instances("solo"):
            await rt.stop_instance(ref, 2)
        await runtimes.close()
        bus.stop()
    assert all(code == 0 for code in codes.values()), f"services did not stop cleanly: {codes}"

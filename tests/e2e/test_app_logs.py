"""`dockyard logs APP` on the real stack, process runtime and docker: the running instances'
output, shipped by the scheduler to the bus; --process; --follow gets a new line live."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

from dockyard.contract.events import DeploySucceeded
from tests.e2e.apps import get, make_app
from tests.e2e.cli_support import DOCKYARD, cli, cli_env, deploy
from tests.e2e.conftest import Running

WORKER = "worker: while true; do echo worker-tick; sleep 1; done"


def logging_app(root: Path, runtime: str) -> Path:
    """An app whose web process writes a line per request, and a worker that ticks."""
    if runtime == "docker":
        web = "web: exec busybox httpd -f -vv -p $PORT -h www"
    else:  # http.server writes each request on stderr
        web = "web: exec python3 -m http.server $PORT --bind 127.0.0.1 --directory www"
    return make_app(root, runtime, "v1", files={"Procfile": f"{web}\n{WORKER}\n"})


async def logs_until(running: Running, *args: str, needle: str,
                     within: float = 30.0) -> list[str]:
    """`dockyard logs ARGS...` again until a line has the needle; its lines."""
    deadline = time.monotonic() + within
    while True:
        proc = await cli(running, "logs", *args, time_limit=60)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        if any(needle in line for line in lines):
            return lines
        assert time.monotonic() < deadline, (needle, proc.stdout[-3000:], proc.stderr)
        await asyncio.sleep(0.5)


async def test_logs_app_shows_the_running_instances_output(running: Running,
                                                           tmp_path: Path) -> None:
    app = running.app_name("applog")
    v1 = await deploy(running, app, logging_app(tmp_path / "src", running.runtime))
    assert isinstance(v1.end, DeploySucceeded), (v1.end, v1.text)
    assert (await asyncio.to_thread(get, running.port, app, "/probe-one")).status_code == 404

    lines = await logs_until(running, app, needle="probe-one")
    assert any(line.split(" ", 1)[1].startswith("web[") and "probe-one" in line
               for line in lines), lines

    workers = await logs_until(running, app, "--process", "worker", needle="worker-tick")
    assert all(" worker[" in line for line in workers), workers
    web_only = await cli(running, "logs", app, "--process", "web")
    assert "worker-tick" not in web_only.stdout and "probe-one" in web_only.stdout

    last = await cli(running, "logs", app, "--process", "worker", "--lines", "1", "--json")
    assert last.returncode == 0, last.stderr
    [obj] = [json.loads(line) for line in last.stdout.splitlines()]
    assert (obj["app"], obj["process"], obj["text"]) == (app, "worker", "worker-tick")

    # A deployment is still named as before; --process with one is one line, exit 2.
    dep = await cli(running, "logs", v1.end.deployment_id)
    assert dep.returncode == 0 and "===== build =====" in dep.stdout
    wrong = await cli(running, "logs", v1.end.deployment_id[:8], "--process", "web")
    assert wrong.returncode == 2 and wrong.stderr.startswith("error: --process is for")
    bad = await cli(running, "logs", app, "--process", "no.such")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


async def test_logs_app_follow_gets_a_new_line_live(running: Running, tmp_path: Path) -> None:
    app = running.app_name("follow")
    v1 = await deploy(running, app, logging_app(tmp_path / "src", running.runtime))
    assert isinstance(v1.end, DeploySucceeded), (v1.end, v1.text)
    await logs_until(running, app, needle="worker-tick")  # shipping has begun

    follower = await asyncio.create_subprocess_exec(
        DOCKYARD, "logs", app, "--process", "web", "--follow", "--lines", "0",
        env=cli_env(running), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert follower.stdout is not None

        async def seen(needle: str) -> str:
            assert follower.stdout is not None
            while line := (await follower.stdout.readline()).decode():
                if needle in line:
                    return line
            raise AssertionError(f"follow ended before {needle!r}")

        async def ask() -> None:
            # Asked again until seen: the follower may still be subscribing at the first one.
            while True:
                await asyncio.to_thread(get, running.port, app, "/probe-live")
                await asyncio.sleep(1.0)

        asker = asyncio.create_task(ask())
        try:
            line = await asyncio.wait_for(seen("probe-live"), timeout=30)
        finally:
            asker.cancel()
            await asyncio.gather(asker, return_exceptions=True)
        assert " web[" in line
        follower.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(follower.wait(), timeout=15) == 130
    finally:
        if follower.returncode is None:
            follower.kill()
            await follower.wait()

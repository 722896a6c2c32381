"""`dockyard run APP -- CMD` on the real stack, process runtime and docker: a one-off from the
live release with its config, output streamed, exit code passed through, capped, bounded."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from dockyard.contract import subjects
from dockyard.contract.codec import decode_as
from dockyard.contract.events import DeploySucceeded, LogLine
from tests.e2e.apps import make_app
from tests.e2e.cli_support import DOCKYARD, cli, cli_env, deploy
from tests.e2e.conftest import RUNTIMES, Running, start_running, stop_running

# A deploy log's (and a run's) byte budget in this module's stack: small, so a cap is cheap.
CAP = 200_000


@pytest.fixture(scope="module", params=RUNTIMES)
async def running(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """One stack per runtime, with a small log budget."""
    r = await start_running(tmp_path_factory.mktemp(f"run-{request.param}"), request.param,
                            log_max_bytes=CAP)
    yield r
    await stop_running(r)


async def test_run_is_a_one_off_of_the_live_release_with_its_config(running: Running,
                                                                    tmp_path: Path) -> None:
    app = running.app_name("run")
    await running.client.config_change(app, {"GREETING": "hello-run"}, [])

    none = await cli(running, "run", app, "--", "true", time_limit=60)
    assert none.returncode == 2, none.stdout + none.stderr
    assert none.stderr.strip() == (
        f"error: app '{app}' has no live release to run from: deploy it first")

    v1 = await deploy(running, app, make_app(tmp_path / "src", running.runtime, "v1"))
    assert isinstance(v1.end, DeploySucceeded), (v1.end, v1.text)

    proc = await cli(running, "run", app, "--", "sh", "-c",
                     'test "$GREETING" = hello-run && echo greeting-ok; echo "$GREETING"; '
                     'cat www/index.html; echo to-stderr >&2; exit 3', time_limit=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    # The command saw the config; its output, kept by the bus, has the value redacted.
    assert proc.stdout.splitlines() == ["greeting-ok", "[REDACTED]", "app v1"], proc.stdout
    assert "to-stderr" in proc.stderr and "running on release v1" in proc.stderr
    assert "Traceback" not in proc.stderr

    ok = await cli(running, "run", app, "--", "echo one-word", time_limit=120)
    assert (ok.returncode, ok.stdout) == (0, "one-word\n"), ok.stderr


async def test_run_refuses_an_unknown_app_and_stops_at_its_timeout(running: Running,
                                                                   tmp_path: Path) -> None:
    unknown = await cli(running, "run", running.app_name("nosuch"), "--", "true", time_limit=60)
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error: no app named") and unknown.stdout == ""
    assert len(unknown.stderr.strip().splitlines()) == 1

    app = running.app_name("slow")
    v1 = await deploy(running, app, make_app(tmp_path / "src", running.runtime, "v1"))
    assert isinstance(v1.end, DeploySucceeded), (v1.end, v1.text)
    slow = await cli(running, "run", app, "--timeout", "1", "--", "sh", "-c",
                     "echo started; sleep 60", time_limit=60)
    assert slow.returncode == 124, slow.stdout + slow.stderr
    assert slow.stdout == "started\n"
    assert "error: timed out after 1s" in slow.stderr


async def test_a_run_that_prints_a_lot_is_capped(running: Running, tmp_path: Path) -> None:
    app = running.app_name("big")
    v1 = await deploy(running, app, make_app(tmp_path / "src", running.runtime, "v1"))
    assert isinstance(v1.end, DeploySucceeded), (v1.end, v1.text)
    big = await cli(running, "run", app, "--", "sh", "-c",
                    "head -c 600000 /dev/zero | tr '\\0' x | fold -w 1000; echo after",
                    time_limit=120)
    assert big.returncode == 0, big.stderr[-2000:]
    assert 0 < len(big.stdout.encode()) <= CAP
    assert "after" not in big.stdout.splitlines()
    assert "truncated: this deployment's log reached its 200,000-byte limit" in big.stderr


async def test_ctrl_c_stops_following_and_the_run_goes_on_to_its_end(running: Running,
                                                                      tmp_path: Path) -> None:
    app = running.app_name("intr")
    v1 = await deploy(running, app, make_app(tmp_path / "src", running.runtime, "v1"))
    assert isinstance(v1.end, DeploySucceeded), (v1.end, v1.text)
    proc = await asyncio.create_subprocess_exec(
        DOCKYARD, "run", app, "--", "sh", "-c", "echo started; sleep 3; echo finished",
        env=cli_env(running), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        # Streamed: the first line is printed while the command still sleeps.
        first = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert first == b"started\n"
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), timeout=15) == 130
        said = (await proc.stderr.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    found = re.search(r"interrupted: run ([0-9a-f]{32}) goes on", said)
    assert found, said

    # The run ends all the same, its last line on its log subject.
    sub = await running.client.js.subscribe(
        subjects.log(found.group(1)), ordered_consumer=True, stream=subjects.STREAM_LOGS,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
    try:
        texts: list[str] = []
        while True:
            line = decode_as((await sub.next_msg(timeout=30)).data, LogLine)
            if line.exit_code is not None:
                break
            texts.append(line.text)
    finally:
        await sub.unsubscribe()
    assert line.exit_code == 0 and "finished" in texts

"""The deploy log and the records, as the CLI prints them: logs (kept and live), events, status."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from dockyard.client import Followers
from dockyard.contract.events import DeploySucceeded
from tests.e2e.apps import make_app
from tests.e2e.cli_support import DOCKYARD, cells, cli, cli_env, index_of
from tests.e2e.conftest import Running


async def _until(check, within: float = 15.0):  # type: ignore[no-untyped-def]
    """Poll an async check until it returns something truthy (the api projects asynchronously)."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.3)


async def test_logs_follow_streams_live_and_the_records_read_back(
        running: Running, tmp_path: Path) -> None:
    app = running.app_name("logs")
    src = make_app(tmp_path / "src", running.runtime, "v1",
                   release="echo release-says-hi",
                   # Its 6 s pause outlasts the follower's start on a loaded machine (a CPU
                   # hog made the CLI join 1 s into a 3 s pause: both lines came 1.97 s apart).
                   postdeploy="echo live-one; sleep 6; echo live-two")
    watch_done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    cmd = await running.client.request_deploy(app, src)
    dep = cmd.deployment_id

    # `dockyard logs DEP --follow`, started while the deploy runs.
    follower = await asyncio.create_subprocess_exec(
        DOCKYARD, "logs", dep, "--follow", env=cli_env(running),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    seen: list[tuple[float, str]] = []

    async def read() -> None:
        assert follower.stdout is not None
        while line := await follower.stdout.readline():
            seen.append((time.monotonic(), line.decode().rstrip("\n")))

    async def wait_end() -> None:
        watch_done.set_result(await running.client.follow(app, dep, Followers(), wait=240))

    try:
        await asyncio.wait_for(asyncio.gather(read(), wait_end()), timeout=240)
        rc = await asyncio.wait_for(follower.wait(), timeout=30)
    finally:
        if follower.returncode is None:
            follower.kill()
            await follower.wait()
    ended_at = time.monotonic()
    end = watch_done.result()
    assert isinstance(end, DeploySucceeded), end
    assert rc == 0, (await follower.stderr.read()).decode() if follower.stderr else rc
    texts = [t for _, t in seen]
    at = {t: when for when, t in seen}
    # Live: the first line arrived while the postdeploy command was still sleeping.
    assert at["live-two"] - at["live-one"] > 2.0, seen
    assert at["live-two"] <= ended_at
    for heading in ("===== build =====", "===== release =====", "===== postdeploy ====="):
        assert heading in texts, texts

    # The kept log, read after the end, has the same lines under the headings.
    kept = await cli(running, "logs", dep)
    assert kept.returncode == 0, kept.stderr
    lines = kept.stdout.splitlines()
    order = [index_of(lines, t) for t in ("===== build =====", "===== release =====",
                                          "release-says-hi", "===== postdeploy =====",
                                          "live-one", "live-two")]
    assert order == sorted(order), kept.stdout
    assert any(line.startswith("----- ") and line.endswith("(1/1) -----") for line in lines)

    # Events: one JSON object per line, all of this app.
    events = await cli(running, "events", "--app", app)
    assert events.returncode == 0, events.stderr
    objects = [json.loads(line) for line in events.stdout.splitlines()]
    assert objects and all(o["subject"] == app for o in objects)
    assert all({"type", "subject", "deploymentid", "data"} <= o.keys() for o in objects)
    mine = [o["type"] for o in objects if o["deploymentid"] == dep]
    assert mine[0] == "dockyard.deploy.queued" and "dockyard.deploy.succeeded" in mine, mine
    # Success comes before retirement: only the old instances' retirement may follow it.
    after = mine[mine.index("dockyard.deploy.succeeded") + 1:]
    assert after in ([], ["dockyard.retire.succeeded"]), mine

    async def status_says_live() -> str | None:
        st = await cli(running, "status", app)
        return st.stdout if st.returncode == 0 and "succeeded" in st.stdout else None

    status = await _until(status_says_live)
    assert status and f"{app}: live release v{end.release}" in status, status
    assert dep in status and f"http://{app}.localhost:{running.port}/" in status

    deployments = await cli(running, "deployments", app)
    assert deployments.returncode == 0, deployments.stderr
    row = cells(deployments.stdout.splitlines()[index_of(deployments.stdout.splitlines(), dep)])
    assert row[:3] == [dep, f"v{end.release}", "succeeded"], row

    releases = await cli(running, "releases", app)
    assert releases.returncode == 0, releases.stderr
    row = cells(releases.stdout.splitlines()[index_of(releases.stdout.splitlines(), dep)])
    assert row[0] == f"v{end.release}" and row[2] == "source" and row[4] == dep, row


async def test_logs_of_a_failed_deploy_and_of_nothing(running: Running, tmp_path: Path) -> None:
    app = running.app_name("logfail")
    src = make_app(tmp_path / "src", running.runtime, "v1", release="echo about-to-fail; exit 4")
    proc = await cli(running, "deploy", app, str(src))
    assert proc.returncode == 1 and "release-error" in proc.stdout, proc.stdout

    async def failed_status() -> str | None:
        st = await cli(running, "status", app)
        return st.stdout if "release-error" in st.stdout else None

    status = await _until(failed_status)
    assert status and f"{app}: live release none" in status, status
    deployments = await cli(running, "deployments", app)
    assert "release-error" in deployments.stdout
    lines = deployments.stdout.splitlines()
    row = cells(lines[index_of(lines, "release-error")])
    dep = row[0]
    assert row[1:3] == ["v1", "release-error"], row
    kept = await cli(running, "logs", dep)
    assert "about-to-fail" in kept.stdout and "===== release =====" in kept.stdout, kept.stdout

    unknown = await cli(running, "status", "no-such-app")
    assert unknown.returncode == 2 and "no-such-app" in unknown.stderr, unknown.stderr

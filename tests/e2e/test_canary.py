"""Canary deploys on the real stack (nats-server, Caddy, the process runtime), under a bounded
load on loopback: a good release is promoted through every step with 0 failed requests; one that
answers 500 to a fifth of its requests is sent back at the first step, the deploy ends
`canary-error` with the figures, on-failure runs, its instances go, and the old release serves
everything afterwards."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

from dockyard.client import Followers
from dockyard.contract.events import (
    DeployFailed,
    DeploySucceeded,
    RolloutAborted,
    RolloutStep,
    RolloutWatched,
)
from dockyard.runtime.select import Runtimes
from tests.e2e.apps import get, make_app
from tests.e2e.cli_support import cli, deployment_of
from tests.e2e.conftest import Running, start_running, stop_running
from tests.e2e.phase_support import events_of, texts_of, types
from tests.load import Load
from tests.waiting import until

WAIT = 180
# Each step held 3 s: the load gives the new release far more than min_requests in each.
ROLLOUT = """
[rollout]
steps = [10, 50]
hold = "3s"
min_requests = 5

[processes.web]
command = "exec python3 web.py"

[[on_failure]]
command = "echo on-failure-ran status=$DOCKYARD_FAILURE_STATUS"
"""


def web(version: str, failing: str = "False") -> str:
    """A web process answering `app <version>`, or a 500 when `failing` (a Python expression,
    evaluated per request, over `n`: the request's number, and `since`: seconds since the
    first request) is true."""
    return f"""\
import http.server, itertools, os, time

count = itertools.count(1)
first = []


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        n = next(count)
        first.append(first[0] if first else time.monotonic())
        del first[1:]
        since = time.monotonic() - first[0]
        body = b"app {version}\\n"
        self.send_response(500 if {failing} else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def canary_app(root: Path, version: str, fail_every: int = 0) -> Path:
    return make_app(root, "process", version, toml=ROLLOUT,
                    files={"web.py": web(version, f"n % {fail_every} == 0" if fail_every
                                         else "False")})


async def serves_only(running: Running, app: str, release: int) -> None:
    """Every request goes to that release, and only its instances run (the other's are gone)."""
    assert all(get(running.port, app).text == f"app v{release}\n" for _ in range(20))
    runtimes = Runtimes(running.settings)
    try:
        rt = await runtimes.get("process")
        assert {i.release for i in await rt.list_instances(app)} == {release}
    finally:
        await runtimes.close()


async def deploy_under_load(running: Running, app: str, source: Path) -> tuple[object, Load]:
    """Deploy while users ask the app's host; the deploy's end and what the users got."""
    load = Load(running.port, f"{app}.localhost")
    outcome: list[object] = []

    async def ended() -> bool:
        return bool(outcome)

    async def deploy() -> None:
        outcome.append(await running.client.deploy(app, source, Followers(), wait=WAIT))

    task = asyncio.create_task(deploy())
    try:
        await load.run(ended, within=WAIT)
    finally:
        await task
    return outcome[0], load


async def test_a_good_canary_is_promoted_and_a_failing_one_is_sent_back(tmp_path: Path) -> None:
    running = await start_running(tmp_path, "process")
    try:
        app = running.app_name("canary")
        v1 = await running.client.deploy(app, canary_app(tmp_path / "v1", "v1"), Followers(),
                                         wait=WAIT)
        assert isinstance(v1, DeploySucceeded), v1

        # A good release: every step passes, then every request goes to it; nobody sees an error.
        v2, load = await deploy_under_load(running, app, canary_app(tmp_path / "v2", "v2"))
        assert isinstance(v2, DeploySucceeded), v2
        answers = load.all()
        print(f"good canary: {len(answers)} requests, "  # the README's figures (pytest -s)
              f"{sum(1 for a in answers if a[0] != 200)} not 200, {len(load.failures)} failed")
        assert load.failures == [], load.failures[:3]
        assert all(status == 200 for status, _ in answers), Counter(answers)
        seen = Counter(text.strip() for _, text in answers)
        assert seen["app v1"] > 0 and seen["app v2"] > 0, seen
        events = await events_of(running, app, v2.deployment_id)
        steps = [e for e in events if isinstance(e, RolloutStep)]
        assert [(e.data.step, e.data.percent, e.data.verdict) for e in steps] == [
            (1, 10, "started"), (1, 10, "passed"), (2, 50, "started"), (2, 50, "passed")]
        assert types(events).index("dockyard.rollout.promoted") < types(events).index(
            "dockyard.traffic.switched")
        assert all(get(running.port, app).text == "app v2\n" for _ in range(5))
        texts = await texts_of(running, v2.deployment_id)
        assert any("canary step 1/2: v2 takes 10% of requests" in t for t in texts), texts

        # A release failing a fifth of its requests: sent back at the first step.
        v3, load = await deploy_under_load(
            running, app, canary_app(tmp_path / "v3", "v3", fail_every=5))
        assert isinstance(v3, DeployFailed), v3
        assert v3.data.status == "canary-error"
        assert "canary step 1/2 (10%) failed: error rate" in v3.data.reason, v3.data.reason
        answers = load.all()
        errors = [a for a in answers if a[0] >= 500]
        print(f"failing canary: {len(answers)} requests, {len(errors)} answered 5xx; "
              f"{v3.data.reason}")
        # At most the step's share of requests failed (10 % of a fifth, plus noise).
        assert len(errors) <= 0.1 * len(answers) + 5, (len(errors), len(answers))
        assert load.failures == [], load.failures[:3]
        events = await events_of(running, app, v3.deployment_id)
        (aborted,) = [e for e in events if isinstance(e, RolloutAborted)]
        assert aborted.data.new is not None and aborted.data.new.error_rate > 0.1
        assert "dockyard.traffic.switched" not in types(events)
        texts = await texts_of(running, v3.deployment_id)
        assert "on-failure-ran status=canary-error" in texts, "\n".join(texts)
        await serves_only(running, app, 2)
    finally:
        await stop_running(running)


WATCHED = """
[rollout]
steps = []
watch = "40s"
min_requests = 5

[processes.web]
command = "exec python3 web.py"

[[on_failure]]
command = "echo on-failure-ran status=$DOCKYARD_FAILURE_STATUS"
"""


async def test_a_release_degrading_after_its_switch_is_switched_back_in_the_window(
        tmp_path: Path) -> None:
    running = await start_running(tmp_path, "process")
    try:
        app = running.app_name("watched")
        # A first deploy has nothing to switch back to: its window passes at once.
        source = make_app(tmp_path / "v1", "process", "v1", toml=WATCHED,
                          files={"web.py": web("v1")})
        v1 = await running.client.deploy(app, source, Followers(), wait=WAIT)
        assert isinstance(v1, DeploySucceeded), v1
        events = await events_of(running, app, v1.deployment_id)
        (watched,) = [e for e in events if isinstance(e, RolloutWatched)]
        assert watched.data.reason == "nothing to switch back to"

        # v2 serves well for 10 s after its switch, then answers 500 to everything.
        source = make_app(tmp_path / "v2", "process", "v2", toml=WATCHED,
                          files={"web.py": web("v2", "since > 10")})
        v2, load = await deploy_under_load(running, app, source)
        assert isinstance(v2, DeployFailed), v2
        assert v2.data.status == "rolled-back", v2.data
        assert v2.data.reason.startswith("switched back to v1, "), v2.data.reason
        assert "watch window: error rate" in v2.data.reason, v2.data.reason
        events = await events_of(running, app, v2.deployment_id)
        kinds = types(events)
        assert kinds.index("dockyard.traffic.switched") < kinds.index(
            "dockyard.rollout.rolled_back") < kinds.index("dockyard.deploy.failed")
        answers = load.all()
        seen = Counter((status, text.strip()) for status, text in answers)
        print(f"watch window: {len(answers)} requests: {dict(seen)}; {v2.data.reason}")
        assert load.failures == [], load.failures[:3]
        assert seen[(200, "app v2")] > 0 and seen[(500, "app v2")] > 0, seen
        texts = await texts_of(running, v2.deployment_id)
        assert "on-failure-ran status=rolled-back" in texts, "\n".join(texts)
        # The old release, never stopped, serves everything; the new one's instances are gone.
        await serves_only(running, app, 1)
    finally:
        await stop_running(running)


ORDERED = """
[rollout]
steps = [50]
hold = "10m"
watch = "10m"
"""


async def test_an_operator_promotes_a_canary_then_aborts_its_watch_window(tmp_path: Path) -> None:
    running = await start_running(tmp_path, "process")
    try:
        app = running.app_name("ordered")
        v1 = await running.client.deploy(app, make_app(tmp_path / "v1", "process", "v1",
                                                       toml=ORDERED), Followers(), wait=WAIT)
        assert isinstance(v1, DeploySucceeded), v1
        idle = await cli(running, "rollout", "status", app)
        assert (idle.returncode, idle.stdout.strip()) == (0, f"{app} has no rollout in progress")

        cmd = await running.client.request_deploy(
            app, make_app(tmp_path / "v2", "process", "v2", toml=ORDERED))

        async def stage(name: str) -> dict[str, Any] | None:
            shown = await cli(running, "rollout", "status", app, "--json")
            progress = json.loads(shown.stdout)
            return progress if progress.get("stage") == name else None

        canary = await until(lambda: stage("canary"), "the canary's first step", within=WAIT)
        assert (canary["deployment_id"], canary["step"], canary["percent"]) == (
            cmd.deployment_id, 1, 50)
        promoted = await cli(running, "rollout", "promote", app)
        assert promoted.returncode == 0 and "promote ordered" in promoted.stdout, promoted
        await until(lambda: stage("watch"), "the watch window", within=WAIT)
        assert get(running.port, app).text == "app v2\n"
        shown = await cli(running, "rollout", "status", app)
        assert "watching v2 (v1 warm to switch back to)" in shown.stdout, shown.stdout
        aborted = await cli(running, "rollout", "abort", app)
        assert aborted.returncode == 0, aborted

        end = await running.client.follow(app, cmd.deployment_id, Followers(), wait=WAIT)
        assert isinstance(end, DeployFailed) and end.data.status == "rolled-back", end
        assert "watch window: an operator's order" in end.data.reason, end.data.reason
        await serves_only(running, app, 1)
        events = await events_of(running, app, cmd.deployment_id)
        judged = [e for e in events if isinstance(e, RolloutStep) and e.data.verdict != "started"]
        assert [e.data.reason.split(";")[0] for e in judged] == ["promoted by an operator's order"]
        none = await cli(running, "rollout", "abort", app)
        assert none.returncode == 2 and "has no rollout in progress" in none.stderr, none

        # A deploy's own flags go over dockyard.toml's [rollout]: none at all, or refused.
        v3 = make_app(tmp_path / "v3", "process", "v3", toml=ORDERED)
        bad = await cli(running, "deploy", app, str(v3), "--canary", "5,7")
        assert bad.returncode == 2, bad
        assert bad.stderr.strip().endswith("7 is not a share the router can give: a multiple "
                                           "of 5 between 5 and 95 (100 % is the promotion after "
                                           "the last step)"), bad.stderr
        at_once = await cli(running, "deploy", app, str(v3), "--no-rollout")
        assert at_once.returncode == 0, at_once
        events = await events_of(running, app, deployment_of(at_once.stdout))
        assert not [t for t in types(events) if ".rollout." in t], types(events)
        assert get(running.port, app).text == "app v3\n"
    finally:
        await stop_running(running)

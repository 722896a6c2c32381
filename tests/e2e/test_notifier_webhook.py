"""The notifier's webhook receives a deploy's events, signed (a real local receiver)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dockyard.client import Followers
from dockyard.contract.events import DeploySucceeded
from dockyard.notifier.signing import verify
from tests.e2e.apps import make_app
from tests.e2e.conftest import start_running, stop_running

SECRET = "whsec_" + "c2VjcmV0LWZvci10ZXN0cw=="


class Receiver:
    """An HTTP server on loopback that keeps every signed body it gets."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []  # type: ignore[type-arg]
        self.bad: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    verify(SECRET, dict(self.headers.items()), body)
                    outer.bodies.append(json.loads(body))
                except Exception as exc:
                    outer.bad.append(str(exc))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.mark.parametrize("runtime", ["process", "docker"])
async def test_the_webhook_receives_the_deploys_events(runtime: str, receiver: Receiver,
                                                       tmp_path: Path) -> None:
    running = await start_running(tmp_path, runtime, webhook_url=receiver.url,
                                  webhook_secret=SECRET)
    try:
        app = running.app_name("hooked")
        end = await running.client.deploy(app, make_app(tmp_path / "v1", runtime, "v1"),
                                          Followers(), wait=120)
        assert isinstance(end, DeploySucceeded)
        import asyncio

        for _ in range(100):
            types = {b["type"] for b in receiver.bodies if b["deploymentid"] == end.deployment_id}
            if "dockyard.deploy.succeeded" in types:
                break
            await asyncio.sleep(0.1)
        assert {"dockyard.deploy.queued", "dockyard.traffic.switched",
                "dockyard.deploy.succeeded"} <= types
        assert receiver.bad == []
    finally:
        await stop_running(running)


async def test_dockyard_notify_adds_a_sink_that_gets_the_apps_events(
        receiver: Receiver, tmp_path: Path) -> None:
    import asyncio
    import os
    import subprocess
    import sys

    running = await start_running(tmp_path, "process")
    dockyard = str(Path(sys.executable).parent / "dockyard")
    env = {**os.environ, "DOCKYARD_DATA_DIR": str(running.settings.data_dir), "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([dockyard, *args], env=env, capture_output=True, text=True,
                              timeout=60)

    try:
        app = running.app_name("notified")
        added = await asyncio.to_thread(cli, "notify", "add", app, "ops", receiver.url,
                                        "--secret", SECRET, "--event", "deploy.*", "--create")
        assert added.returncode == 0, added.stderr
        listed = await asyncio.to_thread(cli, "notify", "ls", app)
        assert "ops" in listed.stdout and "yes" in listed.stdout
        assert SECRET not in listed.stdout and "/hook" not in listed.stdout
        bad = await asyncio.to_thread(cli, "notify", "add", app, "bad", "ftp://x",
                                      "--kind", "pager")
        assert bad.returncode == 2 and "kind" in bad.stderr + bad.stdout

        end = await running.client.deploy(app, make_app(tmp_path / "v1", "process", "v1"),
                                          Followers(), wait=120)
        types: set[str] = set()
        for _ in range(100):
            types = {b["type"] for b in receiver.bodies if b["deploymentid"] == end.deployment_id}
            if "dockyard.deploy.succeeded" in types:
                break
            await asyncio.sleep(0.1)
        # Only what the sink asked for: deploy.* events, not traffic.switched.
        assert types == {"dockyard.deploy.queued", "dockyard.deploy.succeeded"}
        assert receiver.bad == []

        removed = await asyncio.to_thread(cli, "notify", "rm", app, "ops")
        assert removed.returncode == 0
        again = await asyncio.to_thread(cli, "notify", "rm", app, "ops")
        assert again.returncode == 2
    finally:
        await stop_running(running)


class Capture:
    """An HTTP server on loopback that keeps every request and answers with one status."""

    def __init__(self, status: int = 204) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers.items()), body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_notify_checks_secrets_and_shows_a_failing_sink(tmp_path: Path) -> None:
    """The reported attacks: `--secret whsec_dGVzdA` was stored and then failed every event;
    a plain secret could not be used with the official standardwebhooks library; `notify ls`
    showed nothing wrong with a sink that kept failing."""
    import asyncio
    import re

    from standardwebhooks.webhooks import Webhook

    from dockyard.contract.events import NotificationFailed
    from tests.e2e.cli_support import cells, cli

    ok, down = Capture(204), Capture(500)
    running = await start_running(tmp_path, "process")
    try:
        app = running.app_name("secrets")
        bad = await cli(running, "notify", "add", app, "ops", ok.url, "--secret", "whsec_dGVzdA")
        assert bad.returncode == 2, bad.stdout + bad.stderr
        assert "secret: what follows whsec_ is not valid base64" in bad.stderr, bad.stderr
        listed = await cli(running, "notify", "ls", app)  # the refused sink made no app
        assert listed.returncode == 2 and f"no app named {app!r}" in listed.stderr, listed

        plain = await cli(running, "notify", "add", app, "ops", ok.url, "--secret", "plain s3cret",
                          "--event", "deploy.succeeded", "--create")
        assert plain.returncode == 0, plain.stdout + plain.stderr
        [shown] = re.findall(r"signing secret \(shown once; give it to the receiver\): (\S+)",
                             plain.stdout)
        assert shown.startswith("whsec_") and "plain s3cret" not in plain.stdout
        failing = await cli(running, "notify", "add", app, "down", down.url, "--attempts", "2",
                            "--event", "deploy.succeeded")
        assert failing.returncode == 0, failing.stdout + failing.stderr

        end = await running.client.deploy(app, make_app(tmp_path / "v1", "process", "v1"),
                                          Followers(), wait=120)
        assert isinstance(end, DeploySucceeded)
        deadline = asyncio.get_running_loop().time() + 30
        while not [e for e in await running.client.events(app)
                   if isinstance(e, NotificationFailed) and e.data.sink == "down"]:
            assert asyncio.get_running_loop().time() < deadline, "no notification.failed"
            await asyncio.sleep(0.2)
        # The official library, given the secret as `notify add` showed it, verifies it.
        [(headers, body)] = ok.requests
        assert Webhook(shown).verify(body, headers)["id"] == end.id
        assert len(down.requests) == 2

        listed = await cli(running, "notify", "ls", app)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        rows = {row[0]: row for row in map(cells, listed.stdout.splitlines())
                if row[0] in ("ops", "down")}
        assert rows["down"][5:] == ["2 (1 events given up)", rows["down"][6]], listed.stdout
        assert rows["down"][6].startswith("HTTP 500 at "), listed.stdout
        assert rows["ops"][4:] == ["yes", "0", ""], listed.stdout
        assert shown not in listed.stdout
    finally:
        await stop_running(running)
        ok.close()
        down.close()

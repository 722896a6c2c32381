"""Helpers for the phase tests: deploy and collect, the api, the lock, leftovers, log order."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dockyard.api.app import read_api_url
from dockyard.client import Followers
from dockyard.contract.events import AnyEvent, DeployFailed, DeploySucceeded, LogLine, Terminal
from dockyard.state.locks import open_locks
from tests.e2e.apps import get, make_app
from tests.e2e.conftest import Running

DEPLOY_TIMEOUT = 240.0


@dataclass
class Seen:
    """What a followed deployment showed while it ran."""

    events: list[AnyEvent] = field(default_factory=list)
    on_event: Any = None  # an extra async callback, e.g. to cancel at the right moment

    def followers(self) -> Followers:
        async def on_event(event: AnyEvent) -> None:
            self.events.append(event)
            if self.on_event is not None:
                await self.on_event(event)

        return Followers(on_event=on_event)


async def deploy(running: Running, app: str, src: Path,
                 seen: Seen | None = None) -> tuple[Terminal, Seen]:
    """Deploy a source tree and follow it to its end."""
    seen = seen or Seen()
    end = await running.client.deploy(app, src, seen.followers(), wait=DEPLOY_TIMEOUT)
    return end, seen


async def log_of(running: Running, deployment_id: str) -> list[LogLine]:
    """The kept deploy log of a deployment, as `dockyard logs` reads it."""
    lines: list[LogLine] = []

    async def on_line(line: LogLine) -> None:
        lines.append(line)

    await running.client.log_lines(deployment_id, on_line, follow=False)
    return lines


async def texts_of(running: Running, deployment_id: str) -> list[str]:
    """The texts of a deployment's log lines."""
    return [line.text for line in await log_of(running, deployment_id)]


async def events_of(running: Running, app: str, deployment_id: str | None = None,
                    until: str | None = None, within: float = 30.0) -> list[AnyEvent]:
    """An app's events on the bus (of one deployment), optionally waiting for a type to show."""
    deadline = time.monotonic() + within
    while True:
        found = [e for e in await running.client.events(app, idle=0.3)
                 if deployment_id is None or e.deployment_id == deployment_id]
        if until is None or any(e.type == until for e in found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.3)


def types(events: list[AnyEvent]) -> list[str]:
    return [e.type for e in events]


def api_base(running: Running) -> str:
    url = read_api_url(running.settings.data_dir)
    assert url, "the api service records its URL in the data dir"
    return url


async def api_get(running: Running, path: str) -> Any:
    # Async: the api service runs in this very event loop (the stack is in-process).
    token = running.settings.api_token_file.read_text().strip()
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {token}"}) as http:
        response = await http.get(api_base(running) + path)
    response.raise_for_status()
    return response.json()


async def api_deployment(running: Running, deployment_id: str, status: str,
                         within: float = 20.0) -> dict[str, Any]:
    """The api's record of a deployment, once the projection shows the given status."""
    deadline = time.monotonic() + within
    while True:
        try:
            row: dict[str, Any] = await api_get(running, f"/deployments/{deployment_id}")
        except httpx.HTTPStatusError:
            row = {}
        if row.get("status") == status or time.monotonic() > deadline:
            return row
        await asyncio.sleep(0.3)


async def lock_holder(running: Running, app: str) -> str | None:
    """Who holds the app's lock in the KV bucket (None when free)."""
    return await (await open_locks(await running.js_as("builder"), "test")).holder(app)


async def assert_lock_free(running: Running, app: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while (holder := await lock_holder(running, app)) is not None:
        assert time.monotonic() < deadline, f"lock of {app} still held by {holder}"
        await asyncio.sleep(0.2)


async def releases_running(running: Running, app: str) -> set[int]:
    return {i.release for i in await running.instances(app)}


def processes_matching(marker: str) -> list[str]:
    """Host processes whose command line contains marker."""
    out = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True, timeout=10,
                         check=False)  # exit 1: none found
    return [line for line in out.stdout.splitlines() if line.strip()]


def containers_of(deployment_id: str) -> list[str]:
    """Every container (running or not) labelled with a deployment."""
    out = subprocess.run(["docker", "ps", "-aq", "--filter",
                          f"label=dockyard.deployment={deployment_id}"],
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.split()


async def assert_nothing_left(running: Running, deployment_id: str, marker: str,
                              within: float = 10.0) -> None:
    """The deployment's commands left no process (process runtime) or container (docker)."""
    deadline = time.monotonic() + within
    while True:
        left = await asyncio.to_thread(
            processes_matching if running.runtime == "process" else containers_of,
            marker if running.runtime == "process" else deployment_id)
        if not left:
            return
        assert time.monotonic() < deadline, f"left behind: {left}"
        await asyncio.sleep(0.3)


def assert_in_order(texts: list[str], patterns: list[str]) -> None:
    """Each regex fully matches some line after the line the previous one matched."""
    at = 0
    for pattern in patterns:
        regex = re.compile(pattern)
        for i in range(at, len(texts)):
            if regex.fullmatch(texts[i]):
                at = i + 1
                break
        else:
            raise AssertionError(f"{pattern!r} not found after line {at}:\n" + "\n".join(texts))


def serves(running: Running, app: str, version: str) -> None:
    response = get(running.port, app)
    assert (response.status_code, response.text) == (200, f"app {version}\n")


_stable: dict[int, tuple[str, int]] = {}


async def stable_app(running: Running, root: Path) -> tuple[str, int]:
    """An app with a live release v1 (one per stack), for tests whose deploys all fail."""
    key = id(running)
    if key not in _stable:
        app = running.app_name("stable")
        end, _ = await deploy(running, app, make_app(root / "stable-v1", running.runtime, "v1"))
        assert isinstance(end, DeploySucceeded), end
        _stable[key] = (app, end.release)
    app, release = _stable[key]
    serves(running, app, "v1")
    assert await releases_running(running, app) == {release}
    return app, release


async def assert_failed_cleanly(running: Running, app: str, end: Terminal, status: str,
                                old_release: int) -> DeployFailed:
    """Failed with status; old release serves and alone runs; api agrees; lock free."""
    assert isinstance(end, DeployFailed), end
    assert end.data.status == status, (end.data.status, end.data.reason)
    serves(running, app, "v1")
    assert await releases_running(running, app) == {old_release}
    row = await api_deployment(running, end.deployment_id, status)
    assert row["status"] == status, row
    running_in_api = (await api_get(running, f"/apps/{app}"))["instances"]
    assert {i["release"] for i in running_in_api} == {old_release}, running_in_api
    await assert_lock_free(running, app)
    return end


def jsonl(objs: list[Any]) -> str:
    return "\n".join(json.dumps(o) for o in objs)

"""Before its first release is switched in, an app's host answers 503 with Retry-After;
unknown hosts 404."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from dockyard.client import Followers
from dockyard.contract.events import AnyEvent, DeployFailed, DeploySucceeded
from tests.e2e.apps import aget, get, make_app
from tests.e2e.conftest import Running

Seen = list[tuple[float, int, str | None]]


async def _deploy_while_polling(running: Running, app: str, src: Path
                                ) -> tuple[DeploySucceeded | DeployFailed, Seen, dict[str, float]]:
    """Deploy, polling the app's host all along; returns the end, (request start, status,
    Retry-After) of each poll, and when each event type was first seen."""
    seen: Seen = []
    marks: dict[str, float] = {}
    stop = asyncio.Event()

    async def poll() -> None:
        async with httpx.AsyncClient(timeout=5) as http:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    r = await aget(http, running.port, app)
                except httpx.TransportError:
                    await asyncio.sleep(0.05)  # Caddy reloading: a browser retries
                    continue
                seen.append((started, r.status_code, r.headers.get("retry-after")))
                await asyncio.sleep(0.05)

    async def on_event(event: AnyEvent) -> None:
        marks.setdefault(event.type, time.monotonic())

    poller = asyncio.create_task(poll())
    try:
        end = await running.client.deploy(app, src, Followers(on_event=on_event), wait=240)
        await asyncio.sleep(1.5)  # and a little past the end
    finally:
        stop.set()
        await poller
    return end, seen, marks


async def test_first_deploy_answers_503_then_200(running: Running, tmp_path: Path) -> None:
    app = running.app_name("first")
    assert get(running.port, app).status_code == 404, "nothing owns the host yet"
    src = make_app(tmp_path / "v1", running.runtime, "v1", postdeploy="sleep 3")
    end, seen, marks = await _deploy_while_polling(running, app, src)
    assert isinstance(end, DeploySucceeded), end

    during = [s for s in seen
              if marks["dockyard.hook.started"] <= s[0] < marks["dockyard.hook.succeeded"]]
    assert len(during) > 10, "the poller ran through the 3 s postdeploy"
    assert {(code, retry is not None) for _, code, retry in during} == {(503, True)}, during
    assert all(int(retry or 0) > 0 for _, _, retry in during)
    after = [code for when, code, _ in seen if when > marks["dockyard.traffic.switched"]]
    assert after and set(after) == {200}, seen
    response = get(running.port, app)
    assert response.status_code == 200 and response.text == "app v1\n"
    assert get(running.port, f"{app}-nobody").status_code == 404


async def test_failed_first_deploy_leaves_the_host_unowned(running: Running,
                                                            tmp_path: Path) -> None:
    app = running.app_name("firstfail")
    src = make_app(tmp_path / "v1", running.runtime, "v1", postdeploy="sleep 2; exit 1")
    end, seen, _ = await _deploy_while_polling(running, app, src)
    assert isinstance(end, DeployFailed) and end.data.status == "hook-error", end
    assert any(code == 503 for _, code, _ in seen), seen
    assert not any(code == 200 for _, code, _ in seen), seen

    # Once the failure is known, the host is nobody's again (bounded wait for the router).
    deadline = time.monotonic() + 10
    code = get(running.port, app).status_code
    while code != 404 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        code = get(running.port, app).status_code
    assert code == 404
    assert await running.instances(app) == []

"""The HTTP API on a real stack: deploy from an upload, live SSE log, config, hooks, cancel."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.e2e.api_support import (
    Message,
    base_url,
    client,
    deployment,
    ended,
    sse,
    stack,
    until,
)
from tests.e2e.apps import get, make_app, targz
from tests.e2e.conftest import Running

__all__ = ["stack"]  # the module's stack fixture
GZIP = {"Content-Type": "application/gzip"}


async def upload(http: httpx.AsyncClient, app: str, root: Path) -> str:
    r = await http.post(f"/apps/{app}/deployments", content=targz(root), headers=GZIP)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["links"]["logs"] == f"/deployments/{body['deployment_id']}/logs"
    return str(body["deployment_id"])


async def test_a_deploy_uploaded_over_http_streams_its_log_live_and_goes_live(
        stack: Running, tmp_path: Path) -> None:
    app = stack.app_name("http")
    root = make_app(tmp_path / "src", "process", "v1", release="echo release-says-hi",
                    postdeploy="echo live-one; sleep 3; echo live-two")
    async with client(stack) as http:
        dep = await upload(http, app, root)
        await deployment(http, dep)  # projected: the log can be asked for
        got: list[Message] = [m async for m in sse(http, f"/deployments/{dep}/logs")]
        texts = [m.json()["text"] for m in got if m.event == "line"]
        assert "release-says-hi" in texts and "live-one" in texts and "live-two" in texts
        assert got[-1].event == "end" and got[-1].json() == {"status": "succeeded"}
        # Live: live-one arrived while the deploy still ran, seconds before live-two.
        at = {m.json()["text"]: m.at for m in got if m.event == "line"}
        assert at["live-two"] - at["live-one"] >= 2.0, at
        ids = [int(m.id or 0) for m in got if m.event == "line"]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        # Resuming after a line id gives exactly the lines after it.
        middle = ids[len(ids) // 2]
        rest = [m async for m in sse(http, f"/deployments/{dep}/logs",
                                     {"Last-Event-ID": str(middle)})]
        assert [int(m.id or 0) for m in rest if m.event == "line"] == [i for i in ids
                                                                      if i > middle]
        done = await deployment(http, dep, lambda d: all(
            s["state"] in ("succeeded", "skipped") for s in d["timeline"]), "every phase over")
        states = {s["phase"]: s["state"] for s in done["timeline"]}
        assert states == {"build": "succeeded", "predeploy": "skipped", "release": "succeeded",
                          "start": "succeeded", "postdeploy": "succeeded",
                          "switch": "succeeded", "after_switch": "succeeded",
                          "retire": "succeeded", "on_failure": "skipped"}, states
        assert (await asyncio.to_thread(get, stack.port, app)).text == "app v1\n"
        shown = (await http.get(f"/apps/{app}")).json()
        assert shown["live_deployment_id"] == dep and shown["health"] == "healthy"
        apps = {a["name"]: a for a in (await http.get("/apps")).json()}
        assert apps[app]["health"] == "healthy" and apps[app]["live_release"] == 1
        events = [m async for m in sse(http, f"/apps/{app}/events/stream?follow=false")]
        assert events[0].json()["type"] == "dockyard.deploy.queued"
        assert "dockyard.deploy.succeeded" in [m.json()["type"] for m in events]


async def test_a_failing_deploy_shows_its_exit_code_and_tail(stack: Running,
                                                             tmp_path: Path) -> None:
    app = stack.app_name("httpfail")
    root = make_app(tmp_path / "src", "process", "v1", release="echo doomed-output; exit 7")
    async with client(stack) as http:
        dep = await upload(http, app, root)
        found = await ended(http, dep)
        assert found["status"] == "release-error" and found["exit_code"] == 7
        assert "doomed-output" in found["tail"]
        release = next(s for s in found["timeline"] if s["phase"] == "release")
        assert release["state"] == "failed" and release["exit_code"] == 7


async def test_config_over_http_releases_again_and_never_shows_a_value(
        stack: Running, tmp_path: Path) -> None:
    app = stack.app_name("httpcfg")
    root = make_app(tmp_path / "src", "process", "v1")
    async with client(stack) as http:
        await ended(http, await upload(http, app, root))
        r = await http.patch(f"/apps/{app}/config", json={"set": {"GREETING": "hush-hush-42"}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["names"] == ["GREETING"] and body["deployment_id"]
        release = await ended(http, body["deployment_id"])
        assert release["status"] == "succeeded" and release["kind"] == "config"
        for path in (f"/apps/{app}/config", f"/deployments/{body['deployment_id']}",
                     f"/events?app={app}", f"/apps/{app}"):
            text = (await http.get(path)).text
            assert "hush-hush-42" not in text, path
        assert (await http.get(f"/apps/{app}/config")).json()["names"] == ["GREETING"]
        # The value did reach the bus: the CLI (which may read values) sees it.
        assert (await stack.client.config_show(app)).values == {"GREETING": "hush-hush-42"}


async def test_hooks_and_sinks_over_http_change_the_real_state(stack: Running) -> None:
    app = stack.app_name("httphooks")
    async with client(stack) as http:
        r = await http.post(f"/apps/{app}/hooks", json={"phase": "postdeploy", "label": "Warm",
                                                        "command": "./bin/warm"})
        assert r.status_code == 201, r.text
        plan, _ = await stack.client.plan(app)
        assert [c.label for c in plan.postdeploy] == ["Warm"]
        r = await http.post(f"/apps/{app}/sinks", json={"name": "ops", "secret": "plain",
                                                        "url": "http://127.0.0.1:9/hook"})
        assert r.status_code == 201 and r.json()["secret"].startswith("whsec_")
        assert [s.name for s in await stack.client.sinks(app)] == ["ops"]
        assert (await http.delete(f"/apps/{app}/sinks/ops")).status_code == 200
        assert (await http.delete(f"/apps/{app}/hooks/postdeploy/Warm")).status_code == 200
        assert await stack.client.sinks(app) == []


async def test_cancel_over_http_ends_a_running_deploy(stack: Running, tmp_path: Path) -> None:
    app = stack.app_name("httpcancel")
    root = make_app(tmp_path / "src", "process", "v1", release="echo waiting; sleep 60")
    async with client(stack) as http:
        dep = await upload(http, app, root)
        await deployment(http, dep, lambda d: d["status"] == "releasing", "the release runs")
        r = await http.post(f"/deployments/{dep}/cancel")
        assert r.status_code == 202, r.text
        found = await until(lambda: _cancelled(http, dep), "the deploy ends cancelled", 60)
        assert found["status"] == "cancelled"
        again = await http.post(f"/deployments/{dep}/cancel")
        assert again.status_code == 409 and "already ended" in again.json()["error"]


async def _cancelled(http: httpx.AsyncClient, dep: str) -> dict[str, object] | None:
    body: dict[str, object] = (await http.get(f"/deployments/{dep}")).json()
    return body if body.get("finished_at") else None


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
async def test_the_real_api_refuses_a_request_without_its_token(stack: Running,
                                                                 headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=base_url(stack), headers=headers) as anonymous:
        r = await anonymous.post("/apps/shop/deployments", content=b"x", headers=GZIP)
        assert r.status_code == 401 and "Bearer" in r.json()["error"]
        assert (await anonymous.get("/healthz")).status_code == 200

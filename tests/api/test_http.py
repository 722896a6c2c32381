"""The HTTP routes over a SQLite store filled through the projection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from dockyard.api.http import make_app
from dockyard.schemas.events import (
    BuildStarted,
    BuildSucceeded,
    CommandFinished,
    CommandStarted,
    DeployQueued,
    DeploySpec,
    DeploySucceeded,
    Event,
    InstanceRef,
    TrafficSwitched,
)
from dockyard.schemas.plan import Plan
from dockyard.store import Store, migrate, open_store, project

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
SPEC = DeploySpec(runtime="process", build_id="b1", artifact="/a/1", plan=Plan())


def events() -> list[Event]:
    inst = [InstanceRef(id="i1", process="web", release=1, port=6001)]
    env = {"source": "test", "subject": "blog", "deployment_id": "d1"}
    t = [T0 + timedelta(seconds=n) for n in range(8)]
    return [
        DeployQueued(id="e1", time=t[0], **env),
        BuildStarted(id="e2", time=t[1], **env),
        BuildSucceeded(id="e3", time=t[2], release=1, spec=SPEC, **env),
        CommandStarted(id="e4", time=t[3], release=1, hook_phase="postdeploy", label="Warm",
                       index=1, total=1, command="warm", **env),
        CommandFinished(id="e5", time=t[4], release=1, hook_phase="postdeploy", label="Warm",
                        index=1, total=1, command="warm", exit_code=0, duration=1.0, **env),
        TrafficSwitched(id="e6", time=t[5], release=1, spec=SPEC, instances=inst, **env),
        DeploySucceeded(id="e7", time=t[6], release=1, **env),
        DeployQueued(id="f1", time=t[7], source="test", subject="other", deployment_id="d2"),
    ]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = open_store(f"sqlite:///{tmp_path / 'dockyard.db'}")
    migrate(s.engine)
    for ev in events():
        project(s, ev)
    return s


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        yield c
    store.close()


async def test_healthz(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "events": 8}


async def test_apps_and_one_app(client: httpx.AsyncClient) -> None:
    apps = (await client.get("/apps")).json()
    assert [(a["name"], a["status"], a["live_release"]) for a in apps] == [
        ("blog", "succeeded", 1), ("other", "queued", None)]
    blog = (await client.get("/apps/blog")).json()
    assert blog["live_deployment_id"] == "d1"
    assert blog["deployment"]["status"] == "succeeded"
    assert blog["route"]["upstreams"] == ["127.0.0.1:6001"]
    assert blog["instances"][0]["id"] == "i1"


async def test_deployments_releases_and_hook_runs(client: httpx.AsyncClient) -> None:
    deps = (await client.get("/apps/blog/deployments")).json()
    assert [d["id"] for d in deps] == ["d1"]
    rels = (await client.get("/apps/blog/releases")).json()
    assert [(r["number"], r["live"], r["artifact"]) for r in rels] == [(1, True, "/a/1")]
    dep = (await client.get("/deployments/d1")).json()
    assert dep["status"] == "succeeded"
    assert [(h["phase"], h["label"], h["exit_code"]) for h in dep["hook_runs"]] == [
        ("postdeploy", "Warm", 0)]
    evs = (await client.get("/deployments/d1/events")).json()
    assert [e["id"] for e in evs] == ["e1", "e2", "e3", "e4", "e5", "e6", "e7"]
    assert evs[0]["type"] == "dockyard.deploy.queued" and evs[0]["subject"] == "blog"


async def test_events_filter_and_paging(client: httpx.AsyncClient) -> None:
    assert [e["id"] for e in (await client.get("/events")).json()] == [
        "e1", "e2", "e3", "e4", "e5", "e6", "e7", "f1"]
    assert [e["id"] for e in (await client.get("/events?app=other")).json()] == ["f1"]
    page = (await client.get("/events?app=blog&after=e5&limit=1")).json()
    assert [e["id"] for e in page] == ["e6"]
    assert (await client.get("/events?after=f1")).json() == []


@pytest.mark.parametrize("path", ["/apps/nope", "/apps/nope/deployments", "/apps/nope/releases",
                                  "/deployments/nope", "/deployments/nope/events"])
async def test_unknown_is_404_json(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 404
    assert "nope" in r.json()["error"]


@pytest.mark.parametrize("path", ["/events?after=missing", "/events?limit=x", "/events?limit=0",
                                  "/apps/blog/deployments?limit=5000"])
async def test_bad_query_is_400_json(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 400
    assert r.json()["error"].startswith("bad ")

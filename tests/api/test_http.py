"""The HTTP routes over a SQLite store filled through the projection, and in-memory doors."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from dockyard.api.auth import COOKIE, new_session
from dockyard.api.http import make_app
from dockyard.archive import Limits
from dockyard.contract import codec, subjects
from dockyard.contract.events import (
    BuildStarted,
    BuildSucceeded,
    CancelRequested,
    CommandFinished,
    CommandStarted,
    DeployQueued,
    DeployRequested,
    DeploySpec,
    DeploySucceeded,
    DestroyRequested,
    Event,
    InstanceRef,
    LogLine,
    ReleaseFigures,
    TrafficSwitched,
)
from dockyard.contract.plan import Plan, ProcessType, RolloutOverride
from dockyard.contract.state import LiveRelease, RolloutProgress
from dockyard.store import Store, project
from tests.api.support import TOKEN, Parts, parts, sqlite_store
from tests.events import make

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
D1, D2, NOPE = "d1" + "0" * 30, "d2" + "0" * 30, "dead" + "0" * 28
SPEC = DeploySpec(runtime="process", build_id="b1", artifact="/a/1", plan=Plan())
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def events() -> list[Event[Any]]:
    inst = [InstanceRef(id="i1", process="web", release=1, port=6001)]
    env: dict[str, Any] = {"source": "test", "app": "blog", "deployment_id": D1}
    t = [T0 + timedelta(seconds=n) for n in range(8)]
    return [
        make(DeployQueued, id="e1", time=t[0], **env),
        make(BuildStarted, id="e2", time=t[1], **env),
        make(BuildSucceeded, id="e3", time=t[2], release=1, spec=SPEC, **env),
        make(CommandStarted, id="e4", time=t[3], release=1, hook_phase="postdeploy", label="Warm",
             index=1, total=1, command="warm", **env),
        make(CommandFinished, id="e5", time=t[4], release=1, hook_phase="postdeploy", label="Warm",
             index=1, total=1, command="warm", exit_code=0, duration=1.0, **env),
        make(TrafficSwitched, id="e6", time=t[5], release=1, spec=SPEC, instances=inst, **env),
        make(DeploySucceeded, id="e7", time=t[6], release=1, **env),
        make(DeployQueued, id="f1", time=t[7], source="test", app="other", deployment_id=D2),
    ]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = sqlite_store(tmp_path)
    for ev in events():
        project(s, ev)
    return s


@pytest.fixture
def api(store: Store) -> Parts:
    return parts(store)


def http(api: Parts, headers: dict[str, str] | None = None,
         base: str = "http://api") -> httpx.AsyncClient:
    app: Any = make_app(api.backend)  # an ASGI app; httpx types its callable more narrowly
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                             base_url=base, headers=headers)


@pytest.fixture
async def client(api: Parts) -> AsyncIterator[httpx.AsyncClient]:
    async with http(api, BEARER) as c:
        yield c
    api.store.close()


def targz(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def sse(text: str) -> list[dict[str, str]]:
    """The events of a text/event-stream body, each as its fields."""
    found = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                key, _, value = line.partition(":")
                fields[key] = fields.get(key, "") + value.removeprefix(" ")
        if fields:
            found.append(fields)
    return found


# ---------------------------------------------------------------- auth

PROTECTED = [("GET", "/apps"), ("GET", "/apps/blog"), ("GET", "/apps/blog/deployments"),
             ("GET", f"/deployments/{D1}"), ("GET", "/events"), ("GET", "/openapi.json"),
             ("GET", f"/deployments/{D1}/logs"), ("GET", "/apps/blog/events/stream"),
             ("POST", "/apps/blog/deployments"), ("POST", f"/deployments/{D1}/cancel"),
             ("PATCH", "/apps/blog/config"), ("GET", "/apps/blog/config"),
             ("POST", "/apps/blog/hooks"), ("POST", "/apps/blog/sinks"),
             ("POST", "/apps/blog/rollback"), ("DELETE", "/apps/blog")]


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic dG9rZW4=", "Bearer "])
async def test_every_route_but_healthz_needs_the_token(api: Parts, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    async with http(api, headers) as anonymous:
        for method, path in PROTECTED:
            r = await anonymous.request(method, path, json={})
            assert r.status_code == 401, (method, path)
            assert "Authorization: Bearer <token>" in r.json()["error"]
            assert r.headers["www-authenticate"] == "Bearer"
        assert (await anonymous.get("/healthz")).status_code == 200
        shell = await anonymous.get("/")
        assert shell.status_code == 200 and "text/html" in shell.headers["content-type"]
        assert (await anonymous.get("/static/app.js")).status_code == 200
    assert api.commands.sent == []


async def test_the_dashboard_logs_in_once_and_its_cookie_is_httponly_and_strict(
        api: Parts) -> None:
    async with http(api) as browser:
        refused = await browser.post("/session", json={"token": "wrong"})
        assert refused.status_code == 401 and "api.token" in refused.json()["error"]
        assert COOKIE not in browser.cookies
        r = await browser.post("/session", json={"token": TOKEN})
        assert r.status_code == 204
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert TOKEN.lower() not in cookie  # the cookie is not the token
        assert (await browser.get("/apps")).status_code == 200
        same_site = {"Sec-Fetch-Site": "same-origin", "Origin": "http://api"}
        ok = await browser.patch("/apps/blog/config", json={"set": {"A": "1"}}, headers=same_site)
        assert ok.status_code == 200
        out = await browser.delete("/session", headers=same_site)
        assert out.status_code == 204
        assert (await browser.get("/apps")).status_code == 401


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site", "Origin": "http://other.api"},
])
async def test_a_cross_site_state_change_with_the_session_is_refused(
        api: Parts, headers: dict[str, str]) -> None:
    """CSRF: a page elsewhere cannot use the dashboard's cookie to change anything."""
    cookie = {COOKIE: new_session(TOKEN)}
    async with http(api) as browser:
        browser.cookies.update(cookie)
        assert (await browser.get("/apps", headers=headers)).status_code == 200  # reading is fine
        for method, path, body in [("PATCH", "/apps/blog/config", {"set": {"A": "1"}}),
                                   ("POST", f"/deployments/{D1}/cancel", None),
                                   ("POST", "/apps/blog/sinks", {"name": "x",
                                                                 "url": "http://x.example"})]:
            r = await browser.request(method, path, json=body, headers=headers)
            assert r.status_code == 403, (method, path)
            assert r.json()["error"].startswith("cross-site request refused")
        login = await browser.post("/session", json={"token": TOKEN}, headers=headers)
        assert login.status_code == 403
    assert api.commands.sent == [] and api.config.versions == {} and api.sinks.sinks == {}


@pytest.mark.parametrize("value", [
    new_session(TOKEN, now=0),  # expired long ago
    new_session("another-token"),  # made with another token
    "9999999999.deadbeef", "garbage", "",
])
async def test_an_expired_or_forged_session_is_401(api: Parts, value: str) -> None:
    async with http(api) as browser:
        browser.cookies.set(COOKIE, value)
        r = await browser.get("/apps")
        assert r.status_code == 401 and "log in" in r.json()["error"]


# ---------------------------------------------------------------- records


async def test_healthz(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "events": 8}


async def test_apps_with_live_release_and_health(client: httpx.AsyncClient) -> None:
    apps = (await client.get("/apps")).json()
    assert [(a["name"], a["status"], a["live_release"], a["health"], a["running"])
            for a in apps] == [("blog", "succeeded", 1, "healthy", 1),
                               ("other", "queued", None, "none", 0)]
    blog = (await client.get("/apps/blog")).json()
    assert blog["live_deployment_id"] == D1 and blog["health"] == "healthy"
    assert blog["deployment"]["status"] == "succeeded"
    assert blog["route"]["upstreams"] == ["127.0.0.1:6001"]
    assert blog["instances"][0]["id"] == "i1"


async def test_deployments_releases_hook_runs_and_timeline(client: httpx.AsyncClient) -> None:
    deps = (await client.get("/apps/blog/deployments")).json()
    assert [d["id"] for d in deps] == [D1]
    rels = (await client.get("/apps/blog/releases")).json()
    assert [(r["number"], r["live"], r["artifact"]) for r in rels] == [(1, True, "/a/1")]
    dep = (await client.get(f"/deployments/{D1}")).json()
    assert dep["status"] == "succeeded"
    assert [(h["phase"], h["label"], h["exit_code"]) for h in dep["hook_runs"]] == [
        ("postdeploy", "Warm", 0)]
    assert [e["id"] for e in dep["events"]] == ["e1", "e2", "e3", "e4", "e5", "e6", "e7"]
    states = {s["phase"]: s["state"] for s in dep["timeline"]}
    assert states["build"] == "succeeded" and states["switch"] == "succeeded"
    assert states["postdeploy"] == "succeeded" and states["retire"] == "running"
    assert dep["links"]["logs"] == f"/deployments/{D1}/logs"
    evs = (await client.get(f"/deployments/{D1}/events")).json()
    assert evs[0]["type"] == "dockyard.deploy.queued" and evs[0]["subject"] == "blog"


async def test_events_filter_and_paging(client: httpx.AsyncClient) -> None:
    assert [e["id"] for e in (await client.get("/events")).json()] == [
        "e1", "e2", "e3", "e4", "e5", "e6", "e7", "f1"]
    assert [e["id"] for e in (await client.get("/events?app=other")).json()] == ["f1"]
    page = (await client.get("/events?app=blog&after=e5&limit=1")).json()
    assert [e["id"] for e in page] == ["e6"]
    assert (await client.get("/events?after=f1")).json() == []


@pytest.mark.parametrize("path", ["/apps/nope", "/apps/nope/deployments", "/apps/nope/releases",
                                  f"/deployments/{NOPE}", f"/deployments/{NOPE}/events",
                                  f"/deployments/{NOPE}/logs", "/apps/nope/events/stream",
                                  "/no/such/route"])
async def test_unknown_is_404_json(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 404
    body = r.json()
    assert body["status"] == 404 and ("nope" in body["error"] or NOPE in body["error"]
                                      or "/openapi.json" in body["error"])


@pytest.mark.parametrize(("path", "error"), [
    ("/apps/Blog", "invalid app name 'Blog': must be lowercase (try 'blog')"),
    ("/apps/x%3E/deployments", "invalid app name 'x>'"),
    ("/apps/shop%0A/releases", "invalid app name 'shop\\n'"),
    ("/deployments/d1", "invalid deployment id 'd1'"),
    ("/deployments/x%3E/events", "invalid deployment id 'x>'"),
    ("/events?app=x%3E", "invalid app name 'x>'"),
    ("/events?after=missing", "bad after"),
    ("/events?limit=x", "invalid request: limit"),
    ("/events?limit=0", "invalid request: limit"),
    ("/apps/blog/deployments?limit=5000", "invalid request: limit"),
])
async def test_bad_names_and_queries_are_400_json(client: httpx.AsyncClient, path: str,
                                                  error: str) -> None:
    r = await client.get(path)
    assert r.status_code == 400
    assert r.json()["error"].startswith(error)


async def test_the_openapi_document_is_served_and_names_every_operation(
        client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert {("POST", "/apps/{app}/deployments"), ("POST", "/deployments/{deployment_id}/cancel"),
            ("GET", "/deployments/{deployment_id}/logs"), ("PATCH", "/apps/{app}/config"),
            ("GET", "/apps/{app}/events/stream"), ("POST", "/apps/{app}/rollback"),
            ("DELETE", "/apps/{app}")} <= ops
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    assert (await client.get("/docs")).status_code == 200


# ---------------------------------------------------------------- deploy and cancel


async def test_deploy_stores_the_archive_and_publishes_the_command(api: Parts,
                                                                   client: httpx.AsyncClient
                                                                   ) -> None:
    archive = targz({"Procfile": b"web: python app.py\n", "app.py": b"print(1)\n"})
    r = await client.post("/apps/shop/deployments", content=archive,
                          headers={"Content-Type": "application/gzip"})
    assert r.status_code == 202, r.text
    body = r.json()
    dep = body["deployment_id"]
    assert body["links"]["logs"] == f"/deployments/{dep}/logs"
    [(command, msg_id)] = api.commands.sent
    assert isinstance(command, DeployRequested)
    assert (command.app, command.deployment_id, command.kind) == ("shop", dep, "source")
    assert api.sources.objects[command.source_object or ""] == archive
    assert msg_id == f"{dep}:deploy"


async def test_a_deploy_may_carry_its_own_rollout_and_a_bad_one_is_refused(
        api: Parts, client: httpx.AsyncClient) -> None:
    archive = targz({"Procfile": b"web: python app.py\n"})
    r = await client.post("/apps/shop/deployments?canary=10,50&hold=30s&watch=5m",
                          content=archive, headers={"Content-Type": "application/gzip"})
    assert r.status_code == 202, r.text
    off = await client.post("/apps/shop/deployments?rollout=off", content=archive,
                            headers={"Content-Type": "application/gzip"})
    assert off.status_code == 202, off.text
    sent = [c.rollout for c, _ in api.commands.sent]  # type: ignore[union-attr]
    assert sent == [RolloutOverride(steps=[10, 50], hold=30, watch=300),
                    RolloutOverride(off=True)]
    for query, error in (("canary=5,7", "7 is not a share the router can give"),
                         ("hold=soon", '"soon" is not a duration'),
                         ("rollout=on", "rollout")):
        refused = await client.post(f"/apps/shop/deployments?{query}", content=archive,
                                    headers={"Content-Type": "application/gzip"})
        assert refused.status_code == 400 and error in refused.json()["error"], refused.text
    assert len(api.commands.sent) == 2


@pytest.mark.parametrize(("body", "error"), [
    (b"not a tarball", "the request body must be a gzip tarball"),
    (b"", "the request body must be a gzip tarball"),
    (targz({"../escape": b"x"}), "'../escape'"),
    (targz({}, links={"link": "/etc/passwd"}), "a symbolic link"),
])
async def test_a_bad_archive_is_refused_naming_the_problem_and_nothing_is_stored(
        api: Parts, client: httpx.AsyncClient, body: bytes, error: str) -> None:
    r = await client.post("/apps/shop/deployments", content=body,
                          headers={"Content-Type": "application/gzip"})
    assert r.status_code == 400
    assert error in r.json()["error"]
    assert api.sources.objects == {} and api.commands.sent == []


async def test_an_archive_past_the_limit_is_413_and_nothing_is_stored(store: Store) -> None:
    small = parts(store, Limits(max_bytes=1024, max_entries=4))
    huge = targz({f"f{n}": bytes(range(256)) * 64 for n in range(64)})  # incompressible enough
    big = huge + b"\0" * (small.backend.operations.max_upload + 1 - len(huge))
    async with http(small, BEARER) as c:
        r = await c.post("/apps/shop/deployments", content=big)
        assert r.status_code == 413 and "DOCKYARD_ARCHIVE_MAX_BYTES" in r.json()["error"]
        over = await c.post("/apps/shop/deployments", content=huge)
        assert over.status_code == 400 and "DOCKYARD_ARCHIVE_MAX" in over.json()["error"]
    assert small.sources.objects == {} and small.commands.sent == []


async def test_cancel_a_running_deployment_and_not_an_ended_one(api: Parts,
                                                                client: httpx.AsyncClient
                                                                ) -> None:
    r = await client.post(f"/deployments/{D2}/cancel")
    assert r.status_code == 202 and r.json()["app"] == "other"
    [(command, msg_id)] = api.commands.sent
    assert isinstance(command, CancelRequested) and command.deployment_id == D2
    assert msg_id == f"{D2}:cancel"
    ended = await client.post(f"/deployments/{D1}/cancel")
    assert ended.status_code == 409 and "already ended (succeeded)" in ended.json()["error"]
    assert (await client.post(f"/deployments/{NOPE}/cancel")).status_code == 404
    assert len(api.commands.sent) == 1


async def test_destroy_asks_the_builder_and_refuses_unknown_and_busy_apps(
        api: Parts, client: httpx.AsyncClient) -> None:
    r = await client.delete("/apps/blog")
    assert r.status_code == 202
    body = r.json()
    assert body["app"] == "blog" and body["operation"] == "destroy"
    [(command, msg_id)] = api.commands.sent
    assert isinstance(command, DestroyRequested) and command.app == "blog"
    assert command.operation_id == body["deployment_id"] and msg_id.endswith(":destroy")
    assert body["links"] == {"events": "/apps/blog/events/stream"}
    unknown = await client.delete("/apps/nope")
    assert unknown.status_code == 404 and "no app named 'nope'" in unknown.json()["error"]
    busy = await client.delete("/apps/other")
    assert busy.status_code == 409 and D2 in busy.json()["error"]
    bad = await client.delete("/apps/Not_An_App")
    assert bad.status_code == 400
    assert len(api.commands.sent) == 1


async def test_an_app_with_only_config_can_be_destroyed(api: Parts,
                                                         client: httpx.AsyncClient) -> None:
    await api.config.change("fresh", {"A": "1"}, [])
    assert (await client.delete("/apps/fresh")).status_code == 202


async def test_destroy_needs_the_token(api: Parts) -> None:
    async with http(api) as anonymous:
        r = await anonymous.delete("/apps/blog")
    assert r.status_code == 401 and api.commands.sent == []


# ---------------------------------------------------------------- config, hooks, sinks


async def test_config_shows_names_never_values_and_a_change_releases_a_live_app(
        api: Parts, client: httpx.AsyncClient) -> None:
    r = await client.patch("/apps/shop/config", json={"set": {"SECRET_KEY": "s3cr3t-v4lue",
                                                              "DEBUG": "0"}})
    assert r.status_code == 200
    assert r.json() == {"app": "shop", "version": 1, "names": ["DEBUG", "SECRET_KEY"],
                        "deployment_id": None, "links": {}}
    assert api.commands.sent == []  # nothing live: the next deploy uses it
    api.routes.history["shop"] = [LiveRelease(app="shop", release=3, deployment_id=D1,
                                              spec=SPEC, instances=[])]
    r = await client.patch("/apps/shop/config", json={"unset": ["DEBUG"]})
    assert r.json()["version"] == 2 and r.json()["names"] == ["SECRET_KEY"]
    [(command, _)] = api.commands.sent
    assert isinstance(command, DeployRequested) and command.kind == "config"
    assert command.deployment_id == r.json()["deployment_id"]
    shown = await client.get("/apps/shop/config")
    assert shown.json() == {"app": "shop", "version": 2, "names": ["SECRET_KEY"]}
    assert "s3cr3t" not in shown.text and "s3cr3t" not in r.text


async def test_rollback_asks_for_a_release_of_an_earlier_one_or_says_why_not(
        api: Parts, client: httpx.AsyncClient) -> None:
    none = await client.post("/apps/shop/rollback", json={})
    assert none.status_code == 404 and none.json()["error"].startswith(
        "shop has no live release: nothing to roll back"), none.text
    api.routes.history["shop"] = [
        LiveRelease(app="shop", release=n, deployment_id=D1, spec=SPEC, instances=[])
        for n in range(1, 8)]  # v1..v7 went live; v3..v7 are kept (5)
    r = await client.post("/apps/shop/rollback", json={})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["operation"] == "rollback" and "not roll back databases" in body["warning"]
    [(command, _)] = api.commands.sent
    assert isinstance(command, DeployRequested)
    assert (command.kind, command.to_release) == ("rollback", 6)
    assert body["deployment_id"] == command.deployment_id
    assert body["links"]["deployment"] == f"/deployments/{command.deployment_id}"
    assert (await client.post("/apps/shop/rollback", json={"release": 4})).status_code == 202
    again = api.commands.sent[-1][0]
    assert isinstance(again, DeployRequested) and again.to_release == 4
    unknown = await client.post("/apps/shop/rollback", json={"release": 9})
    assert unknown.status_code == 404
    assert unknown.json()["error"] == ("shop has no release v9 that went live "
                                       "(kept: v3, v4, v5, v6, v7)")
    pruned = await client.post("/apps/shop/rollback", json={"release": 2})
    assert pruned.status_code == 409
    assert pruned.json()["error"] == "v2 is no longer kept (DOCKYARD_KEEP_RELEASES=5)"
    for bad in ({"release": 0}, {"release": "v3"}, {"to": 3}):
        assert (await client.post("/apps/shop/rollback", json=bad)).status_code == 400
    assert (await client.post("/apps/Bad_Name/rollback", json={})).status_code == 400
    assert len(api.commands.sent) == 2


@pytest.mark.parametrize(("body", "error"), [
    ({"set": {"1BAD": "x"}}, "'1BAD' is not a valid variable name"),
    ({"set": {"A": 1}}, "invalid request"),
    ({"values": {"A": "1"}}, "invalid request"),
    ({}, "nothing to change"),
    ({"unset": ["bad-name"]}, "'bad-name' is not a valid variable name"),
])
async def test_a_bad_config_change_is_400_naming_it_and_changes_nothing(
        api: Parts, client: httpx.AsyncClient, body: dict[str, Any], error: str) -> None:
    r = await client.patch("/apps/shop/config", json=body)
    assert r.status_code == 400
    assert error in r.json()["error"]
    assert api.config.versions == {}


async def test_a_malformed_json_body_is_400(client: httpx.AsyncClient) -> None:
    r = await client.patch("/apps/shop/config", content=b"{not json",
                           headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["status"] == 400


async def test_hooks_add_show_and_remove(api: Parts, client: httpx.AsyncClient) -> None:
    r = await client.post("/apps/shop/hooks", json={"phase": "postdeploy", "label": "Warm",
                                                    "command": "./bin/warm", "timeout": "90s"})
    assert r.status_code == 201
    assert r.json()["hooks"] == [{"phase": "postdeploy", "label": "Warm",
                                  "command": "./bin/warm", "timeout": 90.0, "memory": None}]
    again = await client.post("/apps/shop/hooks", json={"phase": "postdeploy", "label": "Warm",
                                                        "command": "x"})
    assert again.status_code == 400 and "already exists" in again.json()["error"]
    bad = await client.post("/apps/shop/hooks", json={"phase": "build", "label": "x",
                                                      "command": "x"})
    assert bad.status_code == 400 and "unknown phase `build`" in bad.json()["error"]
    slow = await client.post("/apps/shop/hooks", json={"phase": "release", "label": "x",
                                                       "command": "x", "timeout": "soon"})
    assert slow.status_code == 400 and "\"soon\"" in slow.json()["error"]
    plan = (await client.get("/apps/shop/hooks")).json()
    assert plan["live_release"] is None
    assert [(c["label"], c["command"], c["timeout"]) for c in plan["plan"]["postdeploy"]] == [
        ("Warm", "./bin/warm", 90.0)]
    gone = await client.delete("/apps/shop/hooks/postdeploy/Warm")
    assert gone.status_code == 200 and gone.json()["hooks"] == []
    missing = await client.delete("/apps/shop/hooks/postdeploy/Warm")
    assert missing.status_code == 404 and "no postdeploy hook labelled 'Warm'" in (
        missing.json()["error"])


async def test_sinks_hide_secrets_and_url_paths(api: Parts, client: httpx.AsyncClient) -> None:
    r = await client.post("/apps/shop/sinks", json={
        "name": "ops", "url": "https://hooks.example.com/T0/secret-path", "secret": "plain"})
    assert r.status_code == 201
    body = r.json()
    assert body["secret"].startswith("whsec_")  # shown this once
    assert body["sink"]["host"] == "hooks.example.com" and body["sink"]["signed"] is True
    listed = await client.get("/apps/shop/sinks")
    assert [s["name"] for s in listed.json()["sinks"]] == ["ops"]
    assert "whsec_" not in listed.text and "secret-path" not in listed.text
    bad = await client.post("/apps/shop/sinks", json={"name": "x", "url": "ftp://x"})
    assert bad.status_code == 400 and "url must be an absolute http(s) URL" in bad.json()["error"]
    assert (await client.delete("/apps/shop/sinks/ops")).json()["sinks"] == []
    missing = await client.delete("/apps/shop/sinks/ops")
    assert missing.status_code == 404 and "has no sink named 'ops'" in missing.json()["error"]


async def test_scale_and_restart_send_the_command_and_answer_202(
        api: Parts, client: httpx.AsyncClient) -> None:
    none = await client.post("/apps/shop/scale", json={"process": "web", "count": 2})
    assert none.status_code == 404 and "has no live release" in none.json()["error"]
    plan = Plan(processes=[ProcessType(name="web", command="serve")])
    api.routes.history["shop"] = [LiveRelease(
        app="shop", release=3, deployment_id=D1,
        spec=msgspec.structs.replace(SPEC, plan=plan), instances=[])]
    unknown = await client.post("/apps/shop/scale", json={"process": "clock", "count": 1})
    assert unknown.status_code == 400 and "no process type 'clock'" in unknown.json()["error"]
    huge = await client.post("/apps/shop/scale", json={"process": "web", "count": 21})
    assert huge.status_code == 400 and "between 0 and 20" in huge.json()["error"]
    assert api.commands.sent == []
    ok = await client.post("/apps/shop/scale", json={"process": "web", "count": 2})
    assert ok.status_code == 202 and ok.json()["operation"] == "scale"
    restarted = await client.post("/apps/shop/restart", json={"process": "web"})
    assert restarted.status_code == 202 and restarted.json()["operation"] == "restart"
    sent = [c for c, _ in api.commands.sent]
    assert [(c.kind, c.counts, c.process) for c in sent] == [  # type: ignore[union-attr]
        ("scale", {"web": 2}, None), ("restart", {}, "web")]


async def test_maintenance_on_and_off_answers_the_recorded_state(
        api: Parts, client: httpx.AsyncClient) -> None:
    before = await client.get("/apps/blog/maintenance")
    assert before.status_code == 200
    assert before.json() == {"app": "blog", "enabled": False, "since": None, "message": None}
    on = await client.post("/apps/blog/maintenance",
                           json={"enabled": True, "message": "back at 10"})
    assert on.status_code == 200
    assert (on.json()["enabled"], on.json()["message"]) == (True, "back at 10")
    assert on.json()["since"].endswith("Z")
    assert (await api.maintenance.all_on()).keys() == {"blog"}
    off = await client.post("/apps/blog/maintenance", json={"enabled": False})
    assert (off.status_code, off.json()["enabled"], off.json()["message"]) == (200, False, None)
    assert await api.maintenance.all_on() == {}
    assert api.commands.sent == []


@pytest.mark.parametrize(("path", "body", "status", "error"), [
    ("/apps/nope/maintenance", {"enabled": True}, 404, "no app"),
    ("/apps/Bad_Name/maintenance", {"enabled": True}, 400, "app name"),
    ("/apps/blog/maintenance", {"enabled": True, "message": "{file./etc/passwd}"}, 400,
     "without { or }"),
    ("/apps/blog/maintenance", {"enabled": "yes"}, 400, "enabled"),
    ("/apps/blog/maintenance", {"on": True}, 400, "invalid request"),
])
async def test_maintenance_refuses_bad_requests_changing_nothing(
        api: Parts, client: httpx.AsyncClient, path: str, body: dict[str, Any], status: int,
        error: str) -> None:
    r = await client.post(path, json=body)
    assert r.status_code == status, r.text
    assert error in r.json()["error"]
    assert api.maintenance.records == {}


async def test_maintenance_needs_the_token(api: Parts) -> None:
    async with http(api) as anonymous:
        r = await anonymous.post("/apps/blog/maintenance", json={"enabled": True})
        assert r.status_code == 401
        assert (await anonymous.get("/apps/blog/maintenance")).status_code == 401
    assert api.maintenance.records == {}


async def test_a_rollout_is_shown_and_ordered_and_refused_when_there_is_none(
        api: Parts, client: httpx.AsyncClient) -> None:
    idle = await client.get("/apps/blog/rollout")
    assert (idle.status_code, idle.json()) == (200, {"app": "blog", "in_progress": False})
    none = await client.post("/apps/blog/rollout", json={"action": "promote"})
    assert none.status_code == 409 and "no rollout in progress" in none.json()["error"]
    await api.rollouts.show(RolloutProgress(
        app="blog", deployment_id="d" * 32, release=3, previous_release=2, stage="canary",
        step=1, steps=2, percent=5,
        new=ReleaseFigures(release=3, requests=40, errors=0, error_rate=0.0, p95=0.012)))
    shown = (await client.get("/apps/blog/rollout")).json()
    assert (shown["in_progress"], shown["stage"], shown["percent"], shown["new"]["requests"]) == (
        True, "canary", 5, 40)
    ordered = await client.post("/apps/blog/rollout", json={"action": "abort"})
    assert ordered.status_code == 200
    assert api.rollouts.orders["blog"].action == "abort"
    assert api.rollouts.orders["blog"].deployment_id == "d" * 32
    for bad in ({"action": "pause"}, {}, {"action": "abort", "force": True}):
        refused = await client.post("/apps/blog/rollout", json=bad)
        assert refused.status_code == 400, refused.text
    assert (await client.post("/apps/nope/rollout", json={"action": "abort"})).status_code == 404


# ---------------------------------------------------------------- streams


def log_line(text: str, dep: str = D1) -> bytes:
    return codec.encode(LogLine(deployment_id=dep, app="blog", text=text))


async def test_the_log_of_an_ended_deployment_replays_then_ends(api: Parts,
                                                                client: httpx.AsyncClient
                                                                ) -> None:
    for text in ("one", "two", "three"):
        api.streams.add("DOCKYARD_LOGS", subjects.log(D1), log_line(text))
    api.streams.add("DOCKYARD_LOGS", subjects.log(D2), log_line("other", D2))
    r = await client.get(f"/deployments/{D1}/logs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    got = sse(r.text)
    assert [(e.get("event"), e.get("id")) for e in got] == [
        ("line", "1"), ("line", "2"), ("line", "3"), ("end", None)]
    assert [json.loads(e["data"]).get("text") for e in got[:3]] == ["one", "two", "three"]
    assert json.loads(got[-1]["data"]) == {"status": "succeeded"}
    resumed = sse((await client.get(f"/deployments/{D1}/logs",
                                    headers={"Last-Event-ID": "2"})).text)
    assert [e.get("id") for e in resumed] == ["3", None]
    bad = await client.get(f"/deployments/{D1}/logs", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["error"]


async def test_an_apps_event_stream_replays_and_resumes_after_an_id(api: Parts,
                                                                   client: httpx.AsyncClient
                                                                   ) -> None:
    for ev in events():
        api.streams.add("DOCKYARD_FEED", ev.nats_subject(), codec.encode(ev))
    got = sse((await client.get("/apps/blog/events/stream?follow=false")).text)
    assert [e["id"] for e in got] == ["e1", "e2", "e3", "e4", "e5", "e6", "e7"]
    assert msgspec.json.decode(got[0]["data"])["type"] == "dockyard.deploy.queued"
    later = sse((await client.get("/apps/blog/events/stream?follow=false",
                                  headers={"Last-Event-ID": "e5"})).text)
    assert [e["id"] for e in later] == ["e6", "e7"]
    unknown = await client.get("/apps/blog/events/stream?follow=false",
                               headers={"Last-Event-ID": "nope"})
    assert unknown.status_code == 400 and "nope" in unknown.json()["error"]


async def test_an_archive_bigger_than_a_json_body_is_accepted(api: Parts,
                                                              client: httpx.AsyncClient) -> None:
    """Only JSON bodies have the 1 MiB cap; an archive has its own (DOCKYARD_ARCHIVE_*)."""
    archive = targz({"blob.bin": os.urandom(3 * 1024 * 1024), "Procfile": b"web: x\n"})
    r = await client.post("/apps/shop/deployments", content=archive,
                          headers={"Content-Type": "application/gzip"})
    assert r.status_code == 202, r.text
    assert len(api.sources.objects) == 1


async def test_a_json_body_past_a_mebibyte_is_413(api: Parts, client: httpx.AsyncClient) -> None:
    body = json.dumps({"set": {"BIG": "x" * (2 * 1024 * 1024)}})
    r = await client.patch("/apps/shop/config", content=body,
                           headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["status"] == 413
    assert api.config.versions == {}

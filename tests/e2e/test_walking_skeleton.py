"""The walking skeleton on the real stack: deploy, the postdeploy gate, dead letters, plain NATS."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import jsonschema
import nats

from dockyard.client import Followers
from dockyard.contract import subjects
from dockyard.contract.events import AnyEvent, DeployFailed, DeploySucceeded
from tests.e2e.apps import aget, get, make_app, targz
from tests.e2e.conftest import Running

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "json"
DOCKYARD = str(Path(sys.executable).parent / "dockyard")


async def deploy(running: Running, app: str, src: Path) -> DeploySucceeded | DeployFailed:
    return await running.client.deploy(app, src, Followers(), wait=240)


async def test_failing_postdeploy_keeps_the_old_release(running: Running, tmp_path: Path) -> None:
    app = running.app_name("shop")
    v1 = await deploy(running, app, make_app(tmp_path / "v1", running.runtime, "v1"))
    assert isinstance(v1, DeploySucceeded), v1
    assert get(running.port, app).text == "app v1\n"

    # The CLI, as a user runs it: exit code 1 and the status printed.
    src = make_app(tmp_path / "v2", running.runtime, "v2", postdeploy="echo checking; exit 3")
    env = {**os.environ, "DOCKYARD_DATA_DIR": str(running.settings.data_dir),
           "DOCKYARD_HTTP_PORT": str(running.port), "COLUMNS": "200"}
    proc = await asyncio.to_thread(subprocess.run, [DOCKYARD, "deploy", app, str(src)],
                                   env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "hook-error" in proc.stdout
    assert "exited with code 3" in proc.stdout
    assert "checking" in proc.stdout  # the postdeploy output was streamed

    response = get(running.port, app)
    assert response.status_code == 200 and response.text == "app v1\n"
    releases = {i.release for i in await running.instances(app)}
    assert releases == {v1.release}, "the failed release's instances must be gone"


async def test_postdeploy_gates_the_switch(running: Running, tmp_path: Path) -> None:
    app = running.app_name("gate")
    assert isinstance(await deploy(running, app, make_app(tmp_path / "v1", running.runtime, "v1")),
                      DeploySucceeded)
    seen: list[tuple[float, int, str]] = []
    marks: dict[str, float] = {}
    first_after_switch: list[str] = []
    stop = asyncio.Event()

    async def poll() -> None:
        async with httpx.AsyncClient(timeout=5) as http:
            while not stop.is_set():
                # No retry: a switch rewrites the upstream files Caddy reads, it reloads nothing,
                # so not one request may fail.
                r = await aget(http, running.port, app)
                seen.append((time.monotonic(), r.status_code, r.text))
                await asyncio.sleep(0.02)

    async def on_event(event: AnyEvent) -> None:
        marks.setdefault(event.type, time.monotonic())
        if event.type == "dockyard.traffic.switched":
            async with httpx.AsyncClient(timeout=5) as http:
                first_after_switch.append((await aget(http, running.port, app)).text)

    poller = asyncio.create_task(poll())
    src = make_app(tmp_path / "v2", running.runtime, "v2", postdeploy="sleep 3")
    end = await running.client.deploy(app, src, Followers(on_event=on_event), wait=240)
    stop.set()
    await poller
    assert isinstance(end, DeploySucceeded), end
    assert first_after_switch == ["app v2\n"]
    gate_open = marks["dockyard.hook.succeeded"]
    during = [s for s in seen if marks["dockyard.hook.started"] <= s[0] < gate_open]
    assert len(during) > 20, "the poller should have run through the 3 s postdeploy"
    assert {(code, text) for _, code, text in seen if _ < gate_open} == {(200, "app v1\n")}
    assert all(code == 200 for _, code, _ in seen)


async def test_router_decides_switches_on_hook_succeeded_alone(running: Running) -> None:
    js = await running.js_as("admin")  # listing consumers is provisioning's business
    filters = set()
    for info in await js.consumers_info(subjects.STREAM_EVENTS):
        if info.config.durable_name and info.config.durable_name.startswith("router"):
            filters.add(info.config.filter_subject)
    assert subjects.events_of("hook", "succeeded") in filters
    # The others only mark a first deploy's host 503 and clear it, reroute the live release to
    # the instances a scale placed (checked against the scheduler's placement), unroute a
    # destroyed app, or start the watch window of the release already live (its switch-back
    # goes to the release the router itself switched away from, never one an event names):
    # none can switch traffic to a release an event names.
    assert filters <= {subjects.events_of("hook", "succeeded"),
                       subjects.events_of("deploy", "queued"),
                       subjects.events_of("deploy", "failed"),
                       subjects.events_of("scale", "placed"),
                       subjects.events_of("destroy", "started"),
                       subjects.events_of("after_switch", "succeeded")}


async def test_garbage_goes_to_the_dead_letters_and_the_next_deploy_works(
        running: Running, tmp_path: Path) -> None:
    # As an operator with plain nats-py: the cli identity's seed file and its inbox prefix.
    nc = await nats.connect(running.settings.nats_url,
                            nkeys_seed=str(running.settings.keys_dir / "cli.nk"),
                            inbox_prefix="_INBOX.cli")
    try:
        js = nc.jetstream()
        dead = await js.subscribe(subjects.dlq("builder"), ordered_consumer=True,
                                  stream=subjects.STREAM_DLQ)
        await js.publish(subjects.CMD_DEPLOY, b"{this is not json")
        letter = json.loads((await dead.next_msg(timeout=20)).data)
        assert letter["reason"].startswith("undecodable")
        assert letter["payload"] == "{this is not json"
        await dead.unsubscribe()
    finally:
        await nc.close()
    app = running.app_name("after-garbage")
    end = await deploy(running, app, make_app(tmp_path / "v1", running.runtime, "v1"))
    assert isinstance(end, DeploySucceeded), end


async def test_plain_nats_py_drives_a_deploy_and_sees_valid_events(
        running: Running, tmp_path: Path) -> None:
    """No Dockyard code on this side: only the documented subjects, names and JSON."""
    app = running.app_name("plain")
    deployment = uuid.uuid4().hex  # deployment ids are 32 lowercase hex digits
    src = make_app(tmp_path / "v1", running.runtime, "v1", postdeploy="echo hello from postdeploy")
    keys = running.settings.keys_dir
    # The operator's side (cli) uploads and requests; an outside subscriber (reader) follows
    # the events through its own ordered consumer on the readers' mirror, DOCKYARD_FEED.
    nc = await nats.connect(running.settings.nats_url, nkeys_seed=str(keys / "cli.nk"),
                            inbox_prefix="_INBOX.cli")
    reader = await nats.connect(running.settings.nats_url, nkeys_seed=str(keys / "reader.nk"),
                                inbox_prefix="_INBOX.reader")
    received: list[dict] = []  # type: ignore[type-arg]
    try:
        js = nc.jetstream()
        sub = await reader.jetstream().subscribe(f"dockyard.evt.{app}.>", ordered_consumer=True,
                                                 stream="DOCKYARD_FEED")
        store = await js.object_store("dockyard_sources")
        await store.put(f"{app}/{deployment}.tar.gz", targz(src))
        request = {"type": "dockyard.cmd.deploy", "deployment_id": deployment, "app": app,
                   "source_object": f"{app}/{deployment}.tar.gz"}
        await js.publish("dockyard.cmd.deploy", json.dumps(request).encode())
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            msg = await sub.next_msg(timeout=deadline - time.monotonic())
            event = json.loads(msg.data)
            if event["deploymentid"] != deployment:
                continue
            received.append(event)
            if event["type"] in ("dockyard.deploy.succeeded", "dockyard.deploy.failed"):
                break
    finally:
        await reader.close()
        await nc.close()
    types = [e["type"] for e in received]
    assert types[-1] == "dockyard.deploy.succeeded", types
    for expected in ("dockyard.deploy.queued", "dockyard.build.started", "dockyard.build.succeeded",
                     "dockyard.release.succeeded", "dockyard.start.succeeded",
                     "dockyard.hook.started", "dockyard.command.finished",
                     "dockyard.hook.succeeded", "dockyard.traffic.switched",
                     "dockyard.after_switch.succeeded"):
        assert expected in types
    for event in received:
        schema = json.loads((SCHEMAS / f"{event['type']}.json").read_text())
        jsonschema.validate(event, schema)
        assert event["subject"] == app and event["specversion"] == "1.0"
    assert get(running.port, app).text == "app v1\n"

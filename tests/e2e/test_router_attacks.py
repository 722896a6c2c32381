"""Attacks on the router and its proxy, tried on the real stack for both runtimes: forged
switches published with the hook-runner's own seed (the one identity the bus lets publish
hook.succeeded: what is left once the bus refuses everyone else, and what the router's records
check answers), a path for an app name, and a local client looking for Caddy's admin API on
every loopback port."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.errors import TimeoutError as NatsTimeoutError

from dockyard.bus.broker import CLOUDEVENTS_JSON, DeadLetter
from dockyard.contract import codec, subjects
from dockyard.contract.events import (
    AnyEvent,
    DeployFailed,
    DeploySpec,
    DeploySucceeded,
    Fact,
    HookStarted,
    HookSucceeded,
    InstanceRef,
    InstancesData,
    new_id,
    stamp,
)
from dockyard.contract.plan import Plan
from dockyard.router.caddy import ADMIN_DIR, ADMIN_FILE, CaddyAdmin
from tests.e2e.apps import aget, make_app
from tests.e2e.conftest import Running
from tests.e2e.phase_support import Seen, deploy, events_of, releases_running, serves
from tests.router.listening import admin_configs_on_loopback, listening_of

ROUTER = "router"
HOOK_RUNNER = "hook-runner"
ATTACKER_PAGE = b"attacker page\n"


async def forge(running: Running, subject: str, body: bytes) -> str:
    """Publish bytes as an event with the hook-runner's seed (a leaked one, or a hook-runner
    gone wrong: the bus lets no other identity publish hook.succeeded); the message id."""
    msg_id = f"forged-{new_id()}"
    js = await running.js_as(HOOK_RUNNER)
    await js.publish(subject, body, headers={
        "Nats-Msg-Id": msg_id, "content-type": CLOUDEVENTS_JSON})
    return msg_id


async def dead_letters(running: Running) -> list[DeadLetter]:
    """The router's dead letters so far (as the operator reads them: `cli`, ordered)."""
    sub = await running.client.js.subscribe(subjects.dlq(ROUTER), ordered_consumer=True,
                                            stream=subjects.STREAM_DLQ)
    found: list[DeadLetter] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.3)
            except (TimeoutError, NatsTimeoutError):  # nats-py raises either
                break
            found.append(codec.decode_as(msg.data, DeadLetter))
    finally:
        await sub.unsubscribe()
    return found


def switches(events: list[AnyEvent], deployment_id: str) -> int:
    return sum(1 for e in events
               if e.type == "dockyard.traffic.switched" and e.deployment_id == deployment_id)


def written(path: Path) -> bool:
    return path.exists()


async def refusal(running: Running, msg_id: str, app: str, deployment_id: str,
                  switched_before: int, outside: Path | None = None,
                  within: float = 20.0) -> DeadLetter:
    """The dead letter of a forgery, failing at once if the router switched on it instead
    (or wrote `outside`)."""
    deadline = time.monotonic() + within
    while True:
        assert outside is None or not written(outside), \
            f"the router wrote outside its directory: {outside}"
        for letter in await dead_letters(running):
            if letter.headers.get("Nats-Msg-Id") == msg_id:
                return letter
        events = await running.client.events(app, idle=0.2)
        assert switches(events, deployment_id) == switched_before, \
            "the router switched traffic on a forged event"
        assert time.monotonic() < deadline, "the forgery was neither refused nor acted on"
        await asyncio.sleep(0.2)


async def page(running: Running, app: str) -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await aget(client, running.port, app)).text


@pytest.fixture
async def attacker() -> AsyncIterator[tuple[int, list[int]]]:
    """A local HTTP server answering the attacker's page: (port, hits)."""
    hits: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            hits.append(1)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                         % (len(ATTACKER_PAGE), ATTACKER_PAGE))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], hits
    finally:
        server.close()
        await server.wait_closed()


async def live_app(running: Running, root: Path, stem: str) -> str:
    """A fresh app whose release 1 serves `app v1`."""
    app = running.app_name(stem)
    end, _ = await deploy(running, app, make_app(root / "v1", running.runtime, "v1"))
    assert isinstance(end, DeploySucceeded), end
    serves(running, app, "v1")
    return app


async def during_postdeploy(running: Running, app: str, src: Path,
                            attack: Any) -> tuple[AnyEvent, Any]:
    """Deploy src; when its postdeploy has started, run attack(hook_started) beside it.
    (the deploy's end, what attack returned)."""
    attacks: list[asyncio.Task[Any]] = []

    async def on_event(event: AnyEvent) -> None:
        if isinstance(event, HookStarted) and not attacks:
            attacks.append(asyncio.ensure_future(attack(event)))

    seen = Seen(on_event=on_event)
    end, _ = await deploy(running, app, src, seen)
    assert attacks, "postdeploy never started"
    return end, await attacks[0]


async def test_forged_hook_succeeded_while_postdeploy_still_runs(running: Running,
                                                                 tmp_path: Path) -> None:
    app = await live_app(running, tmp_path, "gate")
    # The postdeploy takes a while, then fails: the router must wait for its real outcome.
    src = make_app(tmp_path / "v2", running.runtime, "v2", postdeploy="sh -c 'sleep 6; exit 1'")

    async def attack(started: HookStarted) -> tuple[DeadLetter, str, list[str]]:
        # A copy of hook.started, renamed hook.succeeded.
        body = codec.encode(started).replace(b'"type":"dockyard.hook.started"',
                                             b'"type":"dockyard.hook.succeeded"')
        msg_id = await forge(running, subjects.event(app, "hook", "succeeded"), body)
        letter = await refusal(running, msg_id, app, started.deployment_id, switched_before=0)
        served = await page(running, app)
        outcomes = [e.type for e in await events_of(running, app, started.deployment_id)
                    if e.type in ("dockyard.hook.succeeded", "dockyard.hook.failed")
                    and e.id != started.id]  # the forgery kept hook.started's id
        return letter, served, outcomes

    end, (letter, served, outcomes) = await during_postdeploy(running, app, src, attack)
    assert outcomes == [], "postdeploy had already ended when the forgery was refused"
    assert letter.reason.startswith("rejected: postdeploy has no recorded outcome"), letter
    assert served == "app v1\n"
    # The deploy ends as the real hook says: failed, the old release serving and alone running.
    assert isinstance(end, DeployFailed) and end.data.status == "hook-error", end
    serves(running, app, "v1")
    assert await releases_running(running, app) == {1}
    assert switches(await events_of(running, app, end.deployment_id), end.deployment_id) == 0


async def test_forged_instances_are_dead_lettered_and_the_app_serves_its_own_page(
        running: Running, tmp_path: Path, attacker: tuple[int, list[int]]) -> None:
    port, hits = attacker
    app = await live_app(running, tmp_path, "own")
    src = make_app(tmp_path / "v2", running.runtime, "v2", postdeploy="sh -c 'sleep 6'")

    def forged_from(started: HookStarted) -> bytes:
        # The id, deployment and release of the real outcome to come; the attacker's upstream.
        theirs = InstanceRef(id=f"{app}-web-1", process="web", release=started.release,
                             host="127.0.0.1", port=port)
        fact = Fact.of(HookSucceeded, InstancesData(spec=started.data.spec, instances=[theirs]))
        return codec.encode(stamp(fact, source="dockyard/hook-runner", app=app,
                                  deployment_id=started.deployment_id, release=started.release))

    bodies: list[bytes] = []

    async def attack(started: HookStarted) -> tuple[DeadLetter, str]:
        bodies.append(forged_from(started))
        msg_id = await forge(running, subjects.event(app, "hook", "succeeded"), bodies[0])
        letter = await refusal(running, msg_id, app, started.deployment_id, switched_before=0)
        return letter, await page(running, app)

    end, (letter, served) = await during_postdeploy(running, app, src, attack)
    assert letter.reason.startswith("rejected: postdeploy has no recorded outcome"), letter
    assert served == "app v1\n"
    assert isinstance(end, DeploySucceeded), end
    serves(running, app, "v2")

    # Now the real outcome is recorded: the same forgery names instances nobody started.
    msg_id = await forge(running, subjects.event(app, "hook", "succeeded"), bodies[0])
    letter = await refusal(running, msg_id, app, end.deployment_id, switched_before=1)
    assert "the event routes to" in letter.reason and f":{port}]" in letter.reason, letter
    serves(running, app, "v2")
    assert hits == []


async def test_a_path_for_an_app_name_writes_nothing_outside(running: Running,
                                                             attacker: tuple[int, list[int]]
                                                             ) -> None:
    name = f"../../../../tmp/x-{new_id()[:8]}"
    routes_dir = running.settings.data_dir / "caddy-routes"
    target = (routes_dir / name).resolve()
    assert not target.is_relative_to(running.settings.data_dir.resolve())
    spec = DeploySpec(runtime=running.runtime, build_id="b", artifact="a", plan=Plan())
    web = InstanceRef(id="x-web-1", process="web", release=1, port=attacker[0])
    deployment_id = new_id()
    event = stamp(Fact.of(HookSucceeded, InstancesData(spec=spec, instances=[web])),
                  source="dockyard/hook-runner", app=name, deployment_id=deployment_id,
                  release=1)
    try:
        msg_id = await forge(running, subjects.event("x", "hook", "succeeded"),
                             codec.encode(event))
        letter = await refusal(running, msg_id, "x", deployment_id, switched_before=0,
                               outside=target)
        assert "invalid app name" in letter.reason and name in letter.reason, letter
        assert not target.exists()
        assert not (routes_dir / name).exists()
    finally:
        if target.exists():  # leave nothing behind, even when the router wrote it
            shutil.rmtree(target)


def caddy_pid(data_dir: Path) -> int:
    """The pid of the Caddy the stack's router started (its command names the data dir)."""
    marker = str(data_dir / "caddy" / "bootstrap.json").encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:  # gone meanwhile
                continue
            if marker in cmdline:
                return int(entry)
    raise AssertionError(f"no caddy process runs with {marker!r}")


async def test_no_local_client_reaches_caddys_admin_api_over_tcp(running: Running) -> None:
    data_dir = running.settings.data_dir
    ours = [f"{running.settings.http_host}:{running.port}"]

    def is_ours(config: Any) -> bool:
        try:
            return bool(config["apps"]["http"]["servers"]["dockyard"]["listen"] == ours)
        except (KeyError, TypeError):
            return False

    # Through its socket, the admin API answers with a config this test recognises ...
    sock = (data_dir / ADMIN_FILE).read_text().strip()
    assert is_ours(await CaddyAdmin(sock).config())
    # ... and on no loopback port of this machine does anything answer with it.
    reached = {port for port, config in (await admin_configs_on_loopback()).items()
               if is_ours(config)}
    assert reached == set(), f"Caddy's admin API answers over TCP on {reached}"
    # Its Caddy listens on TCP only where the apps are served.
    assert {port for _, port in listening_of(caddy_pid(data_dir))} == {running.port}
    # The socket's directory is the user's alone, and so is the file that names it.
    assert Path(sock).parent == data_dir / ADMIN_DIR
    assert stat.S_IMODE((data_dir / ADMIN_DIR).stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / ADMIN_FILE).stat().st_mode) == 0o600

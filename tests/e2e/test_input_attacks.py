"""Hostile input on the real stack: bad names, a flooded queue, crafted archives, endless
output, an oversized plan, encoded secrets. Each gets a clear error once: no retry loop, no hung
deploy, no held lock, nothing left in the queue, no secret anywhere it could leave."""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import pytest

from dockyard.bus.broker import DeadLetter
from dockyard.client import ClientError, Followers
from dockyard.contract import codec, subjects
from dockyard.contract.events import (
    BuildSucceeded,
    CommandFinished,
    DeployFailed,
    DeployQueued,
    DeployRequested,
    DeploySpec,
    DeploySucceeded,
    LogLine,
    Terminal,
    new_id,
)
from dockyard.contract.plan import Plan
from dockyard.state.locks import open_locks
from dockyard.state.queue import open_queue
from dockyard.state.sources import object_name
from tests.e2e.apps import make_app
from tests.e2e.conftest import RUNTIMES, Running, start_running, stop_running
from tests.e2e.phase_support import api_get, assert_lock_free, lock_holder
from tests.events import make
from tests.runtime.process_support import reachable_tmp, remove
from tests.test_archive import Maker, bomb, cve_2025_4517

QUEUE_LIMIT = 2
LOG_LIMIT = 1024 * 1024
WAIT = 240.0
WEBHOOK_SECRET = "whsec_" + "aW5wdXQtYXR0YWNrcw=="


class Receiver:
    """A webhook receiver on loopback keeping every raw body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                outer.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@dataclass
class Attacked:
    """A stack with a small queue bound and log cap, and a webhook receiver."""

    running: Running
    receiver: Receiver
    tmp: Path
    shared: Path  # the apps' own users (process runtime) may write here: run counters
    seen: set[str] = field(default_factory=set)


@pytest.fixture(scope="module", params=RUNTIMES)
async def attacked(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Attacked]:
    """One stack per runtime for this module (settings: queue 2, log 1 MiB, a webhook)."""
    tmp = tmp_path_factory.mktemp(f"attacks-{request.param}")
    shared = reachable_tmp("dockyard-attacks-")
    shared.chmod(0o1777)
    receiver = Receiver()
    try:
        running = await start_running(tmp, request.param, queue_limit=QUEUE_LIMIT,
                                      log_max_bytes=LOG_LIMIT, webhook_url=receiver.url,
                                      webhook_secret=WEBHOOK_SECRET)
        try:
            yield Attacked(running=running, receiver=receiver, tmp=tmp, shared=shared)
        finally:
            await stop_running(running)
    finally:
        receiver.stop()
        remove(shared)


async def until(check: Callable[[], Any], what: str, within: float = 30.0) -> Any:
    """Poll an async check until it returns something truthy (fail after `within` s)."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not within {within}s: {what} (last: {result!r})"
        await asyncio.sleep(0.2)


async def letters(running: Running, service: str, marker: str) -> list[DeadLetter]:
    """The dead letters of a service whose payload holds marker."""
    subject = subjects.dlq(service)
    info = await running.client.js.stream_info(subjects.STREAM_DLQ, subjects_filter=subject)
    count = (info.state.subjects or {}).get(subject, 0)
    sub = await running.client.js.subscribe(subject, ordered_consumer=True)
    found: list[DeadLetter] = []
    try:
        for _ in range(count):
            letter = codec.decode_as((await sub.next_msg(timeout=10)).data, DeadLetter)
            if marker in letter.payload:
                found.append(letter)
    finally:
        await sub.unsubscribe()
    return found


async def texts_of(running: Running, deployment_id: str) -> list[str]:
    """Every line the LOGS stream kept for a deployment (all of them, however slow the bus)."""
    subject = subjects.log(deployment_id)
    info = await running.client.js.stream_info(subjects.STREAM_LOGS, subjects_filter=subject)
    count = (info.state.subjects or {}).get(subject, 0)
    sub = await running.client.js.subscribe(subject, ordered_consumer=True)
    try:
        return [codec.decode_as((await sub.next_msg(timeout=10)).data, LogLine).text
                for _ in range(count)]
    finally:
        await sub.unsubscribe()


async def settled(running: Running, stream: str, durable: str) -> bool:
    """Whether a service's consumer has handled and acked everything it was given (read as
    `admin`: looking at consumers is provisioning's business, not the client's)."""
    info = await (await running.js_as("admin")).consumer_info(stream, durable)
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def publish_request(running: Running, cmd: DeployRequested) -> None:
    await running.client.js.publish(subjects.CMD_DEPLOY, codec.encode(cmd),
                                    headers={"Nats-Msg-Id": f"{cmd.deployment_id}:deploy"})


async def deploy_archive(running: Running, app: str, data: bytes) -> Terminal:
    """Upload a crafted archive as a deployment's source and follow the deploy to its end."""
    dep = new_id()
    await running.client.doors.sources.upload(app, dep, data)
    watch = await running.client.watch(app, dep, Followers())
    try:
        await publish_request(running, DeployRequested(
            deployment_id=dep, app=app, source_object=object_name(app, dep)))
        return await watch.result(WAIT)
    finally:
        await watch.close()


# ------------------------------------------------------------------ names


GOOD = "0123456789abcdef0123456789abcdef"


async def test_bad_names_are_dead_lettered_once_and_hold_nothing(attacked: Attacked) -> None:
    running = attacked.running
    app = running.app_name("names")
    marker = f"marker-{new_id()}"
    bad_commands = [("x>", GOOD), ("shop\n", GOOD), ("a" * 64, GOOD), (app, "../../etc"),
                    (app, "x>")]
    for bad_app, dep in bad_commands:
        await running.client.js.publish(subjects.CMD_DEPLOY, msgspec.json.encode(
            {"type": "dockyard.cmd.deploy", "app": bad_app, "deployment_id": dep,
             "reason": marker}))
    # Events: a bad deployment id (a KV key, a log subject), and another app's subject. Only
    # the builder may publish these events: a faulty (or taken over) builder sends them.
    builder = await running.js_as("builder")
    spec = DeploySpec(runtime=running.runtime, build_id="b", artifact="a", plan=Plan())
    built = make(BuildSucceeded, app=app, deployment_id="../../etc", spec=spec, source=marker)
    await builder.publish(built.nats_subject(), codec.encode(built))
    queued = make(DeployQueued, app="x>", deployment_id=GOOD, source=marker)
    await builder.publish(subjects.event(app, "deploy", "queued"), codec.encode(queued))

    # The builder reads the commands and (its watchdog) every event: 5 bad commands, 2 events.
    expected = {"builder": 7, "hook-runner": 1, "router": 1, "api": 2, "notifier": 2}
    durables = {"builder": (subjects.STREAM_EVENTS, "builder-all"),
                "hook-runner": (subjects.STREAM_EVENTS, "hook-runner-build-succeeded"),
                "router": (subjects.STREAM_EVENTS, "router-deploy-queued"),
                "api": (subjects.STREAM_EVENTS, "api-all"),
                "notifier": (subjects.STREAM_EVENTS, "notifier-all")}
    for service, count in expected.items():
        async def enough(service: str = service, count: int = count) -> list[DeadLetter] | None:
            found = await letters(running, service, marker)
            return found if len(found) >= count else None

        await until(enough, f"{count} dead letters from {service}")
        await until(lambda service=service: settled(running, *durables[service]),  # type: ignore[misc]
                    f"{service} acked everything")
        if service == "builder":
            await until(lambda: settled(running, subjects.STREAM_COMMANDS, "builder-deploy"),
                        "the builder acked every command")
        found = await letters(running, service, marker)
        assert len(found) == count, (service, [lt.reason for lt in found])
        assert all(lt.deliveries == 1 and lt.reason.startswith("rejected: invalid ")
                   for lt in found), (service, [(lt.deliveries, lt.reason) for lt in found])
    reasons = [lt.reason for lt in await letters(running, "builder", marker)]
    assert any("invalid app name 'shop\\n'" in r for r in reasons), reasons
    assert any("invalid deployment id '../../etc'" in r for r in reasons), reasons
    [wrong] = await letters(running, "router", marker)
    assert "does not name the event's app 'x>'" in wrong.reason or "'x>'" in wrong.reason
    assert await lock_holder(running, app) is None
    assert (await (await open_queue(builder, "test")).load(app)).entries == []


async def test_the_client_refuses_bad_names_before_the_bus(attacked: Attacked) -> None:
    client = attacked.running.client
    with pytest.raises(ClientError, match=r"invalid app name 'shop\\n'"):
        await client.request_deploy("shop\n", None, kind="config")
    with pytest.raises(ClientError, match="invalid deployment id 'x>'"):
        await client.log_lines("x>", lambda line: asyncio.sleep(0), follow=False)
    with pytest.raises(ClientError, match=r"invalid deployment id '\.\./\.\./etc'"):
        await client.cancel("shop", "../../etc")


# ------------------------------------------------------------------ the queue


async def test_the_queue_keeps_arrival_order_and_refuses_past_its_bound(
        attacked: Attacked) -> None:
    running = attacked.running
    app = running.app_name("flood")
    blocker = new_id()
    # The queue and the lock are the builder's state: looked at and held as the builder.
    builder = await running.js_as("builder")
    locks = await open_locks(builder, "test")
    queue = await open_queue(builder, "test")
    first = DeployRequested(deployment_id=new_id(), app=app, kind="config")
    sneaky = DeployRequested(deployment_id=new_id(), app=app, kind="config",
                             requested_at=datetime(1970, 1, 1, tzinfo=UTC))
    over = DeployRequested(deployment_id=new_id(), app=app, kind="config")
    async with locks.hold(app, blocker):  # a deploy in progress: the others wait
        for cmd in (first, sneaky):
            await publish_request(running, cmd)

            async def waiting(dep: str = cmd.deployment_id) -> bool:
                return any(e.deployment_id == dep for e in (await queue.load(app)).entries)

            await until(waiting, f"{cmd.deployment_id} queued")
        order = [e.deployment_id for e in (await queue.load(app)).entries]
        assert order == [first.deployment_id, sneaky.deployment_id]  # 1970 does not jump it

        watch = await running.client.watch(app, over.deployment_id, Followers())
        try:
            await publish_request(running, over)
            end = await watch.result(60)  # refused at once: nothing to wait for
        finally:
            await watch.close()
        assert isinstance(end, DeployFailed) and end.data.status == "rejected"
        assert end.data.reason == (f"the deploy queue of {app} is full: 2 deployments wait "
                                   "(DOCKYARD_QUEUE_LIMIT = 2); try again later")
        assert [e.deployment_id for e in (await queue.load(app)).entries] == order
        row = await until(lambda: _api_status(running, over.deployment_id, "rejected"),
                          "the api shows the refusal")
        assert row["reason"] == end.data.reason
        for cmd in (first, sneaky):
            await running.client.cancel(app, cmd.deployment_id, "test over")
        for cmd in (first, sneaky):
            ended = await until(lambda dep=cmd.deployment_id: _ended(running, app, dep),  # type: ignore[misc]
                                "the queued deploy ends cancelled", within=WAIT)
            assert ended.data.status == "cancelled"
        assert (await queue.load(app)).entries == []
    await locks.release(app, blocker)
    await assert_lock_free(running, app)


async def _api_status(running: Running, dep: str, status: str) -> dict[str, Any] | None:
    try:
        row: dict[str, Any] = await api_get(running, f"/deployments/{dep}")
    except Exception:  # noqa: BLE001 (not projected yet)
        return None
    return row if row.get("status") == status else None


async def _ended(running: Running, app: str, dep: str) -> DeployFailed | None:
    for event in await running.client.events(app, idle=0.3):
        if event.deployment_id == dep and isinstance(event, DeployFailed):
            return event
    return None


# ------------------------------------------------------------------ archives


def _tar_gz(maker: Maker, tmp: Path, name: str) -> bytes:
    return maker.write(tmp / name).read_bytes()


async def test_archive_links_are_a_build_error_naming_the_member(attacked: Attacked) -> None:
    running = attacked.running
    app = running.app_name("links")
    data = _tar_gz(cve_2025_4517(60), attacked.tmp, "cve.tgz")
    end = await deploy_archive(running, app, data)
    assert isinstance(end, DeployFailed) and end.data.status == "build-error", end
    assert "member 'a' is a symbolic link" in end.data.reason
    assert "only regular files and directories are accepted" in end.data.reason
    await assert_lock_free(running, app)


async def test_archive_paths_out_of_the_tree_are_a_build_error(attacked: Attacked) -> None:
    running = attacked.running
    app = running.app_name("paths")
    maker = Maker().file("Procfile", b"web: x\n").file("../../etc/cron.d/evil", b"* * * * *")
    end = await deploy_archive(running, app, _tar_gz(maker, attacked.tmp, "paths.tgz"))
    assert isinstance(end, DeployFailed) and end.data.status == "build-error", end
    assert "member '../../etc/cron.d/evil' has a '..' component in its path" in end.data.reason


async def test_a_gzip_bomb_is_a_build_error_naming_the_byte_limit(attacked: Attacked) -> None:
    running = attacked.running
    app = running.app_name("bomb")
    data = bomb(attacked.tmp / "bomb.tgz", 1100 * 1024 * 1024).read_bytes()
    assert len(data) < 1.5 * 1024 * 1024
    end = await deploy_archive(running, app, data)
    assert isinstance(end, DeployFailed) and end.data.status == "build-error", end
    assert "member 'bomb.bin'" in end.data.reason
    assert "(limit: DOCKYARD_ARCHIVE_MAX_BYTES = 536870912)" in end.data.reason


async def test_fifty_thousand_files_are_a_build_error_naming_the_entry_limit(
        attacked: Attacked) -> None:
    running = attacked.running
    app = running.app_name("many")
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as out:
        for i in range(50_000):
            out.write(tarfile.TarInfo(f"f{i}").tobuf(format=tarfile.USTAR_FORMAT))
        out.write(bytes(1024))
    started = time.monotonic()
    end = await deploy_archive(running, app, raw.getvalue())
    assert isinstance(end, DeployFailed) and end.data.status == "build-error", end
    assert ("member 'f20000' is one entry too many (limit: DOCKYARD_ARCHIVE_MAX_ENTRIES = "
            "20000)") in end.data.reason
    assert time.monotonic() - started < 60


# ------------------------------------------------------------------ output and plans


def _runs(attacked: Attacked, texts: list[str], marker: str, count_file: Path) -> int:
    """How many times a command ran: its marker line in the log, and (process runtime, which
    can write to the host) the lines it appended to a file."""
    in_log = sum(1 for t in texts if t == marker)
    if attacked.running.runtime == "process":
        assert count_file.read_text().count("run\n") == in_log, "file and log disagree"
    return in_log


def _counting(marker: str, count_file: Path) -> str:
    return f"echo {marker}; (echo run >> {count_file}) 2>/dev/null || true"


async def test_a_passed_postdeploy_with_endless_output_ends_the_deploy_once(
        attacked: Attacked) -> None:
    running = attacked.running
    app = running.app_name("chatty")
    marker, count_file = f"RUN-{new_id()}", attacked.shared / f"{app}.runs"
    postdeploy = (f"{_counting(marker, count_file)}; "
                  "yes 'a line of output that goes on and on' | head -c 16000000; exit 0")
    src = make_app(attacked.tmp / app, running.runtime, "v1", postdeploy=postdeploy)
    end = await running.client.deploy(app, src, Followers(), wait=WAIT)
    assert isinstance(end, DeploySucceeded), end
    texts = await texts_of(running, end.deployment_id)
    assert _runs(attacked, texts, marker, count_file) == 1
    assert texts.count("===== postdeploy =====") == 1
    cut_lines = [t for t in texts if t.startswith("[… ") and "lines truncated" in t]
    assert len(cut_lines) == 1 and cut_lines[0].endswith(
        "this deployment's log reached its 1,048,576-byte limit (DOCKYARD_LOG_MAX_BYTES)]")
    assert sum(len(t.encode()) for t in texts) < LOG_LIMIT + 64 * 1024
    finished = [e for e in await running.client.events(app, idle=0.3)
                if isinstance(e, CommandFinished) and e.deployment_id == end.deployment_id]
    assert [f.data.exit_code for f in finished] == [0]
    assert sum(len(t.encode()) + 1 for t in finished[0].data.tail) <= 16 * 1024
    await assert_lock_free(running, app)


async def test_thirty_long_lines_then_exit_1_end_the_deploy_once(attacked: Attacked) -> None:
    running = attacked.running
    app = running.app_name("longlines")
    marker, count_file = f"RUN-{new_id()}", attacked.shared / f"{app}.runs"
    postdeploy = (f"{_counting(marker, count_file)}; for i in $(seq 30); do "
                  "yes a | head -c 60000 | tr -d '\\n'; echo; done; exit 1")
    src = make_app(attacked.tmp / app, running.runtime, "v1", postdeploy=postdeploy)
    end = await running.client.deploy(app, src, Followers(), wait=WAIT)
    assert isinstance(end, DeployFailed) and end.data.status == "hook-error", end
    assert end.data.exit_code == 1
    assert sum(len(t.encode()) + 1 for t in end.data.tail) <= 16 * 1024
    assert all(len(t.encode()) <= 1024 for t in end.data.tail)
    texts = await texts_of(running, end.deployment_id)
    assert _runs(attacked, texts, marker, count_file) == 1
    assert texts.count("===== postdeploy =====") == 1
    events = [e for e in await running.client.events(app, idle=0.3)
              if e.deployment_id == end.deployment_id]
    assert [type(e) for e in events if isinstance(e, DeployFailed | DeploySucceeded)] == [
        DeployFailed]
    assert all(len(codec.encode(e)) < 64 * 1024 for e in events)
    await assert_lock_free(running, app)


async def test_a_procfile_making_a_plan_over_the_payload_limit_is_one_build_error(
        attacked: Attacked) -> None:
    running = attacked.running
    app = running.app_name("bigplan")
    src = make_app(attacked.tmp / app, running.runtime, "v1")
    web = (src / "Procfile").read_text().splitlines()[0]
    (src / "Procfile").write_text(f"{web}\npostdeploy: echo {chr(1) * 200_000}\n")
    end = await running.client.deploy(app, src, Followers(), wait=120)
    assert isinstance(end, DeployFailed) and end.data.status == "build-error", end
    assert "bytes as JSON (at most 131,072)" in end.data.reason
    await until(lambda: settled(running, subjects.STREAM_COMMANDS, "builder-deploy"),
                "the builder acked the request")
    texts = await texts_of(running, end.deployment_id)
    assert texts.count("===== build =====") == 1
    await assert_lock_free(running, app)


# ------------------------------------------------------------------ secrets


TOKEN = "tok_9f8e7d6c5b4a?>~"
DB_URL = "postgres://shopuser:Sup3rS3cret@db.internal:5432/shop"


def _leaks() -> list[str]:
    b64 = base64.b64encode
    return [TOKEN, "shopuser", "Sup3rS3cret",
            b64(TOKEN.encode()).decode().rstrip("="),
            base64.urlsafe_b64encode(TOKEN.encode()).decode().rstrip("="),
            b64(f"API_TOKEN={TOKEN}".encode()).decode()[16:],
            quote(TOKEN, safe="")]


async def test_encoded_secrets_reach_no_log_event_store_or_webhook(attacked: Attacked) -> None:
    running = attacked.running
    app = running.app_name("secrets")
    await running.client.config_change(app, {"API_TOKEN": TOKEN, "DATABASE_URL": DB_URL}, [])
    postdeploy = ('printf %s "$API_TOKEN" | base64; '
                  "printf 'API_TOKEN=%s' \"$API_TOKEN\" | base64; "
                  "printf %s \"$API_TOKEN\" | base64 | tr '+/' '-_'; "
                  "printf '%s\\n' \"$API_TOKEN\" | sed 's/?/%3F/g; s/>/%3E/g'; "
                  "echo \"$DATABASE_URL\" | sed 's|.*://\\([^:]*\\):\\([^@]*\\)@.*|user=\\1 "
                  "password=\\2|'; exit 1")
    src = make_app(attacked.tmp / app, running.runtime, "v1", postdeploy=postdeploy)
    end = await running.client.deploy(app, src, Followers(), wait=WAIT)
    assert isinstance(end, DeployFailed) and end.data.status == "hook-error", end
    dep = end.deployment_id

    texts = await texts_of(running, dep)
    assert sum(t.startswith("[REDACTED]") for t in texts) >= 4, texts
    assert "user=[REDACTED] password=[REDACTED]" in texts
    raw: list[bytes] = []

    async def keep(data: bytes) -> None:
        raw.append(data)

    await running.client.raw_events(app, keep, follow=False)
    failed = [json.loads(r) for r in raw if b'"dockyard.hook.failed"' in r]
    assert failed and "user=[REDACTED] password=[REDACTED]" in failed[0]["data"]["tail"]
    stored = await until(lambda: _api_status(running, dep, "hook-error"), "the api has it")
    stored_events = await api_get(running, f"/deployments/{dep}/events")

    async def delivered() -> list[bytes] | None:
        bodies = [b for b in attacked.receiver.bodies if dep.encode() in b]
        types = {json.loads(b)["type"] for b in bodies}
        return bodies if {"dockyard.hook.failed", "dockyard.deploy.failed"} <= types else None

    bodies = await until(delivered, "the webhook got hook.failed and deploy.failed")
    places = {"log": "\n".join(texts), "events": b"\n".join(raw).decode(),
              "store": json.dumps([stored, stored_events]),
              "webhook": b"\n".join(bodies).decode()}
    for where, text in places.items():
        for leak in _leaks():
            assert leak not in text, f"{leak!r} reached the {where}"

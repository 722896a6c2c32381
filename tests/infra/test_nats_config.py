"""infra/nats: a real nats-server with server.conf and the auth.conf `dockyard bus init`
generates, each service as its own identity with its generated permissions."""

from __future__ import annotations

import asyncio
import http.server
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError

from dockyard.bus.auth import (
    ROUTE_USER,
    Credentials,
    public_key,
    route_password,
    route_urls,
    write_auth_conf,
    write_routes_conf,
)
from dockyard.bus.embedded import free_port
from dockyard.bus.service import SERVICES, RunningService, start_service
from dockyard.bus.topology import STREAM_FEED
from dockyard.client import DockyardClient, Followers
from dockyard.contract import subjects
from dockyard.contract.events import DeployFailed, DeploySucceeded
from dockyard.settings import Settings
from dockyard.stack import identities, provision_as_admin
from tests.cluster_support import provision_when_ready
from tests.runtime.process_support import reachable_tmp, remove_process_app

REPO = Path(__file__).resolve().parents[2]
NATS_DIR = REPO / "infra" / "nats"
SERVER_CONF = NATS_DIR / "server.conf"
CLUSTER_CONFS = sorted((NATS_DIR / "cluster").glob("*.conf"))
NATS_SERVER = Path(sys.executable).parent / "nats-server"
IDENTITIES = (*SERVICES, "cli", "reader", "admin")
VIOLATION = "Violation"
STORE_LINE = 'store_dir: "/data/jetstream"'


@dataclass
class Server:
    """A running nats-server started from one of infra/nats's config files."""

    process: subprocess.Popen[bytes]
    port: int
    monitor: int
    log: Path
    keys: Path

    @property
    def url(self) -> str:
        """nats:// URL (no credentials: those are seeds)."""
        return f"nats://127.0.0.1:{self.port}"

    def settings(self, base: Settings) -> Settings:
        """Settings pointing at this server and its generated seeds."""
        return replace(base, nats_url=self.url, nats_keys=self.keys)

    def log_text(self) -> str:
        """What the server logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """Stop it and wait."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def stage(conf: Path, workdir: Path, keys: Path) -> Path:
    """A copy of infra/nats under workdir, with the auth.conf and routes.conf `dockyard bus
    init` writes into keys, whose conf keeps its store under workdir too.

    nats-server refuses -sd when the file sets store_dir, so the one line is rewritten."""
    copy = workdir / "conf"
    shutil.copytree(NATS_DIR, copy, dirs_exist_ok=True)
    shutil.copy(write_auth_conf(keys, identities()), copy / "auth.conf")
    shutil.copy(write_routes_conf(keys), copy / "routes.conf")
    staged = copy / conf.relative_to(NATS_DIR)
    text = staged.read_text()
    assert text.count(STORE_LINE) == 1, f"{conf} should set {STORE_LINE} once"
    staged.write_text(text.replace(STORE_LINE, f'store_dir: "{workdir / "jetstream"}"'))
    return staged


def start_server(conf: Path, workdir: Path, *extra: str, keys: Path | None = None) -> Server:
    """nats-server -c conf on free loopback ports (flags win) with its store under workdir;
    the identities' seeds in keys (made there unless they exist: a cluster shares one)."""
    workdir.mkdir(parents=True, exist_ok=True)
    keys = keys or workdir / "bus"
    port, monitor = free_port(), free_port()
    log = workdir / "nats.log"
    staged = stage(conf, workdir, keys)
    process = subprocess.Popen(
        [str(NATS_SERVER), "-c", str(staged), "-a", "127.0.0.1", "-p", str(port),
         "-m", str(monitor), "-l", str(log), *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = Server(process=process, port=port, monitor=monitor, log=log, keys=keys)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            pytest.fail(f"nats-server exited {process.returncode}: {err}{server.log_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{monitor}/varz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    pytest.fail(f"nats-server did not answer:\n{server.log_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The single server of compose.yaml, from infra/nats/server.conf."""
    s = start_server(SERVER_CONF, tmp_path_factory.mktemp("nats"))
    yield s
    s.stop()


@dataclass
class Conn:
    """A connection as one user, recording the permission errors the server sends back."""

    nc: Client
    errors: list[str] = field(default_factory=list)

    async def close(self) -> None:
        await self.nc.close()


async def connect(server: Server, identity: str) -> Conn:
    """Connect as an identity, collecting async errors instead of logging them."""
    conn = Conn(nc=None)  # type: ignore[arg-type]

    async def on_error(exc: Exception) -> None:
        conn.errors.append(str(exc))

    conn.nc = await nats.connect(server.url, error_cb=on_error, allow_reconnect=False,
                                 connect_timeout=5,
                                 **Credentials.load(server.keys, identity).options())
    return conn


async def provision_as_operator(server: Server, replicas: int = 1) -> None:
    """Provision as admin, as `dockyard bus init --nats-url` does (services never do)."""
    await provision_as_admin(server.settings(Settings()), replicas)


async def can_js_publish(server: Server, user: str, subject: str) -> tuple[bool, list[str]]:
    """Publish to JetStream as user: True when the stream acknowledged it."""
    conn = await connect(server, user)
    try:
        try:
            await conn.nc.jetstream().publish(subject, b"{}", timeout=1.5)
            ok = True
        except nats.errors.TimeoutError:
            ok = False
        await conn.nc.flush()
        return ok, conn.errors
    finally:
        await conn.close()


# ------------------------------------------------------------------ static validity


def test_every_config_file_is_valid(tmp_path: Path) -> None:
    """`nats-server -t` accepts server.conf and each cluster node's config, with the generated
    auth.conf beside them; without it the server refuses to start (no open fallback)."""
    assert len(CLUSTER_CONFS) == 3, CLUSTER_CONFS
    assert not (NATS_DIR / "accounts.conf").exists()
    for conf in (SERVER_CONF, *CLUSTER_CONFS):
        staged = stage(conf, tmp_path / conf.stem, tmp_path / "bus")
        proc = subprocess.run([str(NATS_SERVER), "-t", "-c", str(staged)],
                              capture_output=True, text=True, timeout=30, check=False)
        assert proc.returncode == 0, f"{conf}: {proc.stdout}{proc.stderr}"
        assert "is valid" in proc.stdout + proc.stderr
        (staged.parent / "auth.conf").unlink(missing_ok=True)
        (tmp_path / conf.stem / "conf" / "auth.conf").unlink(missing_ok=True)
        proc = subprocess.run([str(NATS_SERVER), "-t", "-c", str(staged)],
                              capture_output=True, text=True, timeout=30, check=False)
        assert proc.returncode != 0 and "auth.conf" in proc.stdout + proc.stderr, conf


def test_every_identity_is_a_user_and_nothing_else_connects(server: Server) -> None:
    """auth.conf has one NKey user per identity; no credentials, or an unknown seed, is refused."""
    text = (server.keys / "auth.conf").read_text()
    assert text.count('"nkey"') == len(IDENTITIES)
    for identity in IDENTITIES:
        assert Credentials.load(server.keys, identity).seed not in text  # public keys only

    async def check() -> None:
        with pytest.raises((nats.errors.NoServersError, nats.errors.Error)):
            await nats.connect(server.url, allow_reconnect=False, connect_timeout=3,
                               max_reconnect_attempts=0)
        stranger = server.keys.parent / "stranger"
        write_auth_conf(stranger, identities())
        with pytest.raises((nats.errors.NoServersError, nats.errors.Error)):
            await nats.connect(server.url, allow_reconnect=False, connect_timeout=3,
                               max_reconnect_attempts=0,
                               **Credentials.load(stranger, "cli").options())

    asyncio.run(check())


# ------------------------------------------------------------------ who may publish what

PUBLISH_CASES = [
    # (user, subject, allowed)
    ("notifier", subjects.CMD_DEPLOY, False),
    ("notifier", subjects.event("shop", "build", "succeeded"), False),
    ("notifier", subjects.event("shop", "notification", "delivered"), True),
    ("builder", subjects.event("shop", "build", "succeeded"), True),
    ("builder", subjects.event("shop", "deploy", "queued"), True),
    ("builder", subjects.event("shop", "hook", "succeeded"), False),
    ("builder", subjects.CMD_DEPLOY, False),
    ("hook-runner", subjects.event("shop", "hook", "succeeded"), True),
    ("hook-runner", subjects.event("shop", "traffic", "switched"), False),
    ("scheduler", subjects.event("shop", "start", "succeeded"), True),
    ("scheduler", subjects.event("shop", "hook", "succeeded"), False),
    ("router", subjects.event("shop", "traffic", "switched"), True),
    ("router", subjects.event("shop", "build", "succeeded"), False),
    ("api", subjects.event("shop", "deploy", "succeeded"), False),
    ("api", subjects.dlq("api"), True),
    ("api", subjects.dlq("builder"), False),
    ("cli", subjects.CMD_DEPLOY, True),
    ("cli", subjects.CMD_CANCEL, True),
    ("cli", subjects.event("shop", "deploy", "succeeded"), False),
    ("reader", subjects.CMD_DEPLOY, False),
    ("reader", subjects.event("shop", "deploy", "succeeded"), False),
    ("admin", subjects.CMD_DEPLOY, False),
    ("admin", subjects.event("shop", "hook", "succeeded"), False),
]


@pytest.mark.parametrize(("user", "subject", "allowed"), PUBLISH_CASES,
                         ids=[f"{u}-{s}" for u, s, _ in PUBLISH_CASES])
def test_publish_permissions(server: Server, user: str, subject: str, allowed: bool) -> None:
    """Each user reaches exactly the subjects its service publishes."""

    async def check() -> None:
        await provision_as_operator(server)
        ok, errors = await can_js_publish(server, user, subject)
        assert ok is allowed, (user, subject, errors)
        if not allowed:
            assert any("permissions violation" in e.lower() and subject in e for e in errors), \
                errors

    asyncio.run(check())


def test_router_routes_are_the_routers_alone(server: Server) -> None:
    """Only the router writes the live/pending route records; the builder writes the queue."""

    async def check() -> None:
        await provision_as_operator(server)
        for user, bucket, key, allowed in (
                ("hook-runner", subjects.KV_ROUTES, "live.shop", False),
                ("builder", subjects.KV_ROUTES, "live.shop", False),
                ("scheduler", subjects.KV_ROUTES, "pending.shop", False),
                ("router", subjects.KV_ROUTES, "live.shop", True),
                ("router", subjects.KV_ROUTES, "pending.shop", True),
                ("builder", subjects.KV_QUEUE, "shop", True),
                ("router", subjects.KV_QUEUE, "shop", False)):
            conn = await connect(server, user)
            try:
                try:  # a bucket it has no door to does not even open
                    kv = await conn.nc.jetstream().key_value(bucket)
                    await kv.put(key, b"x")
                    ok = True
                except nats.errors.TimeoutError:
                    ok = False
                assert ok is allowed, (user, bucket, key, conn.errors)
            finally:
                await conn.close()

    asyncio.run(check())


def test_maintenance_is_written_by_the_cli_and_the_api_alone(server: Server) -> None:
    """The cli and the api turn maintenance on and off; the router only reads it. The builder
    purges an app's record when it destroys the app: NATS grants a purge as a publish on the
    key's subject, so that grant would let it write a record too (it can never read one)."""

    async def check() -> None:
        await provision_as_operator(server)
        for user, allowed in (("cli", True), ("api", True), ("router", False),
                              ("scheduler", False), ("builder", True), ("hook-runner", False),
                              ("notifier", False)):
            conn = await connect(server, user)
            try:
                try:
                    kv = await conn.nc.jetstream().key_value(subjects.KV_MAINTENANCE)
                    await kv.put("shop", b"x")
                    ok = True
                except nats.errors.TimeoutError:
                    ok = False
                assert ok is allowed, (user, conn.errors)
            finally:
                await conn.close()
        conn = await connect(server, "router")
        try:  # the router reads it (and watches it)
            kv = await conn.nc.jetstream().key_value(subjects.KV_MAINTENANCE)
            assert (await kv.get("shop")).value == b"x"
        finally:
            await conn.close()

    asyncio.run(check())


def test_a_reader_reads_events_but_not_the_services_consumers(server: Server) -> None:
    """External subscribers follow events (ordered consumer on the mirror); they cannot take
    over a durable nor delete a stream."""

    async def check() -> None:
        await provision_as_operator(server)
        subject = subjects.event("watched", "build", "succeeded")
        ok, _ = await can_js_publish(server, "builder", subject)
        assert ok
        conn = await connect(server, "reader")
        try:
            js = conn.nc.jetstream()
            got: asyncio.Queue[str] = asyncio.Queue()

            async def on_msg(msg: Msg) -> None:
                await got.put(msg.subject)

            sub = await js.subscribe(subjects.app_events("watched"), cb=on_msg,
                                     ordered_consumer=True, stream=STREAM_FEED)
            assert await asyncio.wait_for(got.get(), 5) == subject
            await sub.unsubscribe()
            with pytest.raises(nats.errors.TimeoutError):
                await js.pull_subscribe(subjects.EVT_ALL, "notifier-all",
                                        stream=subjects.STREAM_EVENTS)
            with pytest.raises(nats.errors.TimeoutError):
                await js.delete_stream(subjects.STREAM_EVENTS)
        finally:
            await conn.close()

    asyncio.run(check())


# ------------------------------------------------------------------ the services, for real


class _Sink(http.server.BaseHTTPRequestHandler):
    """A webhook receiver answering 200, so the notifier publishes its delivery events."""

    hits: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    """A local webhook URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/hook"
    httpd.shutdown()
    httpd.server_close()


def write_app(root: Path, postdeploy: str) -> Path:
    """A process-runtime app: a static web process, a release and a postdeploy command."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text("hello\n")
    (root / "Procfile").write_text(
        "web: exec python3 -m http.server $PORT --bind 127.0.0.1\n"
        "release: echo releasing $DOCKYARD_RELEASE\n"
        f"postdeploy: {postdeploy}\n")
    return root


@pytest.fixture
async def own_server(tmp_path: Path) -> AsyncIterator[Server]:
    """A fresh server whose log holds only what the services below do."""
    s = start_server(SERVER_CONF, tmp_path / "nats")
    yield s
    s.stop()


@pytest.mark.timeout(240)
async def test_every_service_runs_whole_deploys_as_its_own_user(
        own_server: Server, tmp_path: Path, webhook: str) -> None:
    """Six services, each with its own user, deploy, reconfigure, fail a hook, cancel and
    dead-letter without a single permission violation; each connection is its service's user."""
    base = Settings.from_env(env={}, data_dir=tmp_path / "data", http_port=free_port(),
                             runtime="process", drain=0.2, kill_grace=2.0,
                             webhook_url=webhook, apps_dir=reachable_tmp("dockyard-apps-"))
    running: list[RunningService] = []
    client: DockyardClient | None = None
    try:
        # The operator provisions the bus; each service then runs as its own user.
        await provision_as_operator(own_server)
        for name in SERVICES:
            running.append(await start_service(name, own_server.settings(base)))
        client = await DockyardClient.connect(own_server.settings(base))

        app = "permitted"
        src = write_app(tmp_path / "src", "echo postdeploy ok")
        first = await client.deploy(app, src, Followers(), wait=120)
        assert isinstance(first, DeploySucceeded), first

        # A config change: the builder reads the stored build back, hooks read the config.
        await client.config_change(app, {"GREETING": "hello"}, [])
        second = await client.deploy(app, None, Followers(), kind="config", wait=120)
        assert isinstance(second, DeploySucceeded), second

        write_app(src, "exit 3")
        third = await client.deploy(app, src, Followers(), wait=120)
        assert isinstance(third, DeployFailed) and third.data.status == "hook-error", third

        await client.cancel(app, "0" * 32, "checking the builder may mark cancels")
        await client.js.publish(subjects.CMD_DEPLOY, b"not json",
                                headers={"Nats-Msg-Id": "garbage-1"})
        dlq = await client.js.subscribe(subjects.dlq("builder"), ordered_consumer=True,
                                        stream=subjects.STREAM_DLQ)
        assert b"undecodable" in (await dlq.next_msg(timeout=15)).data
        await dlq.unsubscribe()
        # Cancel markers are the builder's to read: looked at as the builder.
        builder = await connect(own_server, "builder")
        try:
            cancels = await builder.nc.jetstream().key_value(subjects.KV_CANCEL)
            for _ in range(50):
                try:
                    await cancels.get("0" * 32)
                    break
                except KeyNotFoundError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("the builder did not record the cancel marker")
        finally:
            await builder.close()
        await asyncio.sleep(1.0)  # the notifier's last deliveries of the failed deploy

        async with httpx.AsyncClient(timeout=5) as http:
            connz = (await http.get(
                f"http://127.0.0.1:{own_server.monitor}/connz?auth=true")).json()
        users = {c.get("name"): c.get("authorized_user") for c in connz["connections"]}
        for name in SERVICES:
            key = public_key(Credentials.load(own_server.keys, name).seed)
            assert users.get(f"dockyard-{name}") == key, (name, users)
        assert users.get("dockyard-cli") == public_key(Credentials.load(own_server.keys,
                                                                        "cli").seed)
    finally:
        if client is not None:
            await client.close()
        for service in reversed(running):
            await service.stop()
        await remove_process_app(base, "permitted")
    assert _Sink.hits, "the notifier delivered nothing"
    violations = [line for line in own_server.log_text().splitlines() if VIOLATION in line]
    assert not violations, "\n".join(violations)


# ------------------------------------------------------------------ the 3-node cluster


def routez(server: Server) -> list[str]:
    """The names of the servers this one has routes to."""
    routes = httpx.get(f"http://127.0.0.1:{server.monitor}/routez", timeout=5).json()
    return sorted({r.get("remote_name", "") for r in routes.get("routes") or []})


@pytest.mark.timeout(120)
def test_the_three_node_cluster_forms_and_replicates(tmp_path: Path) -> None:
    """The cluster configs, with local ports and routes, elect a leader and keep 3 replicas;
    their routes are authenticated: a node without the route credentials joins nothing."""
    keys = tmp_path / "bus"
    cluster_ports = [free_port() for _ in CLUSTER_CONFS]
    # Flags override the file's cluster block, credentials included: they ride in the URLs,
    # as routes.conf's do.
    routes = ",".join(route_urls(route_password(keys), (f"127.0.0.1:{p}" for p in cluster_ports)))
    nodes = []
    try:
        for conf, cport in zip(CLUSTER_CONFS, cluster_ports, strict=True):
            # One `dockyard bus init` for the three nodes: the same identities everywhere.
            listen = route_urls(route_password(keys), [f"127.0.0.1:{cport}"])[0]
            nodes.append(start_server(conf, tmp_path / conf.stem, "--cluster", listen,
                                      "--routes", routes, keys=keys))

        async def check() -> None:
            await provision_when_ready(nodes[0].settings(Settings()), replicas=3)
            ok, errors = await can_js_publish(nodes[0], "builder",
                                              subjects.event("shop", "build", "started"))
            assert ok, errors
            admin = await connect(nodes[2], "admin")
            try:
                info = await admin.nc.jetstream().stream_info(subjects.STREAM_EVENTS)
                assert info.cluster is not None and info.cluster.name == "dockyard"
                assert len(info.cluster.replicas or []) == 2
                assert info.state.messages == 1
            finally:
                await admin.close()

        asyncio.run(check())
        names = [f"n{i}" for i in (1, 2, 3)]
        assert routez(nodes[0]) == names[1:]
        # A fourth node with the right identities but a wrong route password is refused.
        wrong = ",".join(f"nats-route://{ROUTE_USER}:wrong@127.0.0.1:{p}" for p in cluster_ports)
        intruder = start_server(CLUSTER_CONFS[0], tmp_path / "intruder", "--name", "intruder",
                                "--cluster", f"nats://127.0.0.1:{free_port()}",
                                "--routes", wrong, keys=keys)
        nodes.append(intruder)
        deadline = time.monotonic() + 10
        while "Router connection closed: Authentication Failure" not in nodes[0].log_text():
            assert time.monotonic() < deadline, nodes[0].log_text()[-2000:]
            time.sleep(0.1)
        assert routez(intruder) == [] and "intruder" not in routez(nodes[0])
    finally:
        for node in nodes:
            node.stop()

"""compose.yaml: what `docker compose config` makes of it, then the whole stack up for real,
with the identities `dockyard bus init` generates."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from dockyard.bus.auth import Credentials, seed_path, write_auth_conf
from dockyard.bus.embedded import free_port
from dockyard.bus.service import SERVICES, declaration
from dockyard.client import DockyardClient, Followers
from dockyard.contract import subjects
from dockyard.contract.events import DeploySucceeded
from dockyard.runtime.select import Runtimes
from dockyard.settings import Settings
from dockyard.stack import identities, provision_as_admin
from tests.docker_support import ensure_test_image, require_docker
from tests.infra.test_dockerfile import IMAGE, build_image

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose.yaml"
IN_CI = bool(os.environ.get("CI"))
OUR_IMAGE = "dockyard:local"
SOCKET = "/var/run/docker.sock"
WITH_SOCKET = {"builder", "scheduler", "hook-runner"}
HOST_NETWORK = {"router", "scheduler"}
# Listening on no port: any number of each can run (`--scale`).
SCALABLE = {"builder", "hook-runner", "scheduler", "notifier"}
NATS_IMAGE = "dockyard-test/nats:local"
NATS_BIN = Path(sys.executable).parent / "nats-server"
SEEDS_IN = "/run/dockyard-bus"
IMAGE_USER = 10001  # infra/Dockerfile's `dockyard` user


# ------------------------------------------------------------------ the compose tool


def compose_command() -> list[str]:
    """`docker compose` (v2) or `docker-compose`; skip (fail with CI set) when neither exists."""
    try:
        if subprocess.run(["docker", "compose", "version"], capture_output=True,
                          timeout=30, check=False).returncode == 0:
            return ["docker", "compose"]
    except OSError:
        pass
    path = shutil.which("docker-compose")
    if path:
        return [path]
    why = "neither `docker compose` nor `docker-compose` exists"
    if IN_CI:
        pytest.fail(f"CI is set but {why} (apt-get install docker-compose)", pytrace=False)
    pytest.skip(f"{why}; CI is unset, so this is not a failure")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any of compose.yaml's variables, plus extra."""
    ours = ("DOCKYARD_", "DOCKER_GID", "COMPOSE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env.update(extra)
    return env


def _yaml_to_json(tool: list[str], text: str) -> Any:
    """compose v1 prints YAML only; its own interpreter has PyYAML (compose v1 is built on it)."""
    first = Path(tool[0]).read_text(errors="replace").splitlines()[0]
    assert first.startswith("#!"), f"{tool[0]} prints YAML and is not a Python script"
    interpreter = shlex.split(first[2:])
    proc = subprocess.run(
        [*interpreter, "-c",
         "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
        input=text, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def compose_config(env: dict[str, str] | None = None) -> dict[str, Any]:
    """`compose config` of compose.yaml, as a dict (it fails on an invalid file)."""
    tool = compose_command()
    env = clean_env() if env is None else env
    base = [*tool, "-f", str(COMPOSE), "config"]
    proc = subprocess.run([*base, "--format", "json"], capture_output=True, text=True,
                          timeout=60, check=False, env=env, cwd=REPO)
    # compose v1 has no --format: it prints its usage (and exits 0), so look at the output.
    if proc.returncode == 0 and proc.stdout.lstrip().startswith("{"):
        return json.loads(proc.stdout)  # type: ignore[no-any-return]
    proc = subprocess.run(base, capture_output=True, text=True, timeout=60, check=False,
                          env=env, cwd=REPO)
    assert proc.returncode == 0, f"compose.yaml is not valid:\n{proc.stderr}"
    return _yaml_to_json(tool, proc.stdout)  # type: ignore[no-any-return]


def host_ports(service: dict[str, Any]) -> list[str]:
    """Host ports a service publishes (short "ip:host:container" or long form)."""
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            published = str(port.get("published") or "")
        else:
            parts = str(port).split("/")[0].split(":")
            published = parts[-2] if len(parts) >= 2 else ""
        if published:
            out.append(published)
    return out


def binds(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume (short or long form)."""
    out = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, dict):
            out.append((str(vol.get("source", "")), str(vol.get("target", ""))))
        else:
            source, target = str(vol).split(":")[:2]
            out.append((source, target))
    return out


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """compose.yaml with every variable at its default."""
    return compose_config()


def dockyard_services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in config["services"].items() if name != "nats"}


# ------------------------------------------------------------------ what the file says


def test_the_file_is_valid_and_has_nats_and_the_six_services(config: dict[str, Any]) -> None:
    """`compose config` accepts it: exactly nats plus one service per dockyard service."""
    assert set(config["services"]) == {"nats", *SERVICES}


def test_each_service_runs_dockyard_service_its_name_from_our_image(
        config: dict[str, Any]) -> None:
    """Built from infra/Dockerfile as dockyard:local; command `service <name>`; the image's
    entrypoint (dockyard) kept; restarted unless stopped."""
    for name, svc in dockyard_services(config).items():
        assert name in SERVICES
        assert svc["image"] == OUR_IMAGE, name
        build = svc["build"]
        assert Path(build["context"]).resolve() == REPO, name
        assert build.get("dockerfile") == "infra/Dockerfile", name
        assert svc["command"] == ["service", name], name
        assert "entrypoint" not in svc, name
        assert svc.get("restart") == "unless-stopped", name
        env = svc["environment"]
        assert env["DOCKYARD_DATA_DIR"] == "/data", name
        assert env["DOCKYARD_NATS_KEYS"] == SEEDS_IN, name
        if name in WITH_SOCKET:
            assert env["DOCKYARD_RUNTIME"] == "docker", name


def test_only_builder_scheduler_and_hook_runner_get_the_docker_socket(
        config: dict[str, Any]) -> None:
    """The socket is root on the host: the three services that drive the engine, no other."""
    for name, svc in config["services"].items():
        has = any(source == SOCKET for source, _ in binds(svc))
        assert has is (name in WITH_SOCKET), name
        if has:
            assert svc.get("group_add"), f"{name}: the non-root user needs the socket's group"


def test_no_container_names_and_scalable_services_bind_no_host_port(
        config: dict[str, Any]) -> None:
    """`--scale` works: no service names its container, and the services that can run many
    times (builder, hook-runner, scheduler, notifier) publish no fixed host port."""
    for name, svc in config["services"].items():
        assert "container_name" not in svc, name
    for name in SCALABLE:
        assert not host_ports(config["services"][name]), name


def test_each_service_mounts_its_own_seed_and_nothing_else_of_the_bus_dir(
        config: dict[str, Any]) -> None:
    """A service's identity is its seed, read-only, alone; no URL carries a password."""
    bus_dir = (REPO / ".dockyard" / "bus").resolve()
    for name, svc in dockyard_services(config).items():
        from_bus = [(Path(source).resolve(), target) for source, target in binds(svc)
                    if Path(source).resolve().is_relative_to(bus_dir)]
        assert from_bus == [(bus_dir / f"{name}.nk", f"{SEEDS_IN}/{name}.nk")], (name, from_bus)
        assert "@" not in svc["environment"]["DOCKYARD_NATS_URL"], name


def test_router_and_scheduler_share_the_hosts_network_and_reach_nats_on_loopback(
        config: dict[str, Any]) -> None:
    """Instances publish on the host's 127.0.0.1: the router (proxy) and the scheduler (health
    checks) run in the host's network and reach NATS on its loopback-published port."""
    services = config["services"]
    nats_ports = host_ports(services["nats"])
    assert nats_ports == ["4222"]
    assert all(str(p.get("host_ip", "127.0.0.1")) == "127.0.0.1" if isinstance(p, dict)
               else str(p).startswith("127.0.0.1:") for p in services["nats"]["ports"])
    for name, svc in dockyard_services(config).items():
        url = svc["environment"]["DOCKYARD_NATS_URL"]
        if name in HOST_NETWORK:
            assert svc.get("network_mode") == "host", name
            assert url == "nats://127.0.0.1:4222", (name, url)
        else:
            assert svc.get("network_mode") in (None, "default", "bridge") or \
                "network_mode" not in svc, name
            assert url == "nats://nats:4222", (name, url)
    assert services["router"]["environment"]["DOCKYARD_HTTP_PORT"] == "8080"
    assert not host_ports(services["router"])  # host network: it binds 8080 itself
    assert host_ports(services["api"]) == ["8000"]


def test_nats_runs_server_conf_with_the_generated_auth_and_jetstream_on_a_volume(
        config: dict[str, Any]) -> None:
    """nats: infra/nats/server.conf and the generated auth.conf (read-only), -c server.conf,
    an encrypted store on a named volume; no password anywhere."""
    nats = config["services"]["nats"]
    assert nats["command"] == ["-c", "/etc/nats/server.conf"]
    mounts = {target: source for source, target in binds(nats)}
    assert Path(mounts["/etc/nats/server.conf"]).resolve() == REPO / "infra/nats/server.conf"
    assert Path(mounts["/etc/nats/auth.conf"]).resolve() == REPO / ".dockyard/bus/auth.conf"
    assert not mounts["/data"].startswith("/")  # a named volume
    server_conf = (REPO / "infra/nats/server.conf").read_text()
    for line in ('include "auth.conf"', 'store_dir: "/data/jetstream"', "cipher: chachapoly",
                 "key: $DOCKYARD_JS_KEY"):
        assert line in server_conf, line
    assert not nats.get("environment"), nats.get("environment")
    assert not (REPO / "infra/nats/accounts.conf").exists()


def test_bus_dir_and_ports_follow_the_environment() -> None:
    """DOCKYARD_BUS_DIR moves every seed and auth.conf; ports and the socket's group move."""
    config = compose_config(clean_env(DOCKYARD_BUS_DIR="/srv/dockyard-bus",
                                      DOCKYARD_NATS_PORT="14222", DOCKER_GID="4321"))
    services = config["services"]
    assert ("/srv/dockyard-bus/auth.conf", "/etc/nats/auth.conf") in binds(services["nats"])
    assert ("/srv/dockyard-bus/builder.nk", f"{SEEDS_IN}/builder.nk") in \
        binds(services["builder"])
    assert services["router"]["environment"]["DOCKYARD_NATS_URL"] == "nats://127.0.0.1:14222"
    assert host_ports(services["nats"]) == ["14222"]
    assert [str(g) for g in services["builder"]["group_add"]] == ["4321"]


# ------------------------------------------------------------------ the stack, for real


def ensure_nats_image() -> str:
    """A registry-free stand-in for nats:2.10-alpine: this environment's static nats-server."""
    digest = hashlib.sha256(NATS_BIN.read_bytes()).hexdigest()[:16]
    label = subprocess.run(["docker", "image", "inspect", "-f",
                            '{{ index .Config.Labels "dockyard.test.nats" }}', NATS_IMAGE],
                           capture_output=True, text=True, timeout=60, check=False)
    if label.returncode == 0 and label.stdout.strip() == digest:
        return NATS_IMAGE
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(NATS_BIN, arcname="nats-server")
        for name in ("tmp", "data"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(info)
    proc = subprocess.run(["docker", "import", "--change", 'ENTRYPOINT ["/nats-server"]',
                           "--change", f"LABEL dockyard.test.nats={digest}", "-", NATS_IMAGE],
                          input=buf.getvalue(), capture_output=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return NATS_IMAGE


def write_app(root: Path, image: str) -> Path:
    """An app for the docker runtime: busybox httpd answering `app v1`, one postdeploy."""
    (root / "www").mkdir(parents=True)
    (root / "www" / "index.html").write_text("app v1\n")
    (root / "Dockerfile").write_text(f"FROM {image}\nCOPY . /app\nWORKDIR /app\n")
    (root / "Procfile").write_text("web: exec busybox httpd -f -p $PORT -h www\n"
                                   "postdeploy: echo postdeploy in compose\n")
    return root


class Stack:
    """One compose project of the stack, on free ports, with fresh identities (what
    `dockyard bus init --owner 10001` writes)."""

    def __init__(self, tmp: Path) -> None:
        self.tool = compose_command()
        self.project = f"dockyard-test-{secrets.token_hex(4)}"
        self.nats_port, self.http_port, self.api_port = free_port(), free_port(), free_port()
        self.bus_dir = tmp / "bus"
        self.api_token = secrets.token_urlsafe(24)
        write_auth_conf(self.bus_dir, identities())
        for name in SERVICES:
            os.chown(seed_path(self.bus_dir, name), IMAGE_USER, IMAGE_USER)
        socket_gid = os.stat(SOCKET).st_gid if os.path.exists(SOCKET) else 0
        self.env = clean_env(
            DOCKYARD_IMAGE=IMAGE, DOCKYARD_NATS_IMAGE=NATS_IMAGE, DOCKER_GID=str(socket_gid),
            DOCKYARD_NATS_PORT=str(self.nats_port), DOCKYARD_HTTP_PORT=str(self.http_port),
            DOCKYARD_API_PORT=str(self.api_port), DOCKYARD_DRAIN="0.5",
            DOCKYARD_HTTP_HOST="127.0.0.1", DOCKYARD_BUS_DIR=str(self.bus_dir),
            DOCKYARD_API_TOKEN=self.api_token)
        self.tmp = tmp

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.tool, "-p", self.project, "-f", str(COMPOSE), *args],
                              capture_output=True, text=True, timeout=timeout, check=False,
                              env=self.env, cwd=REPO)

    def logs(self) -> str:
        return self.run("logs", "--no-color", "--tail", "40", timeout=60).stdout[-12000:]

    def containers(self, service: str) -> list[str]:
        return self.run("ps", "-q", service, timeout=60).stdout.split()

    def settings(self) -> Settings:
        """The operator's settings on the host: the bus on loopback, the generated seeds."""
        return Settings.from_env(env={}, data_dir=self.tmp / "cli",
                                 nats_url=f"nats://127.0.0.1:{self.nats_port}",
                                 nats_keys=self.bus_dir, http_port=self.http_port)


async def _provision(stack: Stack) -> None:
    """Provision the bus as admin, as `dockyard bus init --nats-url` does before the services
    start (services never create the streams, buckets and stores they use)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            await provision_as_admin(stack.settings())
            return
        except Exception:
            if time.monotonic() > deadline:
                raise AssertionError(f"nats never answered:\n{stack.logs()}") from None
            await asyncio.sleep(0.5)


async def _wait_for_consumers(stack: Stack) -> DockyardClient:
    """The cli identity connected, once every service registered its durable consumers."""
    settings = stack.settings()
    deadline = time.monotonic() + 180
    client = None
    while client is None:
        try:
            client = await DockyardClient.connect(settings)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)
    # Every durable every service declares (and so must have registered once it started).
    wanted = [(on.stream, on.durable(name)) for name in SERVICES
              for on in declaration(name).subscribes]
    assert (subjects.STREAM_EVENTS, "router-hook-succeeded") in wanted
    # Consumers are looked at as admin (provisioning's business), not as cli.
    admin = await nats.connect(settings.bus_url(), allow_reconnect=False,
                               **Credentials.load(stack.bus_dir, "admin").options())
    try:
        for stream, durable in wanted:
            while True:
                try:
                    await admin.jetstream().consumer_info(stream, durable)
                    break
                except nats.errors.Error:
                    if time.monotonic() > deadline:
                        await client.close()
                        raise AssertionError(
                            f"{durable} never appeared:\n{stack.logs()}") from None
                    await asyncio.sleep(1)
    finally:
        await admin.close()
    return client


async def docker(*args: str) -> str:
    """`docker ARGS` off the event loop: its output (stdout, then stderr)."""
    proc = await asyncio.to_thread(subprocess.run, ["docker", *args], capture_output=True,
                                   text=True, timeout=120, check=False)
    return proc.stdout + proc.stderr


async def _remove_app(app: str) -> None:
    runtimes = Runtimes(Settings.from_env(env={}, runtime="docker"))
    try:
        runtime = await runtimes.get("docker")
        for ref in await runtime.list_instances(app):
            await runtime.stop_instance(ref, 1.0)
    finally:
        await runtimes.close()
    images = (await docker("images", "-q", "--filter", f"label=dockyard.app={app}")).split()
    if images:
        await docker("rmi", "-f", *set(images))


@pytest.mark.timeout(1800)
async def test_the_stack_comes_up_scaled_and_deploys_an_app(tmp_path: Path) -> None:
    """`compose up --scale hook-runner=2` (image from infra/Dockerfile, each service as its
    NATS user, the socket for three of them), then a deploy with the docker runtime: the app
    answers through the router on the host's port and the api shows its live release."""
    require_docker()
    stack = Stack(tmp_path)
    busybox = ensure_test_image()
    await asyncio.to_thread(build_image)
    ensure_nats_image()
    app = f"composed-{secrets.token_hex(3)}"
    client: DockyardClient | None = None
    try:
        # The bus first, provisioned as an operator does; then the services against it.
        bus = await asyncio.to_thread(stack.run, "up", "-d", "--no-build", "nats", timeout=600)
        assert bus.returncode == 0, bus.stdout + bus.stderr + stack.logs()
        await _provision(stack)
        up = await asyncio.to_thread(stack.run, "up", "-d", "--no-build", "--scale",
                                     "hook-runner=2", timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr + stack.logs()
        client = await _wait_for_consumers(stack)

        runners = stack.containers("hook-runner")
        assert len(runners) == 2, runners
        for cid in runners:
            logs = await docker("logs", cid)
            assert "service started" in logs, logs
        for name in SERVICES:
            (cid, *_) = stack.containers(name)
            user = (await docker("exec", cid, "id", "-u")).strip()
            assert user not in ("", "0"), (name, user)

        end = await client.deploy(app, write_app(tmp_path / "src", busybox), Followers(),
                                  wait=300)
        assert isinstance(end, DeploySucceeded), (end, stack.logs())

        async with httpx.AsyncClient(timeout=5) as http:
            page = await http.get(f"http://127.0.0.1:{stack.http_port}/",
                                  headers={"Host": f"{app}.localhost"})
            assert page.status_code == 200 and page.text == "app v1\n", page.text
            for _ in range(60):
                info = await http.get(f"http://127.0.0.1:{stack.api_port}/apps/{app}",
                                      headers={"Authorization": f"Bearer {stack.api_token}"})
                if info.status_code == 200 and info.json().get("live_release") == 1:
                    break
                await asyncio.sleep(0.5)
            else:
                pytest.fail(f"the api never showed v1 live: {info.status_code} {info.text}")
    finally:
        if client is not None:
            await client.close()
        await _remove_app(app)
        down = stack.run("down", "-v", "--remove-orphans", "-t", "5", timeout=300)
        assert down.returncode == 0, down.stderr
    left = (await docker("ps", "-aq", "--filter",
                         f"label=com.docker.compose.project={stack.project}")).split()
    assert not left, left

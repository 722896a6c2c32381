"""Hooks are contained, on the real stack: what a hostile hook tries is refused and nothing of
it outlives it; on the process runtime a killed hook-runner never makes a command run twice."""

from __future__ import annotations

import asyncio
import grp
import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import msgspec
import pytest

from dockyard.bus.service import SERVICES
from dockyard.client import Followers
from dockyard.contract.events import AnyEvent, DeployFailed, DeploySucceeded, LogLine
from dockyard.runtime import runs
from dockyard.runtime.process import InstanceRecord
from dockyard.runtime.users import user_name
from tests.e2e.apps import make_app
from tests.e2e.conftest import RUNTIMES, Running, start_running, stop_running
from tests.e2e.phase_support import (
    assert_lock_free,
    deploy,
    processes_matching,
    serves,
    texts_of,
)
from tests.runtime.process_support import reachable_tmp, remove, require_root

DOCKYARD = str(Path(sys.executable).parent / "dockyard")
DOCKER_SOCKET = Path("/var/run/docker.sock")
ACK_WAIT = 3.0


@pytest.fixture(scope="module", params=RUNTIMES)
async def contained(request: pytest.FixtureRequest) -> AsyncIterator[Running]:
    """A stack whose data dir sits in a directory anyone may pass through (0711), so that
    only the data dir's own mode keeps the apps out of it."""
    if request.param == "process":
        require_root("hooks as their apps' own users")
    base = reachable_tmp("dockyard-contain-")
    running = await start_running(base, request.param, apps_dir=base / "data.apps")
    yield running
    await stop_running(running)
    remove(base)


def probe_script(probes: dict[str, str], leave: str) -> str:
    """A hook that tries each thing, says GOT or REFUSED for each, and leaves `leave` running."""
    lines = ['probe() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "GOT $name"; '
             'else echo "REFUSED $name"; fi; }']
    lines += [f"probe {name} {command}" for name, command in probes.items()]
    lines += ["grep -E '^(CapEff|NoNewPrivs):' /proc/self/status",
              f"setsid {leave} &", "echo probes-done"]
    return "\n".join(lines) + "\n"


def instance_pid(running: Running, app: str) -> int:
    """The pid of the command of an app's (one) instance on the process runtime."""
    folder = running.settings.data_dir / "process" / "instances" / app
    (path,) = folder.glob("*.json")
    record = msgspec.json.decode(path.read_bytes(), type=InstanceRecord)
    pid = runs.read_pid(Path(record.run_dir))
    assert pid is not None
    return pid.child


def oneoffs_of(deployment_id: str) -> list[str]:
    """Every one-off container (running or not) of a deployment."""
    out = subprocess.run(["docker", "ps", "-aq", "--filter",
                          f"label=dockyard.deployment={deployment_id}", "--filter",
                          "label=dockyard.role=oneoff"],
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.split()


def environ_of(pid: int) -> bytes:
    """A process's environment, as root reads it."""
    return Path(f"/proc/{pid}/environ").read_bytes()


def assert_locked_away(data: Path, app: str) -> None:
    """The data dir is root's alone; the Docker socket is root's and its group's, a group the
    app's user is not in."""
    mode = data.stat()
    assert (stat.S_IMODE(mode.st_mode), mode.st_uid) == (0o700, 0)
    user = pwd.getpwnam(user_name(app))
    if DOCKER_SOCKET.exists():
        sock = DOCKER_SOCKET.stat()
        assert stat.S_IMODE(sock.st_mode) & 0o007 == 0  # only root and its group
        groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
        assert sock.st_gid not in groups and grp.getgrgid(sock.st_gid).gr_name != user.pw_name


async def instance_address(app: str) -> str:
    """The address of an app's (one) instance container on the docker runtime."""
    docker = aiodocker.Docker()
    try:
        filters = json.dumps({"label": [f"dockyard.app={app}", "dockyard.role=instance"]})
        (container,) = await docker.containers.list(filters=filters)
        networks = (await container.show())["NetworkSettings"]["Networks"]
        (network,) = networks.values()
        return str(network["IPAddress"])
    finally:
        await docker.close()


async def test_a_hook_is_refused_what_is_not_its_apps_and_leaves_nothing_running(
        contained: Running, tmp_path: Path) -> None:
    running, data = contained, contained.settings.data_dir
    victim = running.app_name("victim")
    await running.client.config_change(victim, {"VICTIM_SECRET": "victim-s3cr3t"}, [])
    end, _ = await deploy(running, victim, make_app(tmp_path / "victim", running.runtime, "v1"))
    assert isinstance(end, DeploySucceeded), end

    sleeper = f"sleep 1000.{uuid.uuid4().int % 10**8}"  # a leftover we can find by its text
    if running.runtime == "process":
        for name in ("nats.url", "caddy.admin", "jetstream"):
            assert (data / name).exists(), f"{name} should exist for the hook to try it"
        victim_pid = instance_pid(running, victim)
        assert b"victim-s3cr3t" in environ_of(victim_pid)  # root reads it: the hook must not
        probes = {
            "nats.url": f"cat {data}/nats.url",
            "caddy.admin": f"cat {data}/caddy.admin",
            "jetstream": f"ls {data}/jetstream",
            "victim-environ": f"cat /proc/{victim_pid}/environ",
            "victim-tree": f"ls {running.settings.apps_root / victim}",
            "docker.sock": "python3 -c \"import socket; "
                           f"socket.socket(socket.AF_UNIX).connect('{DOCKER_SOCKET}')\"",
            "root": 'test "$(id -u)" = 0',
        }
    else:
        address = await instance_address(victim)
        probes = {
            "victim-instance": f"sh -c \"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | "
                               f"nc -w 2 {address} 5000 | grep -q '^HTTP/1'\"",
            "docker.sock": f"test -e {DOCKER_SOCKET}",
            "root-caps": "grep -q '^CapEff:.*[1-9a-f]' /proc/self/status",
        }
    attacker = running.app_name("attacker")
    src = make_app(tmp_path / "attacker", running.runtime, "v1", postdeploy="sh probe.sh",
                   files={"probe.sh": probe_script(probes, sleeper)})
    end, _ = await deploy(running, attacker, src)
    assert isinstance(end, DeploySucceeded), end
    texts = await texts_of(running, end.deployment_id)
    assert "probes-done" in texts, texts
    said = [t for t in texts if t.startswith(("GOT ", "REFUSED "))]
    assert said == [f"REFUSED {name}" for name in probes], said
    status = {t.split(":")[0]: t.split()[1] for t in texts if t.startswith(("CapEff:", "NoNew"))}
    assert status == {"CapEff": "0000000000000000", "NoNewPrivs": "1"}

    # Nothing of the hook is left: not its `setsid` child, not its container.
    if running.runtime == "process":
        assert processes_matching(sleeper) == []
        assert_locked_away(data, attacker)
    else:
        assert oneoffs_of(end.deployment_id) == []
    serves(running, victim, "v1")


async def test_a_fork_bomb_in_a_hook_stops_at_the_limit_and_the_deploy_ends_cleanly(
        contained: Running, tmp_path: Path) -> None:
    running = contained
    limit = running.settings.pids_limit
    if running.runtime == "process":
        guard = f"grep -q 'Max processes *{limit} *{limit}' /proc/self/limits || exit 9"
    else:
        guard = ('[ "$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || '
                 f'cat /sys/fs/cgroup/pids.max)" = {limit} ] || exit 9')
    # The limit is checked first: without it the bomb is never lit.
    bomb = f"{guard}\nbomb() {{ bomb | bomb & }}\nbomb\nsleep 2\necho bomb-over\nexit 0\n"
    app = running.app_name("bomber")
    src = make_app(tmp_path / "bomber", running.runtime, "v1", files={"bomb.sh": bomb},
                   toml='[[postdeploy]]\ncommand = "sh bomb.sh"\ntimeout = "60s"\n')
    began = time.monotonic()
    end, _ = await deploy(running, app, src)
    assert isinstance(end, DeploySucceeded), end
    assert time.monotonic() - began < 120
    texts = await texts_of(running, end.deployment_id)
    assert "bomb-over" in texts
    assert any("fork" in t or "Resource temporarily unavailable" in t for t in texts), texts[-20:]
    if running.runtime == "process":
        assert processes_matching("bomb.sh") == []
    else:
        assert oneoffs_of(end.deployment_id) == []
    await assert_lock_free(running, app)
    serves(running, app, "v1")


# ---------------------------------------------------------------- a hook-runner killed mid-command


def spawn(running: Running) -> subprocess.Popen[bytes]:
    """`dockyard service hook-runner` as its own OS process on the test's bus."""
    env = {**os.environ, "DOCKYARD_NATS_URL": running.settings.nats_url,
           "DOCKYARD_DATA_DIR": str(running.settings.data_dir),
           "DOCKYARD_APPS_DIR": str(running.settings.apps_root),
           "DOCKYARD_RUNTIME": running.runtime, "DOCKYARD_ACK_WAIT": str(ACK_WAIT),
           "DOCKYARD_KILL_GRACE": "2", "DOCKYARD_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([DOCKYARD, "service", "hook-runner"], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def crash(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL: no cleanup, no ack, as a crash."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


async def _eventually(check: object, within: float) -> None:
    assert callable(check)
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("comes_back", ["while-it-runs", "after-it-ended"])
async def test_a_killed_hook_runner_never_runs_a_command_twice(comes_back: str) -> None:
    base = reachable_tmp("dockyard-crash-")
    trace = base / "trace"
    trace.write_text("")
    trace.chmod(0o666)  # the app's user appends to it
    running = await start_running(base, "process", apps_dir=base / "data.apps",
                                  services=tuple(s for s in SERVICES if s != "hook-runner"),
                                  ack_wait=ACK_WAIT)
    procs = [spawn(running)]
    try:
        app = running.app_name("crashy")
        src = make_app(base / "src", "process", "v1",
                       postdeploy=f"echo start >> {trace}; sleep 3; echo end >> {trace}; exit 3")
        crashed = asyncio.Event()
        lines: list[str] = []

        async def on_event(event: AnyEvent) -> None:
            if event.type == "dockyard.command.started" and not crashed.is_set():
                crashed.set()
                await _eventually(lambda: "start" in trace.read_text(), 15)
                crash(procs[0])  # its command goes on, in a session of its own
                if comes_back == "after-it-ended":
                    await _eventually(lambda: "end" in trace.read_text(), 15)
                procs.append(spawn(running))

        async def on_line(line: LogLine) -> None:
            lines.append(line.text)

        end = await running.client.deploy(
            app, src, Followers(on_event=on_event, on_line=on_line), wait=180)
        assert crashed.is_set()
        assert isinstance(end, DeployFailed), end
        assert (end.data.status, end.data.exit_code) == ("hook-error", 3), end.data
        assert trace.read_text() == "start\nend\n"  # it ran once, and its code is the real one
        assert not any("interrupted" in line for line in lines)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    crash(proc)
        await stop_running(running)
        remove(base)

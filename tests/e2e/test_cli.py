"""The CLI as operators run it: the real `dockyard` executable against a real stack, its output
piped (not a TTY), each reported failure tried as reported."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiodocker
import httpx
import pytest

from dockyard.bus.embedded import free_port
from dockyard.client import Followers
from dockyard.contract.events import DeployFailed, DeploySucceeded
from dockyard.runtime.apptree import remove_tree
from dockyard.runtime.docker_config import LABEL_APP
from dockyard.runtime.process import ProcessRuntime
from dockyard.runtime.select import Runtimes
from dockyard.settings import Settings
from tests.e2e.apps import TEST_IMAGE, get, make_app
from tests.e2e.cli_support import DOCKYARD, cells, cli_env, deployment_of, index_of
from tests.e2e.conftest import Running

DEPLOYING = "deploying {app}: deployment "
LONG_LINE = "long-line-" + "x" * 190
Fresh = Callable[[str], str]


@pytest.fixture
async def fresh(running: Running) -> AsyncIterator[Callable[[str], str]]:
    """Fresh app names for one test; afterwards their instances are stopped and, on Docker,
    their images removed (the stack's teardown leaves images alone)."""
    made: list[str] = []

    def name(stem: str) -> str:
        made.append(running.app_name(stem))
        return made[-1]

    yield name
    runtimes = Runtimes(running.settings)
    try:
        rt = await runtimes.get(running.runtime)
        for app in made:
            for ref in await rt.list_instances(app):
                await rt.stop_instance(ref, 1.0)
    finally:
        await runtimes.close()
    if running.runtime == "docker":
        async with aiodocker.Docker() as docker:
            for app in made:
                for image in await docker.images.list(
                        filters={"label": [f"{LABEL_APP}={app}"]}):
                    with contextlib.suppress(aiodocker.DockerError):
                        await docker.images.delete(image["Id"], force=True)


def bare_env() -> dict[str, str]:
    """The environment without any DOCKYARD_ setting (a command run where no stack runs)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}


def narrow_env(running: Running) -> dict[str, str]:
    """A user's environment with the default 80 columns (where output used to be cut)."""
    return {**cli_env(running), "COLUMNS": "80"}


async def run_cli(running: Running, *args: str,
                  time_limit: float = 300) -> subprocess.CompletedProcess[str]:
    """`dockyard ARGS...`, stdout and stderr piped, 80 columns."""
    return await asyncio.to_thread(subprocess.run, [DOCKYARD, *args], env=narrow_env(running),
                                   capture_output=True, text=True, timeout=time_limit)


def one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The one line a refused command prints on stderr (exit 2, nothing on stdout)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout == "", (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def slow_app(running: Running, root: Path, seconds: int = 6) -> Path:
    """An app whose postdeploy takes a while (time to interrupt the CLI following it)."""
    return make_app(root, running.runtime, "v1",
                    postdeploy=f"echo before-sleep; sleep {seconds}; echo after-sleep")


async def spawn_deploy(running: Running, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    """Start `dockyard deploy ARGS...` and wait (bounded) for the line naming its deployment."""
    proc = await asyncio.create_subprocess_exec(
        DOCKYARD, "deploy", *args, env=narrow_env(running), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    prefix = DEPLOYING.format(app=args[0])
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), timeout=120)).decode()
            assert line, "the deploy ended before naming its deployment"
            if line.startswith(prefix):
                return proc, line.removeprefix(prefix).split()[0]
    except BaseException:
        proc.kill()
        await proc.wait()
        raise


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    """Wait (bounded) for a spawned command; its exit code, the rest of stdout, and stderr."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# ---------------------------------------------------------------- piped output is whole


async def test_piped_output_is_never_cut_wrapped_or_ellipsized(
        running: Running, fresh: Fresh, tmp_path: Path) -> None:
    app = fresh("whole")
    src = make_app(tmp_path / "src", running.runtime, "v1", release=f"echo {LONG_LINE}")
    proc = await run_cli(running, "deploy", app, str(src))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dep = deployment_of(proc.stdout)
    assert len(dep) == 32 and LONG_LINE in proc.stdout.splitlines()

    deployments = await run_cli(running, "deployments", app)
    assert deployments.returncode == 0, deployments.stderr
    lines = deployments.stdout.splitlines()
    assert lines[0] == "deployment\trelease\tstatus\treason\tcreated"
    row = cells(lines[index_of(lines, dep)])
    assert row[0] == dep and row[1:3] == ["v1", "succeeded"], row
    assert row[4].endswith("Z") and len(row[4]) > 19, "the whole date, fractions and zone"
    assert "…" not in deployments.stdout

    kept = await run_cli(running, "logs", dep)
    assert kept.returncode == 0, kept.stderr
    assert LONG_LINE in kept.stdout.splitlines(), "a saved log line is not wrapped at 80"

    shown = await run_cli(running, "hooks", app)
    lines = shown.stdout.splitlines()
    assert cells(lines[index_of(lines, LONG_LINE)])[3] == f"echo {LONG_LINE}"

    as_json = await run_cli(running, "deployments", app, "--json")
    rows = json.loads(as_json.stdout)["deployments"]
    assert [r["id"] for r in rows] == [dep]
    status = json.loads((await run_cli(running, "status", app, "--json")).stdout)
    assert status["name"] == app and status["url"] == f"http://{app}.localhost:{running.port}/"

    # A unique prefix and the release number name the same deployment.
    for ref in (dep[:8], "v1"):
        by_ref = await run_cli(running, "logs", ref, "--app", app)
        assert by_ref.returncode == 0 and by_ref.stdout == kept.stdout, by_ref.stderr
    lines_json = await run_cli(running, "logs", dep[:10], "--json")
    assert LONG_LINE in [json.loads(line)["text"] for line in lines_json.stdout.splitlines()]


async def test_apps_and_ps_show_the_live_release_and_its_instances(
        running: Running, fresh: Fresh, tmp_path: Path) -> None:
    app = fresh("listed")
    src = make_app(tmp_path / "src", running.runtime, "v1")
    deployed = await run_cli(running, "deploy", app, str(src))
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    listed = await run_cli(running, "apps")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "app\tlive\thealth\trunning\tlatest"
    assert cells(lines[index_of(lines, app)]) == [app, "v1", "healthy", "1", "succeeded"]
    as_json = json.loads((await run_cli(running, "apps", "--json")).stdout)
    (row,) = [a for a in as_json["apps"] if a["name"] == app]
    assert row["live_release"] == 1 and row["running"] == 1

    shown = await run_cli(running, "ps", app)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "process\trelease\tstate\tinstance\taddress"
    (web,) = [cells(line) for line in lines[1:]]
    assert web[:3] == ["web", "v1", "running"], web
    assert get(running.port, app).text == "app v1\n"
    ps_json = json.loads((await run_cli(running, "ps", app, "--json")).stdout)
    assert ps_json["live_release"] == 1
    assert [(i["process"], i["id"]) for i in ps_json["instances"]] == [("web", web[3])]
    one_error_line(await run_cli(running, "ps", "nosuchapp"), "no app named 'nosuchapp'")


# ---------------------------------------------------------------- naming what does not exist


async def test_logs_of_an_unknown_deployment_is_one_error_even_when_following(
        running: Running) -> None:
    one_error_line(await run_cli(running, "logs", "nosuchid"),
                   "no deployment matches 'nosuchid'")
    started = time.monotonic()
    one_error_line(await run_cli(running, "logs", "nosuchid", "--follow", time_limit=30),
                   "no deployment matches 'nosuchid'")
    assert time.monotonic() - started < 20, "no waiting for a deployment that does not exist"
    one_error_line(await run_cli(running, "logs", "0123456789abcdef0123456789abcdef", "-f"),
                   "no deployment matches")
    one_error_line(await run_cli(running, "logs", "v1"), "'v1' is a release number", "--app")


async def test_commands_naming_an_unknown_app_say_so(running: Running, fresh: Fresh) -> None:
    for app, *args in (
            ("typoapp", "config", "set", "typoapp", "GREETING=hi"),
            ("nosuchapp", "config", "show", "nosuchapp"),
            ("nosuchapp", "config", "unset", "nosuchapp", "GREETING"),
            ("nosuchapp", "hooks", "nosuchapp"),
            ("nosuchapp", "hooks", "rm", "nosuchapp", "postdeploy", "x"),
            ("nosuchapp", "notify", "ls", "nosuchapp"),
            ("nosuchapp", "notify", "add", "nosuchapp", "ops", "https://h.example/x"),
            ("nosuchapp", "status", "nosuchapp"),
            ("nosuchapp", "deployments", "nosuchapp"),
            ("nosuchapp", "releases", "nosuchapp"),
            ("nosuchapp", "events", "--app", "nosuchapp"),
            ("nosuchapp", "logs", "abcd1234", "--app", "nosuchapp"),
            ("nosuchapp", "cancel", "abcd1234", "--app", "nosuchapp")):
        one_error_line(await run_cli(running, *args), f"no app named {app!r}")
    one_error_line(await run_cli(running, "cancel", "abcd1234"), "no deployment matches")
    # The refused `config set` stored nothing; --create is how config comes before a deploy.
    one_error_line(await run_cli(running, "config", "show", "typoapp"), "no app named")
    app = fresh("early")
    created = await run_cli(running, "config", "set", app, "GREETING=hi", "--create")
    assert created.returncode == 0 and "no release yet" in created.stdout, created.stderr
    shown = json.loads((await run_cli(running, "config", "show", app, "--json")).stdout)
    assert shown == {"app": app, "version": 1, "values": {"GREETING": "hi"}}
    status = await run_cli(running, "status", app)
    assert status.returncode == 0 and "no deployments yet" in status.stdout, status


async def test_nothing_to_reach_is_one_line(running: Running, tmp_path: Path) -> None:
    env = {**narrow_env(running), "DOCKYARD_NATS_URL": "nats://127.0.0.1:1"}
    proc = await asyncio.to_thread(subprocess.run, [DOCKYARD, "logs", "abcd1234"], env=env,
                                   capture_output=True, text=True, timeout=60)
    one_error_line(proc, "cannot reach the bus at nats://127.0.0.1:1")
    (tmp_path / "api.url").write_text(f"http://127.0.0.1:{free_port()}\n")
    (tmp_path / "api.token").write_text("t\n")
    env = {**narrow_env(running), "DOCKYARD_DATA_DIR": str(tmp_path)}
    proc = await asyncio.to_thread(subprocess.run, [DOCKYARD, "status", "shop"], env=env,
                                   capture_output=True, text=True, timeout=60)
    one_error_line(proc, "the api at http://127.0.0.1:", "does not answer")


# ---------------------------------------------------------------- following a deploy


async def test_ctrl_c_leaves_the_deploy_going_and_says_how_to_follow_it(
        running: Running, fresh: Fresh, tmp_path: Path) -> None:
    app = fresh("ctrlc")
    proc, dep = await spawn_deploy(running, app, str(slow_app(running, tmp_path / "src")))
    assert len(dep) == 32, dep
    proc.send_signal(signal.SIGINT)
    code, _, err = await finish(proc)
    assert code == 130, err
    assert "Traceback" not in err
    assert f"interrupted: deployment {dep} goes on" in err
    assert f"dockyard logs {dep} --follow" in err and f"dockyard cancel {dep}" in err

    # A prefix of the id follows the deploy to its end, which is a success.
    follow = await run_cli(running, "logs", dep[:8], "--follow", time_limit=240)
    assert follow.returncode == 0, follow.stderr
    assert "after-sleep" in follow.stdout.splitlines()
    end = await running.client.follow(app, dep, Followers(), wait=240)
    assert isinstance(end, DeploySucceeded), end


async def test_cancel_on_interrupt_cancels_the_deploy(running: Running, fresh: Fresh,
                                                      tmp_path: Path) -> None:
    app = fresh("ctrlcancel")
    proc, dep = await spawn_deploy(running, app, str(slow_app(running, tmp_path / "src", 30)),
                                   "--cancel-on-interrupt")
    proc.send_signal(signal.SIGINT)
    code, _, err = await finish(proc)
    assert code == 130 and "Traceback" not in err, err
    assert f"interrupted: cancelling deployment {dep}" in err
    end = await running.client.follow(app, dep, Followers(), wait=240)
    assert isinstance(end, DeployFailed) and end.data.status == "cancelled", end
    again = await run_cli(running, "cancel", dep[:8])
    one_error_line(again, f"deployment {dep} already ended cancelled")


async def test_deploy_timeout_is_one_line_and_the_deploy_goes_on(
        running: Running, fresh: Fresh, tmp_path: Path) -> None:
    app = fresh("timeout")
    proc = await run_cli(running, "deploy", app, str(slow_app(running, tmp_path / "src")),
                         "--timeout", "1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "stopped following after 1s" in proc.stderr
    dep = proc.stdout.splitlines()[0].removeprefix(DEPLOYING.format(app=app)).split()[0]
    assert f"deployment {dep} goes on" in proc.stderr
    end = await running.client.follow(app, dep, Followers(), wait=240)
    assert isinstance(end, DeploySucceeded), end


def worker_app(root: Path, runtime: str) -> Path:
    """An app with only a worker process."""
    root.mkdir(parents=True)
    (root / "Procfile").write_text("worker: exec sleep 1000\n")
    if runtime == "docker":
        (root / "Dockerfile").write_text(f"FROM {TEST_IMAGE}\nWORKDIR /app\n")
    return root


async def test_a_worker_only_app_says_it_has_no_http_route(
        running: Running, fresh: Fresh, tmp_path: Path) -> None:
    app = fresh("worker")
    proc = await run_cli(running, "deploy", app, str(worker_app(tmp_path / "src",
                                                                running.runtime)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.splitlines()[-1]
    assert "live at" not in proc.stdout
    assert last.startswith(f"succeeded: {app} v1 runs, but it has no web process, so no HTTP "
                           "route"), last
    assert get(running.port, app).status_code == 503


# ---------------------------------------------------------------- a reader that goes away


async def head_one(running: Running, *args: str) -> tuple[int, str, str, float]:
    """`dockyard ARGS... | head -1`: dockyard's exit code and stderr, head's line, seconds."""
    started = time.monotonic()

    def pipeline() -> tuple[int, str, str]:
        producer = subprocess.Popen([DOCKYARD, *args], env=narrow_env(running),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        head = subprocess.Popen(["head", "-1"], stdin=producer.stdout, stdout=subprocess.PIPE)
        assert producer.stdout is not None and producer.stderr is not None
        producer.stdout.close()  # head alone reads it now
        try:
            line, _ = head.communicate(timeout=60)
            code = producer.wait(timeout=30)
            return code, line.decode(), producer.stderr.read().decode()
        finally:
            for proc in (producer, head):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            producer.stderr.close()

    code, line, err = await asyncio.to_thread(pipeline)
    return code, line, err, time.monotonic() - started


async def test_events_into_a_pipe_closed_after_one_line(running: Running, fresh: Fresh,
                                                        tmp_path: Path) -> None:
    app = fresh("piped")
    done = await running.client.deploy(app, make_app(tmp_path / "src", running.runtime, "v1"),
                                       Followers(), wait=240)
    assert isinstance(done, DeploySucceeded), done
    for args in (("events",), ("events", "--follow"), ("logs", done.deployment_id, "--follow")):
        code, line, err, took = await head_one(running, *args)
        assert code in (0, 141), (args, code, err)
        assert err == "", (args, err)
        assert took < 15, (args, took)
        assert line.count("\n") == 1
    code, line, _, _ = await head_one(running, "events", "--app", app)
    assert json.loads(line)["type"] == "dockyard.deploy.queued"


# ---------------------------------------------------------------- dockyard up


async def test_up_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.to_thread(
            subprocess.run, [DOCKYARD, "up", "--http-port", str(port), "--runtime", "process",
                             "--data-dir", str(data)],
            capture_output=True, text=True, timeout=120,
            env={**bare_env(), "DOCKYARD_LOG_LEVEL": "ERROR"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0], proc.stderr
    assert "--http-port" in errors[0] and "Dockyard is up" not in proc.stdout
    left = await asyncio.to_thread(subprocess.run, ["pgrep", "-f", str(data)],
                                   capture_output=True, text=True, timeout=10)
    assert left.stdout == "", "no nats-server, no Caddy left behind"


async def test_ctrl_c_as_up_comes_up_leaves_no_bus_or_proxy_behind(tmp_path: Path) -> None:
    # Ctrl-C the moment it says it is up, before its own handler may be in place: asyncio's
    # default handler cancels it then, and its nats-server and Caddy must go all the same.
    data = tmp_path / "data"
    up = await start_up(data)
    try:
        assert up.stdout is not None
        await asyncio.wait_for(up.stdout.readuntil(b"Dockyard is up"), 120)
        up.send_signal(signal.SIGINT)
        assert await ended(up) in (0, 130)
        await assert_nothing_left(data)
    finally:
        await stop_up(up, data)


async def test_sigterm_while_up_starts_leaves_no_bus_or_proxy_behind(tmp_path: Path) -> None:
    # SIGTERM the moment its Caddy runs, while the services still start: before, SIGTERM's
    # default action killed `up` there, and its nats-server and Caddy (each in a session of its
    # own) kept running and serving.
    data = tmp_path / "data"
    up = await start_up(data)
    try:
        deadline = time.monotonic() + 120
        while not (data / "caddy.json").exists():
            assert up.returncode is None and time.monotonic() < deadline, "no Caddy started"
            await asyncio.sleep(0.005)
        up.send_signal(signal.SIGTERM)
        assert await ended(up) == 0
        await assert_nothing_left(data)
    finally:
        await stop_up(up, data)


async def start_up(data: Path) -> asyncio.subprocess.Process:
    """`dockyard up` on a fresh data dir and a free port, in a session of its own."""
    return await asyncio.create_subprocess_exec(
        DOCKYARD, "up", "--http-port", str(free_port()), "--runtime", "process", "--data-dir",
        str(data), env={**bare_env(), "DOCKYARD_LOG_LEVEL": "ERROR"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True)


async def ended(up: asyncio.subprocess.Process) -> int:
    """Its exit code, once all it printed is read."""
    assert up.stdout is not None
    await asyncio.wait_for(up.stdout.read(), 60)
    return await asyncio.wait_for(up.wait(), 60)


async def assert_nothing_left(data: Path) -> None:
    left = await asyncio.to_thread(subprocess.run, ["pgrep", "-af", str(data)],
                                   capture_output=True, text=True, timeout=10)
    assert left.stdout == "", f"left running: {left.stdout}"


async def stop_up(up: asyncio.subprocess.Process, data: Path) -> None:
    """Stop a `dockyard up` a failed test left running: Ctrl-C (it stops its bus and proxy),
    else SIGKILL of its session and SIGTERM to whatever runs from its data dir."""
    if up.returncode is None:
        up.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(up.wait(), 60)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(up.pid, signal.SIGKILL)
            await up.wait()
    left = await asyncio.to_thread(subprocess.run, ["pgrep", "-f", str(data)],
                                   capture_output=True, text=True, timeout=10)
    for pid in map(int, left.stdout.split()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


async def test_up_names_the_instances_it_leaves_running(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    # The apps' trees must be reachable by the apps' own users: not under pytest's private tmp.
    apps = Path(tempfile.mkdtemp(prefix="dockyard-apps-"))
    env = {**bare_env(), "DOCKYARD_DATA_DIR": str(data), "DOCKYARD_APPS_DIR": str(apps),
           "DOCKYARD_DRAIN": "0.5", "DOCKYARD_KILL_GRACE": "2"}
    up = await asyncio.create_subprocess_exec(
        DOCKYARD, "up", "--http-port", str(port), "--runtime", "process", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True)
    settings = Settings.from_env(env={}, data_dir=data, apps_dir=apps, http_port=port,
                                 runtime="process")
    app = "kept-p1"
    try:
        assert up.stdout is not None
        banner = await asyncio.wait_for(up.stdout.readuntil(b"Press Ctrl-C to stop.\n"), 120)
        assert b"Dockyard is up" in banner
        deployed = await asyncio.to_thread(
            subprocess.run, [DOCKYARD, "deploy", app,
                             str(make_app(tmp_path / "src", "process", "v1"))],
            env=env, capture_output=True, text=True, timeout=240)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        up.send_signal(signal.SIGINT)
        said = (await asyncio.wait_for(up.stdout.read(), 60)).decode()
        assert await asyncio.wait_for(up.wait(), 60) == 0
        lines = said.splitlines()
        assert lines[0].startswith("Dockyard stopped. These app instances keep running; the next "
                                   f"`dockyard up` with data dir {data} re-attaches them"), said
        (kept,) = [line for line in lines[1:] if line.startswith(f"  {app} v1 web: instance ")]
        pid = int(kept.split("stop it with: kill -TERM ")[1])
        os.kill(pid, 0)  # its supervisor runs (ProcessLookupError if not)
        own = int(kept.split(", port ")[1].split(";")[0])
        async with httpx.AsyncClient(timeout=5) as http:
            answer = await http.get(f"http://127.0.0.1:{own}/")
        assert answer.text == "app v1\n", "the instance still answers on its own port"
    finally:
        await stop_up(up, data)
        runtimes = Runtimes(settings)
        try:
            rt = await runtimes.get("process")
            for ref in await rt.list_instances(app):
                await rt.stop_instance(ref, 2.0)
            assert isinstance(rt, ProcessRuntime)
            await rt.remove_app(app)
        finally:
            await runtimes.close()
            remove_tree(apps)

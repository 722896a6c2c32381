"""Apps without a Dockerfile or build settings deploy as they are, on both runtimes.

The examples (examples/python-app, node-app, static-site) are deployed twice with `dockyard
deploy`: the second deploy, with unchanged lock files, installs nothing. The Python example's
release migration runs against a real PostgreSQL (a database of its own per test), once per
deploy; its collectstatic-style predeploy runs `python` from the release's venv. Hostile or
broken sources end as a `build-error` naming the file and the problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import psycopg
import pytest

from dockyard.bus.service import SERVICES
from tests.e2e.apps import get
from tests.e2e.cli_support import cli
from tests.e2e.conftest import RUNTIMES, Running, start_running, stop_running
from tests.postgres import Postgres
from tests.runtime.base_images import PYTHON_BASE, ensure_base, remove_app_images

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module", params=RUNTIMES)
async def stack(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """One stack per runtime; docker builds FROM the locally built language bases."""
    overrides: dict[str, object] = {}
    if request.param == "docker":
        overrides = {"python_image": ensure_base("python"), "node_image": ensure_base("node"),
                     "static_image": PYTHON_BASE}
    r = await start_running(tmp_path_factory.mktemp(f"bp-{request.param}"), request.param,
                            SERVICES, **overrides)
    yield r
    apps = set(r.apps)
    await stop_running(r)
    if request.param == "docker":
        for app in apps:
            remove_app_images(app)


def _docker_gateway() -> str:
    """The host's address on Docker's default bridge (containers reach the host there)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True,
                         text=True, check=True).stdout.split()
    assert "inet" in out, f"docker0 has no IPv4 address: {out}"
    return out[out.index("inet") + 1].split("/")[0]


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 port: int) -> None:
    """Forward one connection to the tests' PostgreSQL on loopback, both ways."""
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)

    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()

    await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


class Relay:
    """A TCP relay to the host's PostgreSQL on a loop of its own thread (the tests' loop blocks
    in synchronous HTTP calls while the app queries the database through it)."""

    def __init__(self, host: str, upstream_port: int) -> None:
        self.host = host
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(partial(_relay, port=upstream_port), host, 0),
            self.loop).result(10)
        self.port = int(self.server.sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop listening, end the loop and its thread."""
        async def stop() -> None:
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
async def database(stack: Running, postgres: Postgres) -> AsyncIterator[tuple[str, str]]:
    """(URL the test uses, URL the app gets) of a fresh database on the tests' PostgreSQL.

    Containers cannot reach the host's loopback: on docker the app gets a TCP relay to it,
    listening on the bridge gateway only."""
    with postgres.database("bp") as name:
        local = postgres.url(name)
        relay = None
        app_url = local
        if stack.runtime == "docker":
            relay = Relay(_docker_gateway(), postgres.port)
            app_url = f"postgresql://postgres@{relay.host}:{relay.port}/{name}"
        try:
            yield local, app_url
        finally:
            if relay is not None:
                relay.close()


def _migrations(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM python_app_migrations").fetchone()
    return int(row[0]) if row else 0


def _installed_nothing(runtime: str, out: str, deps: str, install_step: str) -> None:
    """The second deploy's build reused the dependencies: nothing was installed."""
    if runtime == "process":
        assert f"cache hit: {deps} reused" in out, out
        assert "cache miss" not in out, out
    else:
        lines = out.splitlines()
        at = next(i for i, line in enumerate(lines) if f": RUN {install_step}" in line)
        assert "Using cache" in lines[at + 1], lines[at: at + 3]
    for installing in ("Installed ", "Successfully installed", "added "):
        assert installing not in out, (installing, out)


def copied(tmp_path: Path, example: str) -> Path:
    """A copy of an example to change."""
    dest = tmp_path / example
    shutil.copytree(EXAMPLES / example, dest)
    return dest


async def test_python_example_builds_migrates_once_per_deploy_and_serves(
        stack: Running, database: tuple[str, str]) -> None:
    local, app_url = database
    app = stack.app_name("pyex")
    await stack.client.config_change(app, {"DATABASE_URL": app_url}, [])
    first = await cli(stack, "deploy", app, str(EXAMPLES / "python-app"), time_limit=600)
    out = first.stdout
    assert first.returncode == 0, out + first.stderr
    assert "===== build =====" in out and "plan: build: python (requirements.txt)" in out, out
    assert "plan: build: step 2: Install requirements.txt" in out, out
    assert "plan: processes.web" not in out  # the Procfile's web, not a guessed one
    assert "python-app: migrated (run 1)" in out, out
    assert "python-app: collected 1 file(s), flask 3.0.3" in out, out
    assert _migrations(local) == 1
    assert get(stack.port, app).text == "python-app: 1 migration(s)\n"
    assert "sans-serif" in get(stack.port, app, "/static/app.css").text

    hooks = await cli(stack, "hooks", app)
    assert "build: python (requirements.txt)" in hooks.stdout, hooks.stdout

    second = await cli(stack, "deploy", app, str(EXAMPLES / "python-app"), time_limit=600)
    assert second.returncode == 0, second.stdout + second.stderr
    _installed_nothing(stack.runtime, second.stdout, ".venv", "python3 -m venv .venv")
    assert "python-app: migrated (run 2)" in second.stdout, second.stdout
    assert _migrations(local) == 2
    assert get(stack.port, app).text == "python-app: 2 migration(s)\n"


async def test_node_example_builds_and_serves_and_reuses_node_modules(stack: Running) -> None:
    app = stack.app_name("nodeex")
    first = await cli(stack, "deploy", app, str(EXAMPLES / "node-app"), time_limit=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "plan: build: node (package.json, package-lock.json)" in first.stdout, first.stdout
    assert "plan: processes.web: `npm start`" in first.stdout, first.stdout
    assert get(stack.port, app).text == "node-app: built with express 4.21.2 (production)\n"
    second = await cli(stack, "deploy", app, str(EXAMPLES / "node-app"), time_limit=600)
    assert second.returncode == 0, second.stdout + second.stderr
    _installed_nothing(stack.runtime, second.stdout, "node_modules", "npm ci")
    assert "node-app: built public/built.txt" in second.stdout or (
        stack.runtime == "docker" and "RUN npm run build" in second.stdout), second.stdout
    assert get(stack.port, app).text == "node-app: built with express 4.21.2 (production)\n"


async def test_static_site_is_served_by_the_builtin_web_process(stack: Running) -> None:
    app = stack.app_name("staticex")
    done = await cli(stack, "deploy", app, str(EXAMPLES / "static-site"), time_limit=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "plan: build: static (index.html)" in done.stdout, done.stdout
    page = get(stack.port, app)
    assert page.status_code == 200 and "<h1>static-site</h1>" in page.text
    assert get(stack.port, app, "/style.css").text == "h1 { color: teal; }\n"


# ---------------------------------------------------------------- refused, naming the file


async def _refused(stack: Running, source: Path, *expected: str) -> str:
    app = stack.app_name("bpbad")
    done = await cli(stack, "deploy", app, str(source), time_limit=600)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "build-error" in done.stdout, done.stdout
    for text in expected:
        assert text in done.stdout, (text, done.stdout)
    assert get(stack.port, app).status_code in (404, 503)
    return done.stdout


async def test_a_missing_interpreter_is_a_build_error(
        stack: Running, tmp_path: Path) -> None:
    source = copied(tmp_path, "python-app")
    (source / ".python-version").write_text("3.99\n")
    await _refused(stack, source, ".python-version: asks for Python 3.99")


async def test_an_unparsable_requirements_file_is_a_build_error(
        stack: Running, tmp_path: Path) -> None:
    source = copied(tmp_path, "python-app")
    text = (source / "requirements.txt").read_text()
    (source / "requirements.txt").write_text(text + "<<<<<<< HEAD\n")
    line = len(text.splitlines()) + 1
    await _refused(stack, source, f"requirements.txt:{line}: '<<<<<<< HEAD' is not a requirement")


async def test_a_dependency_that_does_not_exist_is_a_build_error(
        stack: Running, tmp_path: Path) -> None:
    source = copied(tmp_path, "python-app")
    (source / "requirements.txt").write_text("dockyard-no-such-package-4f1c==1.0\n")
    await _refused(stack, source, "requirements.txt: Install requirements.txt failed",
                   "dockyard-no-such-package-4f1c")


async def test_a_python_app_without_a_procfile_is_told_what_to_add(
        stack: Running, tmp_path: Path) -> None:
    source = copied(tmp_path, "python-app")
    (source / "Procfile").unlink()
    await _refused(stack, source, "no web process", "found app.py",
                   "`web: gunicorn app:app`")


async def test_a_malformed_package_json_is_a_build_error(
        stack: Running, tmp_path: Path) -> None:
    source = copied(tmp_path, "node-app")
    (source / "package.json").write_text('{\n  "name": "node-app",\n  "dependencies": {,}\n}\n')
    await _refused(stack, source, "package.json:3: JSON is malformed")


async def test_a_lock_file_that_does_not_match_is_a_build_error(
        stack: Running, tmp_path: Path) -> None:
    source = copied(tmp_path, "node-app")
    package = json.loads((source / "package.json").read_text())
    package["dependencies"]["express"] = "4.21.1"
    (source / "package.json").write_text(json.dumps(package, indent=2))
    await _refused(stack, source, "package-lock.json: npm ci failed", "in sync")

"""A config change makes a new release of the same build and runs the release phase again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from dockyard.api_client import api_get
from dockyard.contract.events import DeploySucceeded
from tests.e2e.apps import get, make_app
from tests.e2e.cli_support import cli, deploy, deployment_of, events_of
from tests.e2e.conftest import Running

# The value never appears in a command's output: only whether it is what was set.
RELEASE = 'test "$GREETING" = hello && echo greeting-ok || echo greeting-missing'


def greeting_app(root: Path, runtime: str) -> Path:
    """An app whose page says the GREETING its web process was started with."""
    if runtime == "docker":
        serve = "exec busybox httpd -f -p $PORT -h $d"
    else:
        serve = "exec python3 -m http.server $PORT --bind 127.0.0.1 --directory $d"
    web = f'd=$(mktemp -d) && echo "greeting [$GREETING]" > $d/index.html && {serve}'
    return make_app(root, runtime, "v1",
                    files={"Procfile": f"web: {web}\nrelease: {RELEASE}\n"})


async def releases_of(running: Running, app: str, count: int) -> list[dict]:  # type: ignore[type-arg]
    """The api's releases of the app, once it shows `count` of them (newest first)."""
    deadline = time.monotonic() + 15
    while True:
        rows = await asyncio.to_thread(api_get, running.settings, f"/apps/{app}/releases")
        if len(rows) >= count or time.monotonic() > deadline:
            return rows  # type: ignore[no-any-return]
        await asyncio.sleep(0.2)


async def test_config_set_and_unset_release_the_same_build(running: Running,
                                                            tmp_path: Path) -> None:
    app = running.app_name("greet")
    v1 = await deploy(running, app, greeting_app(tmp_path / "src", running.runtime))
    assert isinstance(v1.end, DeploySucceeded), (v1.end, v1.text)
    assert "greeting-missing" in v1.out
    assert get(running.port, app).text == "greeting []\n"

    proc = await cli(running, "config", "set", app, "GREETING=hello")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "greeting-ok" in proc.stdout and "===== release =====" in proc.stdout
    assert "succeeded" in proc.stdout and "no new build" in proc.stdout
    assert "hello" not in proc.stdout and "[REDACTED]" in proc.stdout, "values are redacted"
    dep = deployment_of(proc.stdout)

    rows = await releases_of(running, app, 2)
    new, old = rows[0], rows[1]
    assert new["kind"] == "config" and old["kind"] == "source"
    assert new["build_id"] == old["build_id"]
    assert new["number"] == old["number"] + 1 and new["deployment_id"] == dep
    assert new["config_version"] > old["config_version"]
    assert new["live"] is True and old["live"] is False
    # The new release's web process runs with the new value.
    assert get(running.port, app).text == "greeting [hello]\n"
    types = [e.type for e in await events_of(running, app, dep)]
    assert "dockyard.build.succeeded" in types and "dockyard.release.succeeded" in types

    shown = await cli(running, "config", "show", app)
    assert shown.returncode == 0 and "GREETING=hello" in shown.stdout, shown.stdout

    proc = await cli(running, "config", "unset", app, "GREETING")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "greeting-missing" in proc.stdout
    rows = await releases_of(running, app, 3)
    assert rows[0]["kind"] == "config" and rows[0]["build_id"] == old["build_id"]
    assert rows[0]["number"] == new["number"] + 1
    assert rows[0]["config_version"] > new["config_version"]
    assert get(running.port, app).text == "greeting []\n"
    shown = await cli(running, "config", "show", app)
    assert "GREETING" not in shown.stdout


async def test_config_before_any_release_is_stored_for_the_first_deploy(
        running: Running, tmp_path: Path) -> None:
    app = running.app_name("early")
    proc = await cli(running, "config", "set", app, "GREETING=hello", "--create")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no release yet" in proc.stdout
    assert await events_of(running, app) == [], "nothing is deployed by storing config"
    shown = await cli(running, "config", "show", app)
    assert "GREETING=hello" in shown.stdout

    first = await deploy(running, app, greeting_app(tmp_path / "src", running.runtime))
    assert isinstance(first.end, DeploySucceeded), (first.end, first.text)
    assert "greeting-ok" in first.out
    assert get(running.port, app).text == "greeting [hello]\n"


async def test_bad_assignments_are_refused_and_change_nothing(running: Running) -> None:
    app = running.app_name("badcfg")
    ok = await cli(running, "config", "set", app, "KEEP=kept", "--create")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    before = await running.client.config_show(app)
    for pair, problem in (("FOO", "'FOO' is not KEY=VALUE"),
                          ("1X=y", "'1X' is not a valid variable name"),
                          ("PORT=8000", "PORT is set by Dockyard itself")):
        proc = await cli(running, "config", "set", app, "OTHER=x", pair)
        assert proc.returncode == 2, (pair, proc.stdout, proc.stderr)
        assert problem in proc.stderr, (pair, proc.stderr)
    bad = await cli(running, "config", "unset", app, "PORT")
    assert bad.returncode == 2 and "PORT is set by Dockyard itself" in bad.stderr, bad.stderr
    assert await running.client.config_show(app) == before
    assert await events_of(running, app) == []

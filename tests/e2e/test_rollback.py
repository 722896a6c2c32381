"""Rollback on the real stack, on both runtimes: a new release of an earlier release's build with
its config, the release phase run again; unknown and no-longer-kept releases refused in one line;
the HTTP API's rollback."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from dockyard.client import Followers
from dockyard.contract.events import BuildStarted, BuildSucceeded, DeployFailed, DeploySucceeded
from tests.e2e import api_support
from tests.e2e.apps import get, make_app
from tests.e2e.cli_support import DOCKYARD, cli_env, deploy, deployment_of, events_of
from tests.e2e.conftest import RUNTIMES, Running, start_running, stop_running

KEEP = 2


@pytest.fixture(scope="module", params=RUNTIMES)
async def running(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """A stack keeping the artifacts of the last two live releases."""
    r = await start_running(tmp_path_factory.mktemp(f"stack-{request.param}"), request.param,
                            keep_releases=KEEP)
    yield r
    await stop_running(r)


def source(root: Path, runtime: str, version: str) -> Path:
    """An app whose page says its code version and the GREETING its web process got; predeploy
    writes the GREETING it ran with into the artifact (www/stamp.txt)."""
    if runtime == "docker":
        serve = "exec busybox httpd -f -p $PORT -h $d"
    else:
        serve = "exec python3 -m http.server $PORT --bind 127.0.0.1 --directory $d"
    web = (f'd=$(mktemp -d) && cp www/stamp.txt $d/ && echo "{version} [$GREETING]" > '
           f"$d/index.html && {serve}")
    return make_app(root, runtime, version, files={"Procfile": f"web: {web}\n"},
                    toml='[[predeploy]]\ncommand = "echo \\"$GREETING\\" > www/stamp.txt"\n\n'
                         '[[postdeploy]]\ncommand = "echo postdeploy-ran"\n')


async def rollback(running: Running, *args: str) -> subprocess.CompletedProcess[str]:
    """`dockyard rollback ARGS...` as a user runs it (with the stack's DOCKYARD_KEEP_RELEASES)."""
    env = {**cli_env(running), "DOCKYARD_KEEP_RELEASES": str(KEEP)}
    return await asyncio.to_thread(subprocess.run, [DOCKYARD, "rollback", *args], env=env,
                                   capture_output=True, text=True, timeout=300)


def exists(running: Running, artifact: str) -> bool:
    """Whether a build artifact (release directory or image) is still there."""
    if running.runtime == "docker":
        return subprocess.run(["docker", "image", "inspect", artifact], capture_output=True,
                              check=False).returncode == 0
    return Path(artifact).exists()


def page(running: Running, app: str) -> tuple[str, str]:
    return get(running.port, app).text, get(running.port, app, "/stamp.txt").text


async def test_rollback_runs_an_earlier_build_with_its_config(running: Running,
                                                              tmp_path: Path) -> None:
    app = running.app_name("roll")
    await running.client.config_change(app, {"GREETING": "one"}, [])
    v1 = await deploy(running, app, source(tmp_path / "v1", running.runtime, "code-1"))
    assert isinstance(v1.end, DeploySucceeded), (v1.end, v1.text)
    assert "postdeploy-ran" in v1.out
    assert page(running, app) == ("code-1 [one]\n", "one\n")
    await running.client.config_change(app, {"GREETING": "two"}, [])
    v2 = await deploy(running, app, source(tmp_path / "v2", running.runtime, "code-2"))
    assert isinstance(v2.end, DeploySucceeded), (v2.end, v2.text)
    assert page(running, app) == ("code-2 [two]\n", "two\n")

    # Back to the release before the live one: v1's code, v1's config, predeploy run again.
    proc = await rollback(running, app)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "does not roll back databases" in proc.stderr
    assert f"rolling back {app} to v1" in proc.stdout
    assert f"succeeded: {app} v3 is live" in proc.stdout, proc.stdout
    assert "===== predeploy =====" in proc.stdout and "postdeploy-ran" not in proc.stdout
    assert page(running, app) == ("code-1 [one]\n", "one\n")
    dep = deployment_of(proc.stdout)
    events = await events_of(running, app, dep)
    started = next(e for e in events if isinstance(e, BuildStarted))
    built = next(e for e in events if isinstance(e, BuildSucceeded))
    assert started.data.kind == "rollback" and built.data.spec.kind == "rollback"
    assert built.data.spec.rolled_back_to == 1
    first = next(e for e in await events_of(running, app, v1.end.deployment_id)
                 if isinstance(e, BuildSucceeded))
    assert built.data.spec.build_id == first.data.spec.build_id
    assert built.data.spec.build_artifact == first.data.spec.build_artifact

    async def listed() -> list[dict[str, object]] | None:
        async with api_support.client(running) as http:
            rows: list[dict[str, object]] = (await http.get(f"/apps/{app}/releases")).json()
        return rows if rows and rows[0]["number"] == 3 and rows[0]["live"] else None

    v3 = (await api_support.until(listed, "v3 in the releases"))[0]
    assert (v3["kind"], v3["build_id"], v3["config_version"]) == (
        "rollback", first.data.spec.build_id, 1)

    # Unknown releases: one line, exit 2, nothing requested.
    for args, error in (((app, "--to", "v9"), f"{app} has no release v9 that went live"),
                        ((app, "--to", "three"), "is not a release number"),
                        ((app, "--to", "v3"), f"v3 is the live release of {app}"),
                        (("no-such-app",), "no app named 'no-such-app'")):
        bad = await rollback(running, *args)
        assert bad.returncode == 2, (args, bad.stdout, bad.stderr)
        assert error in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert "Traceback" not in bad.stderr + bad.stdout

    # A new deploy: v3 and v4 are kept (2); v2 is no longer, its artifacts are gone.
    v4 = await deploy(running, app, source(tmp_path / "v4", running.runtime, "code-4"))
    assert isinstance(v4.end, DeploySucceeded), (v4.end, v4.text)
    v2_spec = next(e for e in await events_of(running, app, v2.end.deployment_id)
                   if isinstance(e, BuildSucceeded)).data.spec

    async def retired() -> bool:
        return any(e.type == "dockyard.retire.succeeded"
                   for e in await events_of(running, app, v4.end.deployment_id))

    await api_support.until(retired, "v4's retire")
    assert not exists(running, v2_spec.build_artifact), "v2 is past the kept releases"
    # v1's build stays: v3 (kept) runs it.
    assert exists(running, first.data.spec.build_artifact)
    pruned = await rollback(running, app, "--to", "2")
    assert pruned.returncode == 2, pruned.stdout + pruned.stderr
    assert pruned.stderr.strip() == "error: v2 is no longer kept (DOCKYARD_KEEP_RELEASES=2)"

    # The builder decides too (a request made anyway): the rollback fails, v4 keeps serving.
    end = await running.client.deploy(app, None, Followers(), kind="rollback",
                                      wait=120, to_release=2)
    assert isinstance(end, DeployFailed) and end.data.status == "build-error", end
    assert end.data.reason == "v2 is no longer kept (DOCKYARD_KEEP_RELEASES=2)"
    assert page(running, app) == ("code-4 [two]\n", "two\n")

    # The HTTP API, with the token: back to the release before the live one (v3: v1's build).
    async with api_support.client(running) as http:
        anonymous = await httpx.AsyncClient(base_url=api_support.base_url(running)).post(
            f"/apps/{app}/rollback", json={})
        assert anonymous.status_code == 401
        refused = await http.post(f"/apps/{app}/rollback", json={"release": 1})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "v1 is no longer kept (DOCKYARD_KEEP_RELEASES=2)"
        unknown = await http.post(f"/apps/{app}/rollback", json={"release": 40})
        assert unknown.status_code == 404 and "no release v40" in unknown.json()["error"]
        r = await http.post(f"/apps/{app}/rollback", json={})
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["operation"] == "rollback" and "databases" in body["warning"]
        ended = await api_support.ended(http, body["deployment_id"])
        assert ended["status"] == "succeeded", ended
    assert page(running, app) == ("code-1 [one]\n", "one\n")


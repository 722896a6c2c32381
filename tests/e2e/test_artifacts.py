"""Nothing a deploy made outlives its release's turn among the kept ones
(DOCKYARD_KEEP_RELEASES, here 1) unless the live release uses it."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dockyard.client import Followers
from dockyard.contract.events import DeploySucceeded
from tests.e2e.apps import get, make_app
from tests.e2e.conftest import RUNTIMES, Running, start_running, stop_running


@pytest.fixture(scope="module", params=RUNTIMES)
async def running(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """A stack keeping only the live release's artifacts (no rollback target kept)."""
    r = await start_running(tmp_path_factory.mktemp(f"stack-{request.param}"), request.param,
                            keep_releases=1)
    yield r
    await stop_running(r)


def exists(running: Running, artifact: str) -> bool:
    """Whether a build artifact (release directory or image) is still there."""
    if running.runtime == "docker":
        return subprocess.run(["docker", "image", "inspect", artifact], capture_output=True,
                              check=False).returncode == 0
    return Path(artifact).exists()


async def artifacts_of(running: Running, app: str, deployment_id: str) -> set[str]:
    found = set()
    for event in await running.client.events(app, idle=0.3):
        spec = getattr(event.data, "spec", None)
        if event.deployment_id == deployment_id and spec is not None:
            found |= {a for a in (spec.artifact, spec.build_artifact) if a}
    return found


async def retired(running: Running, app: str, deployment_id: str) -> bool:
    return any(e.type == "dockyard.retire.succeeded" and e.deployment_id == deployment_id
               for e in await running.client.events(app, idle=0.3))


async def test_a_replaced_release_leaves_no_artifact(running: Running, tmp_path: Path) -> None:
    app = running.app_name("tidy")
    # A predeploy command, so each release has a built and a committed artifact.
    v1 = await running.client.deploy(
        app, make_app(tmp_path / "v1", running.runtime, "v1",
                      toml='[[predeploy]]\ncommand = "echo one > www/stamp.txt"\n'),
        Followers(), wait=240)
    assert isinstance(v1, DeploySucceeded), v1
    old = await artifacts_of(running, app, v1.deployment_id)
    assert len(old) == 2 and all(exists(running, a) for a in old)

    v2 = await running.client.deploy(
        app, make_app(tmp_path / "v2", running.runtime, "v2",
                      toml='[[predeploy]]\ncommand = "echo two > www/stamp.txt"\n'),
        Followers(), wait=240)
    assert isinstance(v2, DeploySucceeded), v2
    for _ in range(100):
        if await retired(running, app, v2.deployment_id):
            break
        await asyncio.sleep(0.2)
    assert await retired(running, app, v2.deployment_id)
    assert not any(exists(running, a) for a in old), "v1's artifacts outlived its replacement"
    live = await artifacts_of(running, app, v2.deployment_id)
    assert all(exists(running, a) for a in live)
    assert get(running.port, app, "/stamp.txt").text == "two\n"

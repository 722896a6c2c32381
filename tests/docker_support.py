"""Docker test helpers: skip or fail when no engine answers, and the locally built test image."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from pathlib import Path

import pytest

from dockyard.runtime.engine import docker_available

TEST_IMAGE = "dockyard-test/busybox:latest"
REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO_ROOT / "infra" / "test-image" / "build.sh"

_answer: bool | None = None
_image_built = False


def _engine_answers() -> bool:
    """docker_available(), run on a loop of its own so it works inside a running loop too."""
    global _answer
    if _answer is None:
        result: list[bool] = []
        # A thread with a fresh loop: asyncio.run refuses to run inside pytest-asyncio's loop.
        thread = threading.Thread(target=lambda: result.append(asyncio.run(docker_available())))
        thread.start()
        thread.join()
        _answer = bool(result and result[0])
    return _answer


def require_docker() -> None:
    """Skip when no engine answers and CI is unset; with CI set, a missing engine fails."""
    if _engine_answers():
        return
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but no Docker engine answers on {where}", pytrace=False)
    pytest.skip(f"no Docker engine answers on {where} (and CI is unset, so this is not a failure)")


def require_swarm() -> None:
    """The engine must be a Swarm manager (`docker swarm init`, as .ci/run does): a skip that
    says so when CI is unset, a failure when it is set."""
    require_docker()
    proc = subprocess.run(["docker", "info", "--format",
                           "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"],
                          capture_output=True, text=True, timeout=60, check=False)
    if proc.stdout.split() == ["active", "true"]:
        return
    why = ("the Docker engine is not a Swarm manager (run `docker swarm init "
           f"--advertise-addr 127.0.0.1`); it says {proc.stdout.strip() or proc.stderr.strip()!r}")
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {why}", pytrace=False)
    pytest.skip(f"{why} (and CI is unset, so this is not a failure)")


def ensure_test_image() -> str:
    """Build dockyard-test/busybox:latest once (infra/test-image/build.sh); returns its name."""
    global _image_built
    if not _image_built:
        proc = subprocess.run(["sh", str(BUILD_SCRIPT)], capture_output=True, text=True,
                              timeout=300, check=False)
        if proc.returncode != 0:
            pytest.fail(f"{BUILD_SCRIPT} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}",
                        pytrace=False)
        _image_built = True
    return TEST_IMAGE

"""The docker runtime against the real engine (images built locally, no registry)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiodocker
import httpx
import pytest

from dockyard.runtime.base import (
    TIMEOUT_EXIT_CODE,
    BuildError,
    InstanceSpec,
    OneOffSpec,
    StartError,
)
from dockyard.runtime.docker import DockerRuntime
from tests.docker_support import ensure_test_image, require_docker

WEB_APP = Path(__file__).parent / "apps" / "docker-web"
MIB = 1024 * 1024


class Lines:
    """A LogSink keeping what it is given."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    async def line(self, text: str, stream: str = "out") -> None:
        self.lines.append((stream, text))

    def of(self, stream: str) -> list[str]:
        return [t for s, t in self.lines if s == stream]

    @property
    def text(self) -> str:
        return "\n".join(t for _, t in self.lines)


@pytest.fixture(scope="module")
def app() -> str:
    """An app name of this module's own: every container and image it makes carries it."""
    require_docker()
    ensure_test_image()
    return f"t{uuid.uuid4().hex[:10]}"


async def _labelled(docker: aiodocker.Docker, app: str) -> tuple[list[str], list[str]]:
    filters = json.dumps({"label": [f"dockyard.app={app}"]})
    containers = await docker.containers.list(all=True, filters=filters)
    images = await docker.images.list(all=True, filters={"label": [f"dockyard.app={app}"]})
    return [c.id for c in containers], [i["Id"] for i in images]


async def networks_of(docker: aiodocker.Docker, app: str) -> list[str]:
    """The networks labelled with an app (its own, while something of it runs)."""
    found = await docker.networks.list(filters={"label": [f"dockyard.app={app}"]})
    return [str(n["Name"]) for n in found]


@pytest.fixture(scope="module")
async def engine(app: str) -> AsyncIterator[aiodocker.Docker]:
    """A raw engine client; at the end it checks nothing the tests labelled remains."""
    docker = aiodocker.Docker()
    yield docker
    containers, images = await _labelled(docker, app)
    for cid in containers:
        await docker.containers.container(cid).delete(force=True)
    pending = list(images)
    while pending:
        # Children first: an image with dependent children cannot be removed yet.
        kept = []
        for image in pending:
            try:
                await docker.images.delete(image, force=True)
            except aiodocker.DockerError as exc:
                if exc.status == 409:
                    kept.append(image)
                else:
                    assert exc.status == 404  # went with its child
        assert len(kept) < len(pending), f"images that cannot be removed: {kept}"
        pending = kept
    left = await _labelled(docker, app)
    networks = await networks_of(docker, app)
    for name in networks:
        await (await docker.networks.get(name)).delete()
    await docker.close()
    assert containers == [], "the runtime left containers behind"
    assert left == ([], []), "cleanup left labelled containers or images"
    assert networks == [], "the runtime left the app's network behind"


@pytest.fixture(scope="module")
async def runtime(engine: aiodocker.Docker) -> AsyncIterator[DockerRuntime]:
    rt = DockerRuntime()
    yield rt
    await rt.close()


@pytest.fixture(scope="module")
async def web_image(runtime: DockerRuntime, app: str) -> str:
    return await runtime.build(app, "web1", WEB_APP, Lines())


@pytest.fixture(scope="module")
async def base_image(engine: aiodocker.Docker) -> str:
    return str((await engine.images.inspect(ensure_test_image()))["Id"])


def spec(app: str, artifact: str, command: str, **overrides: Any) -> OneOffSpec:
    base = OneOffSpec(
        app=app, deployment_id=uuid.uuid4().hex, release=1, phase="postdeploy",
        container="postdeploy-1", artifact=artifact, command=command,
        env={"APP": app, "CONTAINER": "postdeploy-1"}, timeout=60.0, memory=64 * MIB,
        kill_grace=1.0)
    return replace(base, **overrides)


async def containers_of(engine: aiodocker.Docker, s: OneOffSpec) -> list[str]:
    filters = json.dumps({"label": [f"dockyard.deployment={s.deployment_id}"]})
    return [c.id for c in await engine.containers.list(all=True, filters=filters)]


async def build_dockerfile(runtime: DockerRuntime, app: str, tmp_path: Path, dockerfile: str,
                           log: Lines | None = None) -> str:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    return await runtime.build(app, uuid.uuid4().hex[:8], tmp_path, log or Lines())


# ---------------------------------------------------------------- build


async def test_build_streams_output_and_returns_the_image_id(
        runtime: DockerRuntime, engine: aiodocker.Docker, app: str) -> None:
    log = Lines()
    image = await runtime.build(app, "b1", WEB_APP, log)
    assert image.startswith("sha256:")
    assert any("COPY www /www" in line for line in log.of("out")), log.lines
    info = await engine.images.inspect(f"dockyard/{app}:b1")
    assert info["Id"] == image
    assert info["Config"]["Labels"]["dockyard.app"] == app
    assert info["Config"]["Labels"]["dockyard.build"] == "b1"


async def test_a_failing_run_is_a_build_error_with_the_builders_message(
        runtime: DockerRuntime, app: str, tmp_path: Path) -> None:
    log = Lines()
    with pytest.raises(BuildError, match="returned a non-zero code: 3"):
        await build_dockerfile(runtime, app, tmp_path,
                               "FROM dockyard-test/busybox:latest\n"
                               "RUN echo boom-output && exit 3\n", log)
    assert "boom-output" in log.text


async def test_a_missing_dockerfile_is_a_build_error_naming_it(
        runtime: DockerRuntime, app: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM dockyard-test/busybox:latest\n")
    with pytest.raises(BuildError, match="Containerfile"):
        await runtime.build(app, "b2", tmp_path, Lines(), dockerfile="Containerfile")


# ---------------------------------------------------------------- one-off


async def test_oneoff_streams_output_and_propagates_the_exit_code(
        runtime: DockerRuntime, engine: aiodocker.Docker, app: str, base_image: str) -> None:
    s = spec(app, base_image, "echo out-1; echo err-1 >&2; echo out-2 && exit 7")
    log = Lines()
    result = await runtime.run_oneoff(s, log)
    assert result.exit_code == 7
    assert not result.timed_out and not result.cancelled and result.artifact is None
    assert log.of("out") == ["out-1", "out-2"]
    assert log.of("err") == ["err-1"]
    assert await containers_of(engine, s) == []


async def test_oneoff_env_is_exactly_the_spec_env(
        runtime: DockerRuntime, app: str, base_image: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_HOST_ONLY", "must-not-leak")
    s = spec(app, base_image, "env", env={"APP": app, "GREETING": "hello world"})
    log = Lines()
    assert (await runtime.run_oneoff(s, log)).exit_code == 0
    env = dict(line.split("=", 1) for line in log.of("out") if "=" in line)
    assert env["APP"] == app and env["GREETING"] == "hello world"
    assert "DOCKYARD_HOST_ONLY" not in env and "must-not-leak" not in log.text
    # Only the spec's vars, the image's PATH and what the engine and sh always set.
    assert set(env) <= {"APP", "GREETING", "PATH", "HOSTNAME", "HOME", "SHLVL", "PWD"}


async def test_oneoff_past_its_timeout_is_killed_with_minus_128(
        runtime: DockerRuntime, engine: aiodocker.Docker, app: str, base_image: str) -> None:
    # sh as PID 1 ignores SIGTERM, so this also exercises the SIGKILL after the grace.
    s = spec(app, base_image, "echo started; sleep 30", timeout=1.0, kill_grace=1.0)
    log = Lines()
    began = time.monotonic()
    result = await runtime.run_oneoff(s, log)
    assert result.exit_code == TIMEOUT_EXIT_CODE == -128
    assert result.timed_out and not result.cancelled
    assert time.monotonic() - began < 15
    assert log.of("out") == ["started"]
    assert await containers_of(engine, s) == []


async def test_oneoff_cancel_stops_it(
        runtime: DockerRuntime, engine: aiodocker.Docker, app: str, base_image: str) -> None:
    s = spec(app, base_image, "sleep 30")
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, cancel.set)
    result = await runtime.run_oneoff(s, Lines(), cancel)
    assert result.exit_code == TIMEOUT_EXIT_CODE
    assert result.cancelled and not result.timed_out
    assert await containers_of(engine, s) == []


async def test_oneoff_memory_limit_is_enforced(
        runtime: DockerRuntime, app: str, base_image: str) -> None:
    s = spec(app, base_image, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
                              " || cat /sys/fs/cgroup/memory.max", memory=64 * MIB)
    log = Lines()
    assert (await runtime.run_oneoff(s, log)).exit_code == 0
    assert log.of("out") == [str(64 * MIB)]


async def test_oneoff_without_entrypoint_runs_the_command_through_sh(
        runtime: DockerRuntime, app: str, base_image: str) -> None:
    log = Lines()
    result = await runtime.run_oneoff(spec(app, base_image, "A=1; echo a$A && echo b"), log)
    assert result.exit_code == 0
    assert log.of("out") == ["a1", "b"]


async def test_oneoff_honours_the_image_entrypoint(
        runtime: DockerRuntime, app: str, tmp_path: Path) -> None:
    image = await build_dockerfile(
        runtime, app, tmp_path,
        "FROM dockyard-test/busybox:latest\n"
        'ENTRYPOINT ["/bin/sh","-c","echo from-entrypoint; exec \\"$@\\"","--"]\n')
    log = Lines()
    result = await runtime.run_oneoff(spec(app, image, "echo from-command; exit 4"), log)
    assert result.exit_code == 4
    assert log.of("out") == ["from-entrypoint", "from-command"]


async def test_oneoff_commit_keeps_the_files_and_the_original_config(
        runtime: DockerRuntime, engine: aiodocker.Docker, app: str, web_image: str) -> None:
    s = spec(app, web_image, "echo baked > /www/baked.txt && echo done", phase="predeploy",
             container="predeploy-1", commit=True,
             env={"APP": app, "SECRET_TOKEN": "supersecret-value"})
    log = Lines()
    result = await runtime.run_oneoff(s, log)
    assert result.exit_code == 0, log.lines
    assert result.artifact is not None and result.artifact.startswith("sha256:")
    assert result.artifact != web_image
    original = (await engine.images.inspect(web_image))["Config"]
    committed = (await engine.images.inspect(result.artifact))["Config"]
    assert committed["Cmd"] == original["Cmd"]
    assert committed["Entrypoint"] == original["Entrypoint"]
    assert "supersecret-value" not in json.dumps(committed)
    assert committed["Labels"]["dockyard.app"] == app
    assert await containers_of(engine, s) == []

    read = Lines()
    later = spec(app, result.artifact, "cat /www/baked.txt; echo ${SECRET_TOKEN:-unset}")
    assert (await runtime.run_oneoff(later, read)).exit_code == 0
    assert read.of("out") == ["baked", "unset"]


async def _wait_running(engine: aiodocker.Docker, s: OneOffSpec) -> list[str]:
    for _ in range(100):
        ids = await containers_of(engine, s)
        if ids and (await engine.containers.container(ids[0]).show())["State"]["Running"]:
            return ids
        await asyncio.sleep(0.05)
    raise AssertionError("the one-off container never ran")


async def test_a_restarted_runner_attaches_to_the_running_oneoff(
        runtime: DockerRuntime, engine: aiodocker.Docker, app: str, base_image: str) -> None:
    # It runs until told to end: a loaded machine cannot outlast it before the test looks.
    s = spec(app, base_image, "echo marker-started; trap 'echo done; exit 0' USR1; "
                              "while :; do sleep 0.05; done")
    first = asyncio.create_task(runtime.run_oneoff(s, Lines()))
    ids = await _wait_running(engine, s)
    # A crashed hook-runner: its task goes away, the container is left running.
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await containers_of(engine, s) == ids

    log = Lines()
    restarted = DockerRuntime()
    try:
        second = asyncio.create_task(restarted.run_oneoff(s, log))
        for _ in range(600):  # attached once it reads the container's output again
            if log.of("out"):
                break
            await asyncio.sleep(0.05)
        assert log.of("out") == ["marker-started"]
        assert await containers_of(engine, s) == ids  # attached, not started again
        await engine.containers.container(ids[0]).kill(signal="USR1")
        result = await second
    finally:
        await restarted.close()
    assert result.exit_code == 0
    assert log.of("out") == ["marker-started", "done"]  # the command ran once
    assert await containers_of(engine, s) == []


async def test_a_restarted_runner_takes_the_exit_code_of_an_ended_oneoff(
        runtime: DockerRuntime, engine: aiodocker.Docker, app: str, base_image: str) -> None:
    # It ends when told (not after a fixed time a loaded machine may outlast before the test
    # has seen it run): the runner is gone by then, so nobody removes the ended container.
    s = spec(app, base_image, "trap 'echo finished; exit 3' USR1; while :; do sleep 0.05; done")
    first = asyncio.create_task(runtime.run_oneoff(s, Lines()))
    ids = await _wait_running(engine, s)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    container = engine.containers.container(ids[0])
    await container.kill(signal="USR1")
    await container.wait()

    log = Lines()
    result = await runtime.run_oneoff(s, log)
    assert result.exit_code == 3
    assert log.of("out") == ["finished"]
    assert await containers_of(engine, s) == []


# ---------------------------------------------------------------- instances


def instance(app: str, artifact: str, **overrides: Any) -> InstanceSpec:
    base = InstanceSpec(app=app, deployment_id=uuid.uuid4().hex, release=3, process="web",
                        index=1, artifact=artifact, command="", env={"APP": app})
    return replace(base, **overrides)


async def _get(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        for _ in range(100):
            try:
                return await client.get(url)
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise AssertionError(f"nothing answered on {url}")


async def test_instance_serves_http_is_listed_and_stops(
        runtime: DockerRuntime, engine: aiodocker.Docker, app: str, web_image: str) -> None:
    s = instance(app, web_image)
    ref = await runtime.start_instance(s)
    assert ref.host == "127.0.0.1" and ref.port is not None
    assert ref.process == "web" and ref.release == 3
    response = await _get(f"http://127.0.0.1:{ref.port}/")
    assert response.status_code == 200 and "hello from docker-web" in response.text

    assert await runtime.start_instance(s) == ref  # re-attached, not a second container

    fresh = DockerRuntime()
    try:
        assert await fresh.list_instances(app) == [ref]
        await fresh.stop_instance(ref, grace=1.0)
        await fresh.stop_instance(ref, grace=1.0)  # idempotent
        assert await fresh.list_instances(app) == []
    finally:
        await fresh.close()
    filters = json.dumps({"label": [f"dockyard.deployment={s.deployment_id}"]})
    assert await engine.containers.list(all=True, filters=filters) == []


async def test_a_worker_instance_has_no_port(
        runtime: DockerRuntime, app: str, base_image: str) -> None:
    ref = await runtime.start_instance(
        instance(app, base_image, process="worker", command="exec sleep 30"))
    try:
        assert ref.port is None and ref.process == "worker"
        assert ref in await runtime.list_instances(app)
    finally:
        await runtime.stop_instance(ref, grace=0)


async def test_an_instance_that_exits_at_once_is_a_start_error(
        runtime: DockerRuntime, engine: aiodocker.Docker, app: str, base_image: str) -> None:
    s = instance(app, base_image, command="echo dying-words >&2; exit 1")
    with pytest.raises(StartError, match="dying-words"):
        await runtime.start_instance(s)
    filters = json.dumps({"label": [f"dockyard.deployment={s.deployment_id}"]})
    assert await engine.containers.list(all=True, filters=filters) == []


# ---------------------------------------------------------------- confined


async def test_oneoff_has_no_capabilities_no_privilege_gain_and_a_pids_limit(
        runtime: DockerRuntime, engine: aiodocker.Docker, app: str, base_image: str) -> None:
    log = Lines()
    s = spec(app, base_image, "grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status; "
                              "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null"
                              " || cat /sys/fs/cgroup/pids.max; test -e /var/run/docker.sock"
                              " && echo socket || echo no-socket")
    assert (await runtime.run_oneoff(s, log)).exit_code == 0
    assert [line.split() for line in log.of("out")] == [
        ["CapPrm:", "0000000000000000"], ["CapEff:", "0000000000000000"], ["NoNewPrivs:", "1"],
        ["256"], ["no-socket"]]
    assert await networks_of(engine, app) == []  # gone with the app's last container


async def test_a_fork_bomb_stops_at_the_pids_limit(
        runtime: DockerRuntime, engine: aiodocker.Docker, app: str, base_image: str) -> None:
    # The limit is checked first: without it the bomb is never lit.
    s = spec(app, base_image, "[ \"$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null"
                              " || cat /sys/fs/cgroup/pids.max)\" = 256 ] || exit 9; "
                              "bomb() { bomb | bomb & }; bomb; sleep 2; echo still-here",
             timeout=30.0)
    log = Lines()
    began = time.monotonic()
    result = await runtime.run_oneoff(s, log)
    assert result.exit_code != 9, "no pids limit"
    assert not result.timed_out and time.monotonic() - began < 30
    assert any("fork" in line or "Resource temporarily unavailable" in line
               for line in log.of("err")), log.lines[-5:]
    assert await containers_of(engine, s) == []


async def _address(engine: aiodocker.Docker, ref_id: str) -> str:
    """An instance's address on the one network it is on."""
    info = await engine.containers.container(ref_id).show()
    (network,) = info["NetworkSettings"]["Networks"].values()
    return str(network["IPAddress"])


async def test_a_oneoff_reaches_its_own_apps_instances_but_no_other_apps(
        engine: aiodocker.Docker, app: str, web_image: str, base_image: str) -> None:
    other = f"{app}-b"
    runtime = DockerRuntime()
    ours = await runtime.start_instance(instance(app, web_image))
    theirs = await runtime.start_instance(instance(other, web_image))
    try:
        targets = {"own": await _address(engine, ours.id),
                   "other": await _address(engine, theirs.id)}
        probe = "; ".join(
            f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 5000 | grep -q '^HTTP/1' "
            f"&& echo {name}-reached || echo {name}-refused" for name, ip in targets.items())
        # And the other app's port published on the host's loopback, through the gateway.
        probe += (f"; gw=$(ip route | awk '/default/ {{print $3}}'); "
                  f"nc -w 2 $gw {theirs.port} </dev/null && echo published-reached"
                  " || echo published-refused")
        log = Lines()
        assert (await runtime.run_oneoff(spec(app, base_image, probe), log)).exit_code == 0
        assert log.of("out") == ["own-reached", "other-refused", "published-refused"]
        assert await networks_of(engine, app) == [f"dockyard-{app}"]
    finally:
        await runtime.stop_instance(theirs, grace=0)
        await runtime.stop_instance(ours, grace=0)
        await runtime.close()
    assert await networks_of(engine, other) == []
    assert await networks_of(engine, app) == []

"""`--runtime auto` takes Docker when an engine answers, else the process runtime;
names are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.runtime.engine import docker_available
from dockyard.runtime.select import Runtimes, UnknownRuntimeError, resolve
from dockyard.settings import Settings, SettingsError


async def test_auto_follows_the_engine() -> None:
    expected = "docker" if await docker_available() else "process"
    assert await resolve("auto") == expected


async def test_auto_is_process_when_no_engine_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    # DOCKER_HOST pointing at a socket nobody listens on: no engine answers.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert await resolve("auto") == "process"


async def test_an_unknown_runtime_is_named_in_the_error() -> None:
    with pytest.raises(UnknownRuntimeError, match="'lxc'"):
        await resolve("lxc")


async def test_runtimes_make_each_runtime_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    runtimes = Runtimes(Settings(data_dir=tmp_path, runtime="process"))
    try:
        first = await runtimes.get()
        assert first.name == "process" and await runtimes.get("process") is first
    finally:
        await runtimes.close()


async def test_runtimes_are_made_with_the_containment_settings(tmp_path: Path) -> None:
    from dockyard.runtime.docker import DockerRuntime
    from dockyard.runtime.docker_config import Confinement
    from dockyard.runtime.process import ProcessRuntime

    settings = Settings.from_env(env={"DOCKYARD_DATA_DIR": str(tmp_path / "data"),
                                      "DOCKYARD_CAP_ADD": "net_bind_service, CHOWN",
                                      "DOCKYARD_PIDS_LIMIT": "64"})
    runtimes = Runtimes(settings)
    try:
        process = await runtimes.get("process")
        docker = await runtimes.get("docker")
        assert isinstance(process, ProcessRuntime) and isinstance(docker, DockerRuntime)
        assert process.apps_dir == tmp_path / "data.apps" and process.pids_limit == 64
        assert process.root == tmp_path / "data" / "process"
        assert docker.confinement == Confinement(cap_add=("NET_BIND_SERVICE", "CHOWN"),
                                                 pids_limit=64)
    finally:
        await runtimes.close()


def test_containment_settings_defaults_and_errors(tmp_path: Path) -> None:
    defaults = Settings.from_env(env={"DOCKYARD_DATA_DIR": str(tmp_path / "d")})
    assert (defaults.apps_root, defaults.cap_add, defaults.pids_limit) == (
        tmp_path / "d.apps", (), 256)
    chosen = Settings.from_env(env={"DOCKYARD_APPS_DIR": str(tmp_path / "apps")})
    assert chosen.apps_root == tmp_path / "apps"
    assert Settings.from_env(env={}, apps_dir="rel").apps_root == Path("rel").absolute()
    for env, named in (({"DOCKYARD_CAP_ADD": "ALL"}, "'ALL'"),
                       ({"DOCKYARD_CAP_ADD": "NET ADMIN"}, "'NET ADMIN'"),
                       ({"DOCKYARD_PIDS_LIMIT": "0"}, "at least 1"),
                       ({"DOCKYARD_PIDS_LIMIT": "many"}, "'many'")):
        with pytest.raises(SettingsError, match=named):
            Settings.from_env(env=env)

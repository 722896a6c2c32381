"""`--runtime auto` takes Docker when an engine answers, else the process runtime; names are checked."""

from __future__ import annotations

import pytest

from dockyard.runtime.engine import docker_available
from dockyard.runtime.select import Runtimes, UnknownRuntimeError, resolve
from dockyard.settings import Settings


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

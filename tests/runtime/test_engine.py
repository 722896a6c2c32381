"""Whether a Docker engine answers: yes for the real one, no (quickly) where none listens."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from dockyard.runtime.engine import docker_available
from tests.docker_support import require_docker


async def test_the_real_engine_answers() -> None:
    require_docker()
    assert await docker_available()


async def test_a_socket_nobody_listens_on_is_no_engine(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'docker.sock'}")
    assert not await docker_available()


async def test_an_engine_that_never_answers_is_given_up_on_in_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Accepts the connection and says nothing, like a hung engine.
    accepted: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    silent = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        assert not await docker_available(within=0.3)
    finally:
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()
    assert loop.time() - started < 5


async def test_a_refused_tcp_engine_is_no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
    assert not await docker_available()

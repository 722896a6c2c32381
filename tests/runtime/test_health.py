"""Health checks against real sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest

from dockyard.contract.plan import Health
from dockyard.runtime.base import StartError
from dockyard.runtime.health import (
    FIRST_RETRY,
    HealthError,
    http_request,
    listening,
    parse_status,
    probe_failure,
    retry_pause,
    wait_healthy,
)

HOST = "127.0.0.1"


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A tiny HTTP server: GET /ok → 200, anything else → 500."""
    request = await reader.readuntil(b"\r\n\r\n")
    path = request.split(b" ")[1]
    status = b"200 OK" if path == b"/ok" else b"500 Internal Server Error"
    writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
    await writer.drain()
    writer.close()


@pytest.fixture
async def http_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(answer, HOST, 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


def test_request_and_status_parsing() -> None:
    assert http_request("127.0.0.1", 8000, "healthz") == (
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: dockyard-health\r\n"
        b"Accept: */*\r\nConnection: close\r\n\r\n")
    assert parse_status(b"HTTP/1.1 204 No Content\r\n") == 204
    assert parse_status(b"SSH-2.0-OpenSSH\r\n") is None
    assert probe_failure(200) is None
    assert probe_failure(299) is None
    assert probe_failure(301) == "HTTP 301"
    assert probe_failure(None) == "the answer is not HTTP"
    assert issubclass(HealthError, StartError)


async def test_tcp_health_passes_against_a_listening_socket(http_port: int) -> None:
    await wait_healthy(HOST, http_port, Health(timeout=5))


async def test_tcp_health_fails_on_a_closed_port_within_the_timeout() -> None:
    port = closed_port()
    started = time.monotonic()
    with pytest.raises(HealthError) as err:
        await wait_healthy(HOST, port, Health(timeout=1, interval=0.1))
    elapsed = time.monotonic() - started
    assert 1 <= elapsed < 3
    message = str(err.value)
    assert f"{HOST}:{port} is not healthy" in message
    assert "TCP connect did not succeed within 1s" in message
    assert "refused" in message.lower()
    assert err.value.port == port


async def test_health_waits_for_a_server_that_starts_late() -> None:
    port = closed_port()

    async def listen_later() -> asyncio.Server:
        await asyncio.sleep(0.5)
        return await asyncio.start_server(answer, HOST, port)

    later = asyncio.create_task(listen_later())
    started = time.monotonic()
    await wait_healthy(HOST, port, Health(path="/ok", timeout=5, interval=0.1))
    assert time.monotonic() - started >= 0.5
    server = await later
    server.close()
    await server.wait_closed()


async def test_http_health_passes_on_200(http_port: int) -> None:
    await wait_healthy(HOST, http_port, Health(path="/ok", timeout=5))


async def test_http_health_fails_on_500(http_port: int) -> None:
    with pytest.raises(HealthError) as err:
        await wait_healthy(HOST, http_port, Health(path="/broken", timeout=0.6, interval=0.1))
    assert "HTTP GET /broken did not succeed within 0.6s" in str(err.value)
    assert "HTTP 500" in str(err.value)


async def test_http_health_fails_when_the_server_never_answers() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3)
        writer.close()

    server = await asyncio.start_server(silent, HOST, 0)
    port = int(server.sockets[0].getsockname()[1])
    started = time.monotonic()
    with pytest.raises(HealthError) as err:
        await wait_healthy(HOST, port, Health(path="/", timeout=1, interval=0.1))
    assert time.monotonic() - started < 2.5
    assert "no answer in time" in str(err.value)
    server.close()
    await server.wait_closed()


async def test_health_fails_early_when_the_instance_dies() -> None:
    proc = await asyncio.create_subprocess_exec("sh", "-c", "sleep 0.3")

    async def alive() -> bool:
        return proc.returncode is None

    started = time.monotonic()
    with pytest.raises(HealthError) as err:
        await wait_healthy(HOST, closed_port(), Health(timeout=30, interval=0.1), alive)
    assert time.monotonic() - started < 5  # long before the 30 s timeout
    assert "exited before it became healthy" in str(err.value)
    assert "TCP connect failed" in str(err.value)
    assert proc.returncode == 0


async def test_tcp_health_fails_when_the_port_accepts_and_closes_at_once() -> None:
    """What docker-proxy does on a published port when nothing listens in the container."""
    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(slam, HOST, 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        with pytest.raises(HealthError) as err:
            await wait_healthy(HOST, port, Health(timeout=1, interval=0.1))
        assert "closed at once" in str(err.value)
    finally:
        server.close()
        await server.wait_closed()


def test_a_failed_check_is_retried_soon_then_twice_as_late_up_to_the_interval() -> None:
    pauses = [retry_pause(n, 0.2) for n in range(1, 8)]
    assert pauses == [FIRST_RETRY, 0.02, 0.04, 0.08, 0.16, 0.2, 0.2]
    assert retry_pause(1000, 0.2) == 0.2


async def test_tcp_health_without_settle_takes_a_connection_closed_at_once() -> None:
    """A runtime whose ports nothing forwards (the process runtime) asks for no settle: an
    accepted connection is the instance itself listening."""
    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(slam, HOST, 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        await wait_healthy(HOST, port, Health(timeout=5, interval=0.1), settle=0)
    finally:
        server.close()
        await server.wait_closed()


async def test_listening_returns_once_the_port_accepts() -> None:
    port = closed_port()
    waiting = asyncio.create_task(listening(HOST, port))
    await asyncio.sleep(0)
    assert not waiting.done()
    server = await asyncio.start_server(answer, HOST, port)
    try:
        await asyncio.wait_for(waiting, 10)
    finally:
        server.close()
        await server.wait_closed()

"""Health checks shared by both runtimes: TCP connect to the port, or HTTP GET path → 2xx."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable

import structlog

from dockyard.contract.plan import Health
from dockyard.runtime.base import StartError

log = structlog.get_logger(__name__)

# A probe that hangs (a server that accepts and never answers) must not eat the whole timeout
# in one attempt, or a server that becomes ready later would be missed.
MAX_ATTEMPT = 5.0
# How long an accepted TCP connection must stay open to count behind a port forwarder
# (see held_open); a runtime whose ports nothing forwards asks for 0.
TCP_SETTLE = 0.2
# The first retry comes this soon; each next one twice as late, up to the check's interval.
FIRST_RETRY = 0.01


class HealthError(StartError):
    """An instance did not become healthy in time, or died while we waited."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"{host}:{port} is not healthy: {reason}")
        self.host = host
        self.port = port
        self.reason = reason


def http_request(host: str, port: int, path: str) -> bytes:
    """The bytes of the health GET request (HTTP/1.1, closed after the answer)."""
    target = path if path.startswith("/") else f"/{path}"
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: dockyard-health\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


def parse_status(line: bytes) -> int | None:
    """The status code of an HTTP status line, or None when it is not one."""
    parts = line.decode("latin-1").split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return None
    return int(parts[1])


def probe_failure(status: int | None) -> str | None:
    """Why an HTTP answer is not healthy, or None when it is."""
    if status is None:
        return "the answer is not HTTP"
    if 200 <= status < 300:
        return None
    return f"HTTP {status}"


def describe(exc: OSError) -> str:
    """A short reason for a socket error ("Connection refused"), not asyncio's wrapper text."""
    return os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__


async def held_open(reader: asyncio.StreamReader, settle: float = TCP_SETTLE) -> str | None:
    """None when an accepted connection stays open for `settle` seconds (or the server speaks)."""
    if settle <= 0:
        return None
    # A port forwarder (Docker's docker-proxy on a published port) accepts every connection
    # even when nothing listens behind it, then closes it at once: that is not healthy.
    try:
        data = await asyncio.wait_for(reader.read(1), settle)
    except TimeoutError:
        return None
    return None if data else "the connection was closed at once (nothing listens behind the port)"


async def probe(host: str, port: int, path: str | None,
                settle: float = TCP_SETTLE) -> str | None:
    """One check: None when healthy, else the reason it is not."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        return f"TCP connect failed ({describe(exc)})"
    try:
        if path is None:
            return await held_open(reader, settle)
        writer.write(http_request(host, port, path))
        await writer.drain()
        line = await reader.readline()
        if not line:
            return "the connection closed without an answer"
        return probe_failure(parse_status(line))
    except OSError as exc:
        what = f"HTTP GET {path}" if path is not None else "TCP connection"
        return f"{what} failed ({describe(exc)})"
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass  # the peer already reset it; nothing left to release


def retry_pause(attempts: int, interval: float) -> float:
    """How long to wait after the `attempts`-th failed try: FIRST_RETRY, then twice as long
    each time, never more than `interval`."""
    return min(FIRST_RETRY * (1 << min(attempts - 1, 30)), interval)


async def listening(host: str, port: int) -> None:
    """Return once something accepts a TCP connection on the port (retried soon at first)."""
    attempts = 0
    while True:
        attempts += 1
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(retry_pause(attempts, Health().interval))
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


async def wait_healthy(
    host: str,
    port: int,
    health: Health,
    alive: Callable[[], Awaitable[bool]] | None = None,
    settle: float = TCP_SETTLE,
) -> None:
    """Retry the check until it passes, soon at first, then every health.interval; HealthError
    after health.timeout. `settle`: how long a TCP check's connection must stay open."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + health.timeout
    what = f"HTTP GET {health.path}" if health.path else "TCP connect"
    last = "not checked yet"
    attempts = 0
    while True:
        if alive is not None and not await alive():
            raise HealthError(host, port, f"the instance exited before it became healthy "
                                          f"(last {what}: {last})")
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise HealthError(host, port, f"{what} did not succeed within {health.timeout:g}s "
                                          f"after {attempts} attempts (last: {last})")
        attempts += 1
        try:
            reason = await asyncio.wait_for(probe(host, port, health.path, settle),
                                            min(remaining, MAX_ATTEMPT))
        except TimeoutError:
            reason = "no answer in time"
        if reason is None:
            log.debug("healthy", host=host, port=port, check=what, attempts=attempts)
            return
        last = reason
        await asyncio.sleep(min(retry_pause(attempts, health.interval),
                                max(deadline - loop.time(), 0)))

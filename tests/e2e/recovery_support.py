"""Shared by the crash and load tests: a poller of one app through the proxy, a router run as
its own process, a ledger hooks write to, and waiting on conditions."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from dockyard.router.caddy import read_record
from dockyard.settings import Settings
from tests.router.listening import processes_of

DOCKYARD = str(Path(sys.executable).parent / "dockyard")
ACK_WAIT = "3"


@dataclass
class Poller:
    """GETs one app through the proxy every 50 ms, each on a new connection, until stopped."""

    port: int
    app: str
    answers: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    running: bool = True

    def start(self) -> Poller:
        self.task = asyncio.ensure_future(self._poll())
        return self

    async def _poll(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=5, limits=limits) as http:
            while self.running:
                try:
                    response = await http.get(f"http://127.0.0.1:{self.port}/",
                                              headers={"Host": f"{self.app}.localhost"})
                    self.answers.append(f"{response.status_code} {response.text.strip()}")
                except httpx.HTTPError as exc:
                    self.answers.append(f"failed {exc!r}")
                await asyncio.sleep(0.05)

    async def stop(self) -> list[str]:
        """Stop polling; every answer, in order."""
        self.running = False
        assert self.task is not None
        await self.task
        return self.answers

    async def polled(self, count: int) -> None:
        """Wait until `count` more requests were answered (or failed)."""
        target = len(self.answers) + count
        await until(lambda: len(self.answers) >= target, 30)


async def until(check: Callable[[], bool], within: float) -> None:
    """Wait until check() holds, failing after `within` seconds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def until_async(check: Callable[[], Awaitable[bool]], within: float) -> None:
    """Wait until await check() holds, failing after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def tail(path: Path) -> str:
    """The end of a log file."""
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def failures(answers: list[str], ok: set[str]) -> list[str]:
    """The answers that are not one of `ok`."""
    return [a for a in answers if a not in ok]


async def serves(port: int, app: str, version: str) -> bool:
    """Whether the proxy answers the app's host with `make_app`'s page of that version."""
    async with httpx.AsyncClient(timeout=2) as http:
        try:
            page = await http.get(f"http://127.0.0.1:{port}/", headers={"Host": f"{app}.localhost"})
        except httpx.HTTPError:
            return False
    return page.status_code == 200 and page.text == f"app {version}\n"


def ledger_hook(ledger: Path, what: str, seconds: float = 0.0, gate: Path | None = None) -> str:
    """A command that appends start and end lines to the ledger (under flock), `seconds` apart,
    or only once the gate file exists."""
    wait = f"while [ ! -e {gate} ]; do sleep 0.1; done" if gate else f"sleep {seconds}"
    return (f"flock {ledger} sh -c 'echo start {what} >> {ledger}'; {wait}; "
            f"flock {ledger} sh -c 'echo end {what} >> {ledger}'")


def check_ledger(lines: list[str]) -> None:
    """Each command ran once, start then end, and no two ran at once."""
    counts = Counter(lines)
    assert all(n == 1 for n in counts.values()), f"a command ran twice: {counts}"
    open_run: str | None = None
    for line in lines:
        kind, what = line.split(" ", 1)
        if kind == "start":
            assert open_run is None, f"{what} started while {open_run} ran"
            open_run = what
        else:
            assert open_run == what, f"{what} ended while {open_run} ran"
            open_run = None


def end_left_running(data_dir: Path) -> dict[str, list[int]]:
    """The stack's own processes still running for data_dir, which are then stopped (a failed
    run must not leave them behind either)."""
    left = {name: pids for name in ("nats-server", "caddy")
            if (pids := processes_of(name, data_dir))}
    for pids in left.values():
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
    return left


def spawn_router(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """`dockyard service router` as its own process on the stack's bus and data dir."""
    env = {**os.environ, "DOCKYARD_NATS_URL": settings.nats_url,
           "DOCKYARD_DATA_DIR": str(settings.data_dir),
           "DOCKYARD_HTTP_PORT": str(settings.http_port), "DOCKYARD_ACK_WAIT": ACK_WAIT,
           "DOCKYARD_LOG_LEVEL": "INFO"}
    with log.open("ab") as out:
        return subprocess.Popen([DOCKYARD, "service", "router"], env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)


async def router_ready(settings: Settings, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until proc drives the data dir's Caddy (recorded as its owner) with routes loaded."""
    async def ready() -> bool:
        assert proc.poll() is None, f"the router exited:\n{tail(log)}"
        record = read_record(settings.data_dir)
        if record is None or record.owner_pid != proc.pid:
            return False
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                answer = await http.get(f"http://127.0.0.1:{settings.http_port}/",
                                        headers={"Host": "nobody.localhost"})
        except httpx.HTTPError:
            return False
        return answer.status_code == 404

    await until_async(ready, 30)

"""What the benchmarks share: a provisioned bus with every service as its own OS process
(`dockyard service NAME`, as an operator runs them), a trivial app, resident memory, load.

Not a benchmark itself: bench/service_scaling.py, bench/footprint.py and bench/growth.py
import it (run them from the repository root, `.venv/bin/python bench/<name>.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.bus.embedded import free_port
from dockyard.bus.service import SERVICES
from dockyard.router.caddy import admin_socket
from dockyard.runtime.process import ProcessRuntime
from dockyard.runtime.select import Runtimes
from dockyard.settings import Settings
from dockyard.stack import Stack, start_stack

DOCKYARD = str(Path(sys.executable).parent / "dockyard")


def run_main(doc: str, main: Callable[..., Coroutine[Any, Any, None]],
             **defaults: float | str) -> None:
    """Run a benchmark's `main` with one `--option` per keyword (its type the default's)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, default in defaults.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    asyncio.run(main(**vars(parser.parse_args())))


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` shows them."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def rss_mib(pid: int) -> float:
    """Resident memory of one process (VmRSS), MiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def temp_dir(prefix: str) -> Path:
    """A fresh directory under /tmp that the apps' users may pass through (0711)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o711)
    return path


def spawn(argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """A child process, its output discarded unless said otherwise."""
    kwargs = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
              "stderr": subprocess.DEVNULL, **kwargs}
    return subprocess.Popen(argv, **kwargs)  # type: ignore[call-overload,no-any-return]


def make_app(root: Path, text: str) -> Path:
    """A trivial web app for the process runtime: a static page on $PORT, no hooks."""
    (root / "www").mkdir(parents=True)
    (root / "www" / "index.html").write_text(f"{text}\n")
    (root / "Procfile").write_text(
        "web: exec python3 -m http.server $PORT --bind 127.0.0.1 --directory www\n")
    return root


@dataclass
class ServiceProcesses:
    """A provisioned nats-server in this process (no service in it) and `count` OS processes of
    each service against it. A second router drives the first one's Caddy (DOCKYARD_CADDY_ADMIN),
    as every router instance of one host must; a second api serves on its own port."""

    settings: Settings
    bus: Stack
    logs: Path
    procs: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        s = self.settings
        return {**{k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")},
                "DOCKYARD_NATS_URL": s.bus_url(), "DOCKYARD_DATA_DIR": str(s.data_dir),
                "DOCKYARD_APPS_DIR": str(s.apps_root), "DOCKYARD_RUNTIME": "process",
                "DOCKYARD_HTTP_PORT": str(s.http_port), "DOCKYARD_DRAIN": "0",
                "DOCKYARD_KILL_GRACE": "2",
                # BENCH_SERVICE_LOG_LEVEL=INFO: the services' own timings in <work>/logs.
                "DOCKYARD_LOG_LEVEL": os.environ.get("BENCH_SERVICE_LOG_LEVEL", "WARNING"),
                **extra}

    def start(self, name: str, **extra: str) -> subprocess.Popen[bytes]:
        """One more process of a service."""
        n = len(self.procs.setdefault(name, []))
        with open(self.logs / f"{name}-{n}.log", "wb") as log:
            proc = subprocess.Popen([DOCKYARD, "service", name], env=self.env(**extra),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=log)
        self.procs[name].append(proc)
        return proc

    async def start_all(self, count: int, services: tuple[str, ...] = SERVICES) -> None:
        """`count` processes of each service; returns once the router's Caddy and the api
        answer (the others are ready when their consumers are bound: a warm-up deploy shows)."""
        for name in services:
            self.start(name)
        if {"api", "router"} <= set(services):
            await self.wait_ready()
        for _ in range(count - 1):
            for name in services:
                extra = {}
                if name == "router":
                    extra["DOCKYARD_CADDY_ADMIN"] = str(admin_socket(self.settings.data_dir))
                if name == "api":
                    extra["DOCKYARD_API_PORT"] = str(free_port())
                self.start(name, **extra)

    async def wait_ready(self, limit: float = 60.0) -> None:
        """Until the api recorded its URL and the router's Caddy admin socket exists."""
        deadline = time.monotonic() + limit
        data = self.settings.data_dir
        while not ((data / "api.url").exists() and admin_socket(data).exists()):
            self.check_alive()
            if time.monotonic() > deadline:
                raise SystemExit(f"services not ready after {limit}s; logs in {self.logs}")
            await asyncio.sleep(0.05)

    def check_alive(self) -> None:
        for name, procs in self.procs.items():
            for n, proc in enumerate(procs):
                if proc.poll() is not None:
                    log = (self.logs / f"{name}-{n}.log").read_text()[-2000:]
                    raise SystemExit(f"{name} #{n} exited {proc.returncode}:\n{log}")

    def pids(self) -> dict[str, list[int]]:
        return {name: [p.pid for p in procs] for name, procs in self.procs.items()}

    def stop(self) -> None:
        """SIGTERM every service (second instances first: the first router stops Caddy)."""
        every = [p for procs in self.procs.values() for p in procs[1:]]
        every += [procs[0] for procs in self.procs.values() if procs]
        for proc in every:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in every:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


@contextlib.asynccontextmanager
async def service_processes(prefix: str, count: int = 1, services: tuple[str, ...] = SERVICES,
                            **overrides: object) -> AsyncIterator[ServiceProcesses]:
    """A throwaway data dir, a provisioned bus and `count` processes of each service; at the
    end every service and app instance stopped, the apps' trees and users removed."""
    work = temp_dir(prefix)  # the apps' users pass through to their trees
    logs = work / "logs"
    logs.mkdir()  # noqa: ASYNC240
    settings = Settings.from_env(env={}, data_dir=work / "data", http_port=free_port(),
                                 runtime="process", drain=0.0, kill_grace=2.0, **overrides)
    bus = await start_stack(settings, services=())
    running = ServiceProcesses(bus.settings, bus, logs)
    try:
        await running.start_all(count, services)
        yield running
    finally:
        await asyncio.to_thread(running.stop)
        await remove_apps(bus.settings)
        await bus.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(bus.settings.apps_root, ignore_errors=True)


async def remove_apps(settings: Settings, apps: Iterable[str] | None = None) -> None:
    """Stop every instance the process runtime runs for the data dir, remove the apps' trees
    and users."""
    runtimes = Runtimes(settings)
    try:
        runtime = await runtimes.get("process")
        assert isinstance(runtime, ProcessRuntime)
        names = set(apps or ())
        if settings.apps_root.exists():
            names |= {p.name for p in settings.apps_root.iterdir() if p.is_dir()}
        for app in sorted(names):
            with contextlib.suppress(Exception):
                for ref in await runtime.list_instances(app):
                    await runtime.stop_instance(ref, 2.0)
                await runtime.remove_app(app)
    finally:
        await runtimes.close()

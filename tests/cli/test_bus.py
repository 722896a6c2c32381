"""`dockyard bus init`, as an operator runs it: files first, then provisioning as admin."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import nats

from dockyard.bus.auth import Credentials, load_seed
from dockyard.bus.embedded import start_nats
from dockyard.bus.topology import stream_names
from dockyard.stack import identities

DOCKYARD = str(Path(sys.executable).parent / "dockyard")


def bus_init(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    return subprocess.run([DOCKYARD, "bus", "init", *args], capture_output=True, text=True,
                          timeout=120, check=False, env={**env, "COLUMNS": "200"})


def test_init_writes_private_seeds_and_auth_conf_then_provisions(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = bus_init("--data-dir", str(data))
    assert first.returncode == 0, first.stdout + first.stderr
    keys = data / "bus"
    assert keys.stat().st_mode & 0o777 == 0o700
    for name in identities():
        assert (keys / f"{name}.nk").stat().st_mode & 0o777 == 0o600, name
    assert (keys / "auth.conf").stat().st_mode & 0o777 == 0o600
    seeds = {name: load_seed(keys, name) for name in identities()}
    again = bus_init("--data-dir", str(data))
    assert again.returncode == 0 and {n: load_seed(keys, n) for n in identities()} == seeds

    server = start_nats(tmp_path / "server", identities(), keys_dir=keys)
    try:
        done = bus_init("--data-dir", str(data), "--nats-url", server.url)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "provisioned" in done.stdout

        async def names() -> set[str]:
            nc = await nats.connect(server.url, **Credentials.load(keys, "admin").options())
            try:
                return {info.config.name or "" for info in await nc.jetstream().streams_info()}
            finally:
                await nc.close()

        assert set(stream_names()) <= asyncio.run(names())
    finally:
        server.stop()


def test_init_writes_the_cluster_route_credentials_once(tmp_path: Path) -> None:
    """routes.conf (0600): the one route user and password, and a route to each node carrying
    them; made once, the same after; --routes names other hosts."""
    keys = tmp_path / "bus"
    first = bus_init("--data-dir", str(tmp_path))
    assert first.returncode == 0, first.stdout + first.stderr
    routes = keys / "routes.conf"
    assert routes.stat().st_mode & 0o777 == 0o600
    password = (keys / "route.password").read_text().strip()
    text = routes.read_text()
    assert f'"password": "{password}"' in text and '"user": "dockyard-route"' in text
    for node in ("n1", "n2", "n3"):
        assert f"nats-route://dockyard-route:{password}@{node}:6222" in text
    again = bus_init("--data-dir", str(tmp_path), "--routes", "10.0.0.1:6222,10.0.0.2:6222")
    assert again.returncode == 0, again.stdout + again.stderr
    assert (keys / "route.password").read_text().strip() == password
    text = routes.read_text()
    assert "@10.0.0.2:6222" in text and "@n1:6222" not in text
    bad = bus_init("--data-dir", str(tmp_path), "--routes", "n1")
    assert bad.returncode == 2 and "--routes must be HOST:PORT" in bad.stderr


def test_an_unreachable_bus_is_one_clear_error(tmp_path: Path) -> None:
    result = bus_init("--data-dir", str(tmp_path), "--nats-url", "nats://127.0.0.1:1")
    assert result.returncode == 2
    assert "cannot provision the bus at nats://127.0.0.1:1 as 'admin'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_owner_is_a_usage_error(tmp_path: Path) -> None:
    result = bus_init("--data-dir", str(tmp_path), "--owner", "dockyard")
    assert result.returncode == 2 and "--owner must be UID or UID:GID" in result.stderr

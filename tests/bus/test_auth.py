"""bus/auth.py and the embedded server: seeds, private files, a real server that takes only
known seeds, and a store encrypted at rest."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from dockyard.bus.auth import (
    BadSeed,
    Credentials,
    MissingSeed,
    ensure_seeds,
    jetstream_key,
    load_seed,
    public_key,
    seed_path,
    write_auth_conf,
)
from dockyard.bus.embedded import free_port, nats_server_binary, start_nats
from dockyard.bus.permissions import ADMIN
from dockyard.bus.topology import ensure_topology, provision
from dockyard.client import ClientDoors
from dockyard.contract import subjects
from dockyard.stack import identities
from dockyard.state.registry import open_doors

MARKER = "plain-config-value-7d3e91"


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_seeds_are_made_once_private_and_reused(tmp_path: Path) -> None:
    keys = tmp_path / "bus"
    first = ensure_seeds(keys, ["builder", "cli"])
    assert mode(keys) == 0o700
    assert all(mode(seed_path(keys, n)) == 0o600 for n in first)
    assert ensure_seeds(keys, ["builder", "cli"]) == first
    assert first["builder"].startswith("U") and first["builder"] != first["cli"]
    assert public_key(load_seed(keys, "cli")) == first["cli"]
    assert jetstream_key(keys) == jetstream_key(keys) and mode(keys / "jetstream.key") == 0o600


def test_a_missing_or_bad_seed_is_named(tmp_path: Path) -> None:
    with pytest.raises(MissingSeed, match="no bus identity 'cli'"):
        Credentials.load(tmp_path, "cli")
    seed_path(tmp_path, "cli").write_text("not a seed\n")
    with pytest.raises(BadSeed, match="starts with SU"):
        Credentials.load(tmp_path, "cli")


def test_credentials_carry_the_identitys_inbox_prefix(tmp_path: Path) -> None:
    ensure_seeds(tmp_path, ["reader"])
    options = Credentials.load(tmp_path, "reader").options()
    assert options["inbox_prefix"] == "_INBOX.reader"
    assert options["nkeys_seed_str"].startswith("SU")
    assert "SU" not in repr(Credentials.load(tmp_path, "reader"))


def test_the_auth_conf_is_valid_server_config_with_public_keys_only(tmp_path: Path) -> None:
    conf = write_auth_conf(tmp_path / "bus", identities())
    assert mode(conf) == 0o600
    server = tmp_path / "server.conf"
    server.write_text(f'include "{conf.name}"\njetstream {{ store_dir: "{tmp_path / "js"}", '
                      "cipher: chachapoly, key: $DOCKYARD_JS_KEY }\n")
    (tmp_path / conf.name).write_text(conf.read_text())
    proc = subprocess.run([nats_server_binary(), "-t", "-c", str(server)], capture_output=True,
                          text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = conf.read_text()
    for name in identities():
        assert load_seed(tmp_path / "bus", name) not in text


async def test_the_embedded_server_is_private_authenticated_and_encrypted(
        tmp_path: Path) -> None:
    """Data dir 0700, config 0600; no client without a seed; a config value set through the
    CLI's door is nowhere in the store's files (and is, in a plain server's: the control)."""
    data = tmp_path / "data"
    server = start_nats(data, identities())
    try:
        assert mode(data) == 0o700 and mode(data / "nats-server.conf") == 0o600
        with pytest.raises(nats.errors.Error):
            await nats.connect(server.url, allow_reconnect=False, connect_timeout=3)
        admin = await nats.connect(server.url, **server.credentials(ADMIN).options())
        await provision(admin)
        await admin.close()
        await _set_config(server.url, server.credentials("cli"))
    finally:
        server.stop()
    assert not _holds(server.store_dir, MARKER)

    # The control: the same write on a server without the cipher is readable on disk.
    plain_store = tmp_path / "plain"
    port = free_port()
    plain = await asyncio.to_thread(
        subprocess.Popen, [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js",
                           "-sd", str(plain_store)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        nc = await _connect_when_up(f"nats://127.0.0.1:{port}")
        js = nc.jetstream()
        await ensure_topology(js)
        kv = await js.key_value(subjects.KV_CONFIG)
        await kv.put("shop", MARKER.encode())
        await nc.close()
    finally:
        plain.terminate()
        plain.wait(10)
    assert _holds(plain_store, MARKER)


async def _set_config(url: str, credentials: Credentials) -> None:
    nc = await nats.connect(url, **credentials.options())
    try:
        doors = await open_doors(ClientDoors, nc.jetstream(), "cli")
        await doors.config.change("shop", {"TOKEN": MARKER}, [])
    finally:
        await nc.close()


async def _connect_when_up(url: str) -> Client:
    deadline = time.monotonic() + 15
    while True:
        try:
            return await nats.connect(url, allow_reconnect=False, connect_timeout=1)
        except (nats.errors.Error, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def _holds(root: Path, marker: str) -> bool:
    """Whether any file under root contains marker's bytes."""
    found = [p for p in root.rglob("*") if p.is_file() and marker.encode() in p.read_bytes()]
    return bool(found)

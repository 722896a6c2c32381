"""Bus identities: NKey seeds in private files, the server's authorization config, connections.

Every identity (one per service, `cli`, `reader`, `admin`) has an NKey seed in
`<keys dir>/<identity>.nk` (files 0600 in a 0700 directory), made the first time and reused
after; the server knows only the public keys, each with its generated permissions.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys  # type: ignore[import-untyped]

from dockyard.bus.permissions import Permissions, inbox_prefix

SEED_SUFFIX = ".nk"
JETSTREAM_KEY = "jetstream.key"
ROUTE_PASSWORD = "route.password"
# The one user cluster nodes authenticate their routes to each other with.
ROUTE_USER = "dockyard-route"
# Where infra/nats/cluster's nodes reach each other.
CLUSTER_ROUTES = ("n1:6222", "n2:6222", "n3:6222")
AUTH_CONF = "auth.conf"
ROUTES_CONF = "routes.conf"
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


class BusAuthError(Exception):
    """A bus identity cannot be used."""


class MissingSeed(BusAuthError):
    """No seed file for an identity."""

    def __init__(self, identity: str, path: Path) -> None:
        super().__init__(
            f"no bus identity {identity!r}: {path} does not exist (run `dockyard up` or "
            "`dockyard bus init` with this data dir, or point DOCKYARD_NATS_KEYS at the "
            "directory holding the seeds)")
        self.identity = identity
        self.path = path


class BadSeed(BusAuthError):
    """A seed file that does not hold an NKey user seed."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} is not an NKey user seed: {reason}")
        self.path = path
        self.reason = reason


def private_dir(path: Path) -> Path:
    """A directory only its owner can enter (made if missing, tightened if not)."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    path.chmod(PRIVATE_DIR)
    return path


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically (never readable by others, even once)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    tmp.replace(path)


def new_seed() -> str:
    """A fresh NKey user seed (`SU...`)."""
    return bytes(nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)).decode()


def public_key(seed: str) -> str:
    """The public key (`U...`) of a user seed."""
    return bytes(nkeys.from_seed(bytearray(seed.encode())).public_key).decode()


def seed_path(keys_dir: Path, identity: str) -> Path:
    """Where an identity's seed lives."""
    return keys_dir / f"{identity}{SEED_SUFFIX}"


def load_seed(keys_dir: Path, identity: str) -> str:
    """An identity's seed, checked (MissingSeed, BadSeed)."""
    path = seed_path(keys_dir, identity)
    try:
        seed = path.read_text().strip()
    except FileNotFoundError:
        raise MissingSeed(identity, path) from None
    if not seed.startswith("SU"):
        raise BadSeed(path, "a user seed starts with SU")
    try:
        public_key(seed)
    except (nkeys.NkeysError, ValueError) as exc:
        raise BadSeed(path, str(exc) or type(exc).__name__) from None
    return seed


def ensure_seeds(keys_dir: Path, identities: Iterable[str]) -> dict[str, str]:
    """Make the seeds that are missing (reuse the others); every identity's public key."""
    private_dir(keys_dir)
    found = {}
    for identity in identities:
        path = seed_path(keys_dir, identity)
        if not path.exists():
            write_private(path, new_seed() + "\n")
        found[identity] = public_key(load_seed(keys_dir, identity))
    return found


def _secret(keys_dir: Path, name: str) -> str:
    """A random secret made once, kept in a 0600 file of the keys dir."""
    path = private_dir(keys_dir) / name
    if not path.exists():
        write_private(path, secrets.token_hex(32) + "\n")
    return path.read_text().strip()


def jetstream_key(keys_dir: Path) -> str:
    """The key JetStream encrypts its store with (made once, kept in a 0600 file)."""
    return _secret(keys_dir, JETSTREAM_KEY)


def route_password(keys_dir: Path) -> str:
    """The password cluster nodes authenticate their routes with (made once, 0600)."""
    return _secret(keys_dir, ROUTE_PASSWORD)


def route_authorization(password: str) -> dict[str, Any]:
    """A node's `cluster { authorization }`: the credentials a route must present to it."""
    return {"user": ROUTE_USER, "password": password, "timeout": 2}


def route_urls(password: str, hostports: Iterable[str]) -> list[str]:
    """The routes a node solicits, each carrying the route credentials (nats-server takes an
    explicit route's credentials from its URL only)."""
    return [f"nats-route://{ROUTE_USER}:{password}@{hostport}" for hostport in hostports]


def authorization(public_keys: Mapping[str, str],
                  permissions: Mapping[str, Permissions]) -> dict[str, Any]:
    """nats-server's `authorization` block: one NKey user per identity, with its permissions."""
    return {"users": [{"nkey": public_keys[name], "permissions": permissions[name].as_config()}
                      for name in permissions]}


def conf(settings: Mapping[str, Any]) -> str:
    """A nats-server config file (JSON is valid config; quoted `$` subjects stay literal)."""
    return "\n".join(f"{key}: {json.dumps(value, indent=2)}" for key, value in settings.items()) \
        + "\n"


def write_auth_conf(keys_dir: Path, permissions: Mapping[str, Permissions]) -> Path:
    """Seeds for every identity, and `auth.conf` (0600) for a server to include: its users and
    the JetStream key in `$DOCKYARD_JS_KEY`."""
    public_keys = ensure_seeds(keys_dir, permissions)
    path = keys_dir / AUTH_CONF
    header = ("# Generated by `dockyard bus init`: one NKey user per Dockyard identity, with its\n"
              "# generated permissions, and the JetStream encryption key. Keep it private.\n")
    write_private(path, header + conf({
        "DOCKYARD_JS_KEY": jetstream_key(keys_dir),
        "authorization": authorization(public_keys, permissions),
    }))
    return path


def cluster_routes(keys_dir: Path, hostports: Iterable[str]) -> dict[str, Any]:
    """What a cluster node's `cluster` block needs besides its name and listen address: the
    route credentials it accepts, and its routes to hostports carrying them."""
    password = route_password(keys_dir)
    return {"authorization": route_authorization(password),
            "routes": route_urls(password, hostports)}


def write_routes_conf(keys_dir: Path, hostports: Iterable[str] = CLUSTER_ROUTES) -> Path:
    """`routes.conf` (0600), included inside each cluster node's `cluster` block: the route
    credentials (made once, in route.password) and the routes to hostports carrying them."""
    path = keys_dir / ROUTES_CONF
    header = ("# Generated by `dockyard bus init`: the credentials cluster nodes authenticate\n"
              "# their routes with, and the routes carrying them. Keep it private.\n")
    write_private(path, header + conf(cluster_routes(keys_dir, hostports)))
    return path


@dataclass(frozen=True)
class Credentials:
    """What one identity connects with: its seed and its own reply inbox prefix."""

    identity: str
    seed: str

    @classmethod
    def load(cls, keys_dir: Path, identity: str) -> Credentials:
        """An identity's credentials from its seed file (MissingSeed, BadSeed)."""
        return cls(identity, load_seed(keys_dir, identity))

    def options(self) -> dict[str, Any]:
        """Keyword arguments for nats.connect (and FastStream's NatsBroker)."""
        return {"nkeys_seed_str": self.seed, "inbox_prefix": inbox_prefix(self.identity)}

    def __repr__(self) -> str:
        return f"Credentials({self.identity!r})"

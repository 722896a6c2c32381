"""`dockyard bus init`: the bus identities and the server's auth config for compose and clusters,
and provisioning as `admin`."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from dockyard.cli.common import DataDir, fail, run, settings_from
from dockyard.cli.output import out
from dockyard.cli.running import SERVICE_NAMES

bus_app = typer.Typer(no_args_is_help=True,
                      help="The bus: identities, the server's auth config, provisioning.")


def parse_owner(owner: str) -> tuple[int, int]:
    """`UID` or `UID:GID` as numbers (GID defaults to UID)."""
    uid, _, gid = owner.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        fail(f"--owner must be UID or UID:GID (numbers), got {owner!r}")
    return int(uid), int(gid or uid)


def parse_routes(routes: str) -> list[str]:
    """`HOST:PORT,HOST:PORT,...` as a list, each checked."""
    hostports = [part.strip() for part in routes.split(",") if part.strip()]
    for hostport in hostports:
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit() or any(c in host for c in "/@ "):
            fail(f"--routes must be HOST:PORT separated by commas, got {hostport!r}")
    if not hostports:
        fail("--routes names no node")
    return hostports


@bus_app.command("init", epilog=(
    "Examples:\n\n"
    "  dockyard bus init --data-dir ./data --owner 10001\n\n"
    "  dockyard bus init --data-dir ./data --nats-url nats://bus:4222 --replicas 3"))
def init(
    data_dir: DataDir = None,
    nats_url: Annotated[str | None, typer.Option(
        help="Provision this bus as admin (default DOCKYARD_NATS_URL; none: files only).")] = None,
    replicas: Annotated[int | None, typer.Option(
        help="Replicas of every stream (3 in a cluster; default DOCKYARD_BUS_REPLICAS, "
             "else 1).")] = None,
    owner: Annotated[str | None, typer.Option(
        help="UID[:GID] to own the six services' seeds (the image's user is 10001).")] = None,
    routes: Annotated[str | None, typer.Option(
        help="The cluster nodes' route addresses for routes.conf, HOST:PORT comma-separated "
             "(default n1:6222,n2:6222,n3:6222, as infra/nats/cluster names them).")] = None,
) -> None:
    """Make (or reuse) every identity's seed, the server's auth.conf and the cluster nodes'
    routes.conf (authenticated routes) in the keys dir (DOCKYARD_NATS_KEYS, default
    <data dir>/bus); with a bus URL, provision it as admin."""
    from dockyard.bus.auth import (
        CLUSTER_ROUTES,
        BusAuthError,
        seed_path,
        write_auth_conf,
        write_routes_conf,
    )
    from dockyard.stack import StackError, identities, provision_as_admin

    settings = settings_from(data_dir, nats_url=nats_url)
    ids = owner and parse_owner(owner)
    hostports = parse_routes(routes) if routes is not None else list(CLUSTER_ROUTES)
    try:
        conf = write_auth_conf(settings.keys_dir, identities())
        routes_conf = write_routes_conf(settings.keys_dir, hostports)
    except (BusAuthError, OSError) as exc:
        fail(str(exc))
    if ids:
        for name in SERVICE_NAMES:
            try:
                os.chown(seed_path(settings.keys_dir, name), *ids)
            except OSError as exc:
                fail(f"cannot hand {name}'s seed to {owner}: {exc} (chown needs root)")
    out.line(f"identities: {', '.join(identities())} (seeds in {settings.keys_dir})")
    out.line(f"server auth config: {conf} (include it from the server's config)")
    out.line(f"cluster routes: {routes_conf} (include it in each node's cluster block)")
    if not settings.nats_url:
        out.line("no bus URL: start the server with that config, then run this again with "
                 "--nats-url to provision it")
        return

    async def provision() -> None:
        try:
            await provision_as_admin(settings, replicas)
        except (StackError, BusAuthError) as exc:
            fail(str(exc))

    run(provision())
    copies = settings.bus_replicas if replicas is None else replicas
    out.line(f"provisioned {settings.nats_url} as admin ({copies} replica(s))")


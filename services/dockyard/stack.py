"""The embedded stack `dockyard up` runs: a nats-server of its own and one of each service,
each connected as its own bus identity."""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

import nats
import structlog

from dockyard.bus import metrics
from dockyard.bus.auth import Credentials
from dockyard.bus.embedded import (
    EmbeddedNats,
    adopt_nats,
    port_free,
    read_url,
    start_nats,
    surviving_nats,
    write_url,
)
from dockyard.bus.permissions import ADMIN, Permissions, every_identity
from dockyard.bus.recorded import owner_alive, stop_sync
from dockyard.bus.service import SERVICES, RunningService, declaration, start_service
from dockyard.bus.topology import provision, stream_names
from dockyard.client import ClientDoors
from dockyard.contract.events import (
    CancelRequested,
    DeployRequested,
    DestroyRequested,
    RunRequested,
    ScaleRequested,
)
from dockyard.settings import Settings

log = structlog.get_logger()


METRICS_URL = "metrics.url"


def _serve_metrics(settings: Settings) -> metrics.MetricsServer:
    """DOCKYARD_METRICS_ADDR; else 127.0.0.1 on the port recorded last time, if free, or any."""
    if (listen := settings.metrics_listen) is not None:
        return metrics.serve(*listen)
    # No record, a bad one, or its port taken by now: any free port will do.
    with contextlib.suppress(OSError, ValueError, metrics.MetricsError):
        if previous := urlsplit((settings.data_dir / METRICS_URL).read_text().strip()).port:
            return metrics.serve("127.0.0.1", previous)
    return metrics.serve("127.0.0.1", 0)


class StackError(RuntimeError):
    """The stack cannot start."""


def identities() -> dict[str, Permissions]:
    """Every bus identity's permissions, from the services' declarations and the CLI's doors."""
    return every_identity([declaration(name) for name in SERVICES], ClientDoors,
                          [DeployRequested.subject, CancelRequested.subject,
                           RunRequested.subject, ScaleRequested.subject,
                           DestroyRequested.subject], stream_names())


async def _quiet(exc: Exception) -> None:
    """nats-py's default error callback logs a traceback: the caller reports the error."""


async def provision_as_admin(settings: Settings, replicas: int | None = None) -> None:
    """Create (or bring up to date) the streams, buckets and stores, as `admin`, with
    `replicas` copies each (default DOCKYARD_BUS_REPLICAS); one attempt (StackError naming the
    bus when it cannot be reached or refuses)."""
    url = settings.bus_url()
    credentials = Credentials.load(settings.keys_dir, ADMIN)
    try:
        admin = await nats.connect(settings.bus_servers(), name="dockyard-provision",
                                   connect_timeout=5, allow_reconnect=False,
                                   max_reconnect_attempts=1,
                                   error_cb=_quiet, **credentials.options())
    except (nats.errors.Error, OSError) as exc:
        raise StackError(f"cannot provision the bus at {url} as {ADMIN!r}: {exc!r}") from exc
    try:
        await provision(admin, settings.bus_replicas if replicas is None else replicas)
    finally:
        await admin.close()


def bus_answers(url: str) -> bool:
    """Whether something listens at a nats:// URL."""
    hostport = url.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except (OSError, ValueError):
        return False


@dataclass
class Stack:
    """A running embedded stack."""

    settings: Settings
    nats: EmbeddedNats | None
    services: list[RunningService] = field(default_factory=list)
    metrics_server: metrics.MetricsServer | None = None

    async def stop(self) -> None:
        """Stop every service, then the bus."""
        for service in reversed(self.services):
            try:
                await service.stop()
            except Exception:
                log.exception("service stop failed", service=service.ctx.name)
        self.services.clear()
        if self.metrics_server is not None:
            # Its URL stays recorded, as the api's does: a restart takes the same port if free.
            await self.metrics_server.stop()
            self.metrics_server = None
        if self.nats is not None:
            self.nats.stop()
            url_file = self.settings.data_dir / "nats.url"
            if url_file.exists() and url_file.read_text().strip() == self.nats.url:
                url_file.unlink()


def _own_bus(settings: Settings) -> EmbeddedNats:
    """The data dir's nats-server: the one a killed `dockyard up` left running, adopted; else a
    new one on the store, on the recorded port when it is free (clients keep their URL)."""
    data_dir = settings.data_dir
    recorded_url = read_url(data_dir)
    found = surviving_nats(data_dir)
    if found is not None and owner_alive(found):
        raise StackError(f"a Dockyard stack already runs from {data_dir} (pid "
                         f"{found.owner_pid}, bus at {recorded_url}); stop it first or use "
                         "another --data-dir")
    if found is not None:
        adopted = adopt_nats(data_dir, found, identities(), keys_dir=settings.keys_dir)
        if adopted is not None:
            log.info("bus adopted", pid=found.pid, url=adopted.url)
            return adopted
        # No recorded URL to reach it by: never run a second server on the same store.
        stop_sync(found)
    if recorded_url and bus_answers(recorded_url):
        raise StackError(f"a Dockyard stack already runs from {data_dir} "
                         f"(bus at {recorded_url}); stop it first or use another --data-dir")
    previous = recorded_url.rsplit(":", 1)[-1] if recorded_url else ""
    port = int(previous) if previous.isdigit() and port_free(int(previous)) else None
    return start_nats(data_dir, identities(), port=port, keys_dir=settings.keys_dir)


async def start_stack(settings: Settings, services: tuple[str, ...] = SERVICES) -> Stack:
    """Start the embedded nats-server (unless DOCKYARD_NATS_URL points elsewhere; adopting the
    one a killed stack left) and the services."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    nats: EmbeddedNats | None = None
    if not settings.nats_url and settings.bus_replicas > 1:
        raise StackError(f"DOCKYARD_BUS_REPLICAS={settings.bus_replicas} needs a NATS cluster: "
                         "the embedded bus is one server (set DOCKYARD_NATS_URL to the "
                         "cluster's nodes, or leave DOCKYARD_BUS_REPLICAS at 1)")
    if not settings.nats_url:
        nats = _own_bus(settings)
        write_url(settings.data_dir, nats.url)
        settings = replace(settings, nats_url=nats.url)
    stack = Stack(settings=settings, nats=nats)
    try:
        try:
            await provision_as_admin(settings)
        except StackError:
            if nats is None or not nats.adopted:
                raise
            # It runs with our config but does not take our credentials: stop exactly it and
            # start afresh on the same store and port.
            log.warning("adopted bus refused provisioning, restarting it", url=nats.url)
            nats.stop()
            stack.nats = start_nats(settings.data_dir, identities(), port=nats.port,
                                    keys_dir=settings.keys_dir)
            await provision_as_admin(settings)
    except BaseException:
        await stack.stop()
        raise
    # Where apps answer, for commands run later from the same data dir (the port may be a flag).
    (settings.data_dir / "apps.url").write_text(
        f"http://{{app}}.{settings.domain}:{settings.http_port}/\n")
    try:
        # One registry for every service in this process, on one address recorded in the data dir.
        stack.metrics_server = _serve_metrics(settings)
        (settings.data_dir / METRICS_URL).write_text(stack.metrics_server.url + "\n")
    except BaseException:
        await stack.stop()
        raise
    try:
        for name in services:
            stack.services.append(await start_service(name, settings, serve_metrics=False))
    except Exception as exc:
        await stack.stop()
        # One clear line for `dockyard up` (a port taken, a Caddy of a stack that runs...).
        raise StackError(f"the {name} service did not start: {exc}") from exc
    except BaseException:
        await stack.stop()
        raise
    return stack

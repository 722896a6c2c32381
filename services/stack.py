"""The embedded stack `dockyard up` runs: a nats-server of its own and one of each service."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field, replace

import structlog

from dockyard.bus.embedded import EmbeddedNats, read_url, start_nats, write_url
from dockyard.bus.service import SERVICES, RunningService, start_service
from dockyard.settings import Settings

log = structlog.get_logger()


class StackError(RuntimeError):
    """The stack cannot start."""


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

    async def stop(self) -> None:
        """Stop every service, then the bus."""
        for service in reversed(self.services):
            try:
                await service.stop()
            except Exception:
                log.exception("service stop failed", service=service.ctx.name)
        self.services.clear()
        if self.nats is not None:
            self.nats.stop()
            url_file = self.settings.data_dir / "nats.url"
            if url_file.exists() and url_file.read_text().strip() == self.nats.url:
                url_file.unlink()


async def start_stack(settings: Settings, services: tuple[str, ...] = SERVICES) -> Stack:
    """Start the embedded nats-server (unless DOCKYARD_NATS_URL points elsewhere) and the services."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    nats: EmbeddedNats | None = None
    if not settings.nats_url:
        recorded = read_url(settings.data_dir)
        if recorded and bus_answers(recorded):
            raise StackError(f"a Dockyard stack already runs from {settings.data_dir} "
                             f"(bus at {recorded}); stop it first or use another --data-dir")
        nats = start_nats(settings.data_dir)
        write_url(settings.data_dir, nats.url)
        settings = replace(settings, nats_url=nats.url)
    stack = Stack(settings=settings, nats=nats)
    # Where apps answer, for commands run later from the same data dir (the port may be a flag).
    (settings.data_dir / "apps.url").write_text(
        f"http://{{app}}.{settings.domain}:{settings.http_port}/\n")
    try:
        for name in services:
            stack.services.append(await start_service(name, settings))
    except BaseException:
        await stack.stop()
        raise
    return stack

"""Pick and hold the runtimes a service uses: `auto` takes Docker when an engine answers."""

from __future__ import annotations

import structlog

from dockyard.runtime.base import Runtime
from dockyard.settings import Settings

log = structlog.get_logger()


RUNTIMES = ("docker", "process", "swarm")


class UnknownRuntimeError(ValueError):
    """A runtime name that is none of RUNTIMES."""


async def resolve(name: str) -> str:
    """`auto` → `docker` if an engine answers, else `process`; others unchanged."""
    if name == "auto":
        from dockyard.runtime.engine import docker_available

        chosen = "docker" if await docker_available() else "process"
        log.info("runtime chosen", runtime=chosen, asked="auto")
        return chosen
    if name not in RUNTIMES:
        raise UnknownRuntimeError(f"unknown runtime {name!r}: use auto, {', '.join(RUNTIMES)}")
    return name


class Runtimes:
    """The runtimes of one service, created on first use
    (a deploy names the one it was built on)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._made: dict[str, Runtime] = {}
        self._default: str | None = None

    async def default_name(self) -> str:
        """The runtime new deploys use (settings.runtime resolved)."""
        if self._default is None:
            self._default = await resolve(self.settings.runtime)
        return self._default

    async def get(self, name: str | None = None) -> Runtime:
        """The runtime of that name (the default one when None)."""
        name = name or await self.default_name()
        if name not in self._made:
            if name == "process":
                from dockyard.runtime.process import ProcessRuntime

                self._made[name] = ProcessRuntime(
                    self.settings.data_dir / "process", self.settings.apps_root,
                    pids_limit=self.settings.pids_limit, data_dir=self.settings.data_dir,
                    python_dirs=self.settings.python_dirs)
            elif name in ("docker", "swarm"):
                from dockyard.runtime.docker import DockerRuntime
                from dockyard.runtime.docker_config import Confinement
                from dockyard.runtime.generated import BaseImages
                from dockyard.runtime.swarm import SwarmRuntime

                kind = SwarmRuntime if name == "swarm" else DockerRuntime
                self._made[name] = kind(confinement=Confinement(
                    cap_add=self.settings.cap_add, pids_limit=self.settings.pids_limit),
                    images=BaseImages(python=self.settings.python_image,
                                      node=self.settings.node_image,
                                      static=self.settings.static_image))
            else:
                raise UnknownRuntimeError(f"unknown runtime {name!r}")
        return self._made[name]

    async def close(self) -> None:
        """Close every runtime made."""
        for runtime in self._made.values():
            await runtime.close()
        self._made.clear()

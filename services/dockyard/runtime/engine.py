"""Whether a Docker engine answers (for `--runtime auto` and the docker tests)."""

from __future__ import annotations

import asyncio

import aiodocker
import aiohttp
import structlog

log = structlog.get_logger(__name__)


async def docker_available(within: float = 2.0) -> bool:
    """Does an engine answer a version request on DOCKER_HOST or the default socket, quickly."""
    try:
        # Raises when there is neither DOCKER_HOST nor a socket at the default place.
        docker = aiodocker.Docker(timeout=aiohttp.ClientTimeout(total=within))
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine here"
        log.debug("docker unavailable", reason=str(exc))
        return False
    try:
        await asyncio.wait_for(docker.version(), within)
        return True
    except Exception as exc:  # noqa: BLE001
        log.debug("docker unavailable", reason=str(exc))
        return False
    finally:
        await docker.close()

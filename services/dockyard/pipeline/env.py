"""The environment of a one-off command or an instance: config vars plus what Dockyard injects."""

from __future__ import annotations


def oneoff_env(config: dict[str, str], *, app: str, container: str, artifact: str, release: int,
               deployment_id: str, phase: str,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    """Config vars plus APP, CONTAINER, CONTAINER_VERSION and the DOCKYARD_* vars."""
    env = dict(config)
    env.update({
        "APP": app,
        "CONTAINER": container,
        "CONTAINER_VERSION": artifact,
        "DOCKYARD_RELEASE": str(release),
        "DOCKYARD_DEPLOYMENT_ID": deployment_id,
        "DOCKYARD_PHASE": phase,
    })
    env.update(extra or {})
    return env


def instance_env(config: dict[str, str], *, app: str, process: str, index: int, artifact: str,
                 release: int, deployment_id: str) -> dict[str, str]:
    """Config vars plus what an instance is told about itself (PORT is added by the runtime)."""
    return oneoff_env(config, app=app, container=f"{process}-{index}", artifact=artifact,
                      release=release, deployment_id=deployment_id, phase="run")

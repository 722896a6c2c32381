"""Pure decisions of the docker runtime: names, labels, container configs, the build context."""

from __future__ import annotations

import io
import math
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.runtime.base import InstanceSpec, OneOffSpec

# Fixed inside every instance container; the host side is a random loopback port.
CONTAINER_PORT = 5000
PORT_KEY = f"{CONTAINER_PORT}/tcp"
WEB = "web"

LABEL_APP = "dockyard.app"
LABEL_BUILD = "dockyard.build"
LABEL_RELEASE = "dockyard.release"
LABEL_DEPLOYMENT = "dockyard.deployment"
LABEL_PHASE = "dockyard.phase"
LABEL_CONTAINER = "dockyard.container"
LABEL_ROLE = "dockyard.role"
LABEL_PROCESS = "dockyard.process"
LABEL_INDEX = "dockyard.index"
LABEL_COMMITTED_FROM = "dockyard.committed-from"
LABEL_NETWORK = "dockyard.network"
ROLE_ONEOFF = "oneoff"
ROLE_INSTANCE = "instance"
ROLE_NETWORK = "network"
DEFAULT_PIDS_LIMIT = 256

# Labels a one-off container carries that must not describe an image committed from it
# (containers started from that image would inherit them).
ONEOFF_ONLY_LABELS = (LABEL_RELEASE, LABEL_DEPLOYMENT, LABEL_PHASE, LABEL_CONTAINER, LABEL_ROLE)

# Never sent to the builder: VCS history is not part of an app's build.
EXCLUDED_FROM_CONTEXT = frozenset({".git"})


def image_tag(app: str, build_id: str) -> str:
    """The tag of the image built for one build."""
    return f"dockyard/{app}:{build_id}"


def predeploy_tag(app: str, deployment_id: str) -> str:
    """The tag of the image a deployment's predeploy command was committed into."""
    return f"dockyard/{app}:{deployment_id[:12]}-predeploy"


def build_labels(app: str, build_id: str) -> dict[str, str]:
    """Labels of a built image."""
    return {LABEL_APP: app, LABEL_BUILD: build_id}


def build_context(source: Path) -> bytes:
    """The source tree as an uncompressed tar (without .git), the docker build context."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source)
            if rel.parts[0] in EXCLUDED_FROM_CONTEXT:
                continue
            # recursive=False: rglob already visits every entry once, in a stable order.
            tar.add(path, arcname=rel.as_posix(), recursive=False)
    return buf.getvalue()


def docker_env(env: Mapping[str, str]) -> list[str]:
    """Docker's KEY=value list, in the mapping's order."""
    return [f"{k}={v}" for k, v in env.items()]


def shell_command(command: str) -> list[str]:
    """The Cmd that runs a command string through the image's shell (after any ENTRYPOINT)."""
    return ["/bin/sh", "-c", command]


def stop_timeout(grace: float) -> int:
    """Docker's stop `t` is whole seconds; round up so the grace is never shortened."""
    return max(0, math.ceil(grace))


def label_filters(labels: Mapping[str, str], *, running: bool = False) -> dict[str, list[str]]:
    """A container list filter matching every given label (and optionally running only)."""
    filters: dict[str, list[str]] = {"label": [f"{k}={v}" for k, v in labels.items()]}
    if running:
        filters["status"] = ["running"]
    return filters


# ---------------------------------------------------------------- one-off containers


def oneoff_name(spec: OneOffSpec) -> str:
    """The container name of a one-off command."""
    return f"dockyard-{spec.app}-{spec.deployment_id[:12]}-{spec.container}"


def oneoff_labels(spec: OneOffSpec) -> dict[str, str]:
    """Labels that let a restarted hook-runner find the one-off container again."""
    return {
        LABEL_APP: spec.app,
        LABEL_RELEASE: str(spec.release),
        LABEL_DEPLOYMENT: spec.deployment_id,
        LABEL_PHASE: spec.phase,
        LABEL_CONTAINER: spec.container,
        LABEL_ROLE: ROLE_ONEOFF,
    }


def oneoff_identity(spec: OneOffSpec) -> dict[str, str]:
    """The labels that identify one command of one deployment (for re-attaching)."""
    labels = oneoff_labels(spec)
    keys = (LABEL_APP, LABEL_DEPLOYMENT, LABEL_PHASE, LABEL_CONTAINER, LABEL_ROLE)
    return {k: labels[k] for k in keys}


@dataclass(frozen=True)
class Confinement:
    """What every container of an app runs under (settings: DOCKYARD_CAP_ADD, _PIDS_LIMIT)."""

    cap_add: tuple[str, ...] = ()
    pids_limit: int = DEFAULT_PIDS_LIMIT


DEFAULTS = Confinement()


def network_name(app: str) -> str:
    """The app's own bridge network: its containers reach each other, no other app's."""
    return f"dockyard-{app}"


def network_labels(app: str) -> dict[str, str]:
    """Labels of an app's network (found and removed by them)."""
    return {LABEL_APP: app, LABEL_ROLE: ROLE_NETWORK}


def network_config(app: str) -> dict[str, Any]:
    """The create config of an app's network: a plain bridge of its own (outbound allowed)."""
    return {"Name": network_name(app), "Driver": "bridge", "CheckDuplicate": True,
            "Labels": network_labels(app)}


def confined_host_config(app: str, confinement: Confinement) -> dict[str, Any]:
    """No capabilities (but those added back), no privilege gain, a pids limit, the app's
    network, nothing of the host mounted."""
    return {
        "NetworkMode": network_name(app),
        "Privileged": False,
        "CapDrop": ["ALL"],
        "CapAdd": list(confinement.cap_add),
        # setuid binaries in the image (su, sudo, ping) cannot raise privileges.
        "SecurityOpt": ["no-new-privileges"],
        "PidsLimit": confinement.pids_limit,
        "RestartPolicy": {"Name": "no"},
        # The runtime reads the exit code and logs before removing the container itself.
        "AutoRemove": False,
    }


def isolated_host_config(app: str, memory: int, confinement: Confinement) -> dict[str, Any]:
    """A one-off's host config: confined, and memory-limited."""
    return {
        **confined_host_config(app, confinement),
        "Memory": memory,
        # Equal to Memory so swap cannot be used to go past the limit.
        "MemorySwap": memory,
    }


def oneoff_config(spec: OneOffSpec,
                  confinement: Confinement = DEFAULTS) -> dict[str, Any]:
    """The create config of a one-off container; the image's ENTRYPOINT (if any) stays."""
    return {
        "Image": spec.artifact,
        "Cmd": shell_command(spec.command),
        "Env": docker_env(spec.env),
        "Labels": oneoff_labels(spec),
        "Tty": False,
        "OpenStdin": False,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "HostConfig": isolated_host_config(spec.app, spec.memory, confinement),
    }


def commit_config(image_config: Mapping[str, Any], container_env: Mapping[str, str],
                  container_labels: Mapping[str, str], container_name: str) -> dict[str, Any]:
    """The config of an image committed from a predeploy container: the original image's.

    The engine merges the container's config into whatever is given here for every field
    left empty, so each field that matters is set explicitly: CMD and ENTRYPOINT stay the
    image's (not the predeploy command), and config values never get baked into the image.
    """
    image_env = list(image_config.get("Env") or [])
    image_keys = {entry.split("=", 1)[0] for entry in image_env}
    # A bare KEY (no '=') shadows the container's KEY=value in the engine's merge and is
    # not set in processes started from the image; the values (secrets) stay out.
    env = image_env + [key for key in container_env if key not in image_keys]
    image_labels = dict(image_config.get("Labels") or {})
    labels = {k: "" for k in ONEOFF_ONLY_LABELS if k in container_labels} | image_labels
    labels[LABEL_COMMITTED_FROM] = container_name
    config: dict[str, Any] = {
        "Env": env,
        "Cmd": image_config.get("Cmd"),
        "Entrypoint": image_config.get("Entrypoint"),
        "ExposedPorts": image_config.get("ExposedPorts"),
        "WorkingDir": image_config.get("WorkingDir") or "",
        "User": image_config.get("User") or "",
        "Labels": labels,
    }
    return config


# ---------------------------------------------------------------- instances


def instance_name(spec: InstanceSpec) -> str:
    """The container name of one instance."""
    return f"dockyard-{spec.app}-{spec.deployment_id[:12]}-{spec.process}-{spec.index}"


def instance_labels(spec: InstanceSpec) -> dict[str, str]:
    """Labels that let a restarted scheduler find an instance again."""
    return {
        LABEL_APP: spec.app,
        LABEL_RELEASE: str(spec.release),
        LABEL_DEPLOYMENT: spec.deployment_id,
        LABEL_PROCESS: spec.process,
        LABEL_INDEX: str(spec.index),
        LABEL_ROLE: ROLE_INSTANCE,
    }


def instance_identity(spec: InstanceSpec) -> dict[str, str]:
    """The labels that identify one instance slot of one deployment (for re-attaching)."""
    labels = instance_labels(spec)
    keys = (LABEL_APP, LABEL_DEPLOYMENT, LABEL_PROCESS, LABEL_INDEX, LABEL_ROLE)
    return {k: labels[k] for k in keys}


def app_instances(app: str) -> dict[str, str]:
    """The labels of every instance of an app."""
    return {LABEL_APP: app, LABEL_ROLE: ROLE_INSTANCE}


def instance_config(spec: InstanceSpec, host_ip: str,
                    confinement: Confinement = DEFAULTS) -> dict[str, Any]:
    """The create config of an instance; `web` publishes $PORT on a random host_ip port."""
    env = {k: v for k, v in spec.env.items() if k != "PORT"} | {"PORT": str(CONTAINER_PORT)}
    host_config = confined_host_config(spec.app, confinement)
    config: dict[str, Any] = {
        "Image": spec.artifact,
        "Env": docker_env(env),
        "Labels": instance_labels(spec),
        "Tty": False,
        "OpenStdin": False,
        "HostConfig": host_config,
    }
    if spec.command:
        config["Cmd"] = shell_command(spec.command)
    if spec.process == WEB:
        config["ExposedPorts"] = {PORT_KEY: {}}
        # An empty HostPort asks the engine for a free port; read it back from inspect.
        host_config["PortBindings"] = {PORT_KEY: [{"HostIp": host_ip, "HostPort": ""}]}
    return config


def published_port(inspect: Mapping[str, Any]) -> int | None:
    """The host port bound to the container's $PORT, from a container inspect."""
    ports = (inspect.get("NetworkSettings") or {}).get("Ports") or {}
    for binding in ports.get(PORT_KEY) or []:
        if binding.get("HostPort"):
            return int(binding["HostPort"])
    return None


def listed_port(summary: Mapping[str, Any]) -> int | None:
    """The host port bound to $PORT, from a container list entry."""
    for port in summary.get("Ports") or []:
        if port.get("PrivatePort") == CONTAINER_PORT and port.get("PublicPort"):
            return int(port["PublicPort"])
    return None

"""The Swarm runtime's service specs, as plain values: what one instance or one one-off is as a
Swarm service, with the docker runtime's labels, confinement and limits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dockyard.runtime import docker_config as dc
from dockyard.runtime.base import InstanceSpec, OneOffSpec

NS = 1_000_000_000
# A task's states: where it may still go on, where it ended.
RUNNING = "running"
PENDING = frozenset({"new", "allocated", "pending", "assigned", "accepted", "preparing",
                     "ready", "starting"})
ENDED = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})


def network_config(app: str) -> dict[str, Any]:
    """The app's own overlay network: its tasks reach each other on any node, no other app's."""
    return {"Name": dc.network_name(app), "Driver": "overlay", "CheckDuplicate": True,
            # Attachable: a predeploy to commit runs as a plain container, on this network too.
            "Attachable": True, "Labels": dc.network_labels(app)}


def _container_spec(image: str, command: str, env: Mapping[str, str],
                    labels: Mapping[str, str], grace: float,
                    confinement: dc.Confinement) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "Image": image,
        "Env": dict(env),  # aiodocker turns the mapping into KEY=value entries
        "Labels": dict(labels),
        "StopGracePeriod": int(grace * NS),
        # The docker runtime's confinement: no capabilities but those added back (the engine's
        # default seccomp profile applies to tasks too).
        "CapabilityDrop": ["ALL"],
        "CapabilityAdd": list(confinement.cap_add),
    }
    if command:
        spec["Command"] = dc.shell_command(command)
    return spec


def _resources(memory: int | None, confinement: dc.Confinement) -> dict[str, Any]:
    limits: dict[str, Any] = {"Pids": confinement.pids_limit}
    if memory:
        limits["MemoryBytes"] = memory
    return {"Limits": limits}


def instance_service(spec: InstanceSpec, confinement: dc.Confinement = dc.DEFAULTS,
                     grace: float = 10.0) -> dict[str, Any]:
    """The create arguments of one instance's service (one replica, never restarted by Swarm:
    the scheduler decides); `web` publishes $PORT on a port of the node it is placed on."""
    env = {k: v for k, v in spec.env.items() if k != "PORT"} | {"PORT": str(dc.CONTAINER_PORT)}
    labels = dc.instance_labels(spec)
    args: dict[str, Any] = {
        "name": dc.instance_name(spec),
        "labels": labels,
        "task_template": {
            "ContainerSpec": _container_spec(spec.artifact, spec.command, env,
                                             labels, grace, confinement),
            "Resources": _resources(None, confinement),
            "RestartPolicy": {"Condition": "none"},
            "Networks": [{"Target": dc.network_name(spec.app)}],
        },
        "mode": {"Replicated": {"Replicas": 1}},
    }
    if spec.process == dc.WEB:
        # Host mode: the port of the node the task runs on (the routing mesh would add a hop).
        args["endpoint_spec"] = {"Ports": [{"Protocol": "tcp", "TargetPort": dc.CONTAINER_PORT,
                                            "PublishMode": "host"}]}
    return args


def oneoff_service(spec: OneOffSpec, confinement: dc.Confinement = dc.DEFAULTS) -> dict[str, Any]:
    """The create arguments of one one-off command: a job of one task, run once."""
    labels = dc.oneoff_labels(spec)
    return {
        "name": dc.oneoff_name(spec),
        "labels": labels,
        "task_template": {
            "ContainerSpec": _container_spec(spec.artifact, spec.command, spec.env,
                                             labels, spec.kill_grace, confinement),
            "Resources": _resources(spec.memory, confinement),
            "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
            "Networks": [{"Target": dc.network_name(spec.app)}],
        },
        "mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}},
    }


def latest_task(tasks: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The service's newest task (a one-replica service has one, unless it was replaced)."""
    if not tasks:
        return None
    return max(tasks, key=lambda t: str(t.get("CreatedAt", "")))


def task_state(task: Mapping[str, Any]) -> str:
    return str((task.get("Status") or {}).get("State", ""))


def task_error(task: Mapping[str, Any]) -> str:
    status = task.get("Status") or {}
    return str(status.get("Err") or status.get("Message") or task_state(task))


def exit_code(task: Mapping[str, Any]) -> int | None:
    status = (task.get("Status") or {}).get("ContainerStatus") or {}
    code = status.get("ExitCode")
    return int(code) if code is not None else None


def published_port(task: Mapping[str, Any]) -> int | None:
    """The node port a web task's $PORT is published on."""
    for port in ((task.get("Status") or {}).get("PortStatus") or {}).get("Ports") or []:
        if port.get("TargetPort") == dc.CONTAINER_PORT and port.get("PublishedPort"):
            return int(port["PublishedPort"])
    return None


def node_address(node: Mapping[str, Any], fallback: str) -> str:
    """Where the router reaches a node's published ports: its address in the swarm."""
    addr = str((node.get("Status") or {}).get("Addr") or "")
    return addr if addr and addr != "0.0.0.0" else fallback  # noqa: S104 (a value, not a bind)

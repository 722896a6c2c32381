"""Pure: whether the recorded state vouches for an event, never its payload alone.

A switch needs the hook-runner's recorded postdeploy outcome to be this very hook.succeeded, and
the instances to be exactly the web instances the scheduler recorded for the release, on the
runtime's own host. What is routed is taken from those records, not from the event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from dockyard.contract.events import (
    AnyEvent,
    DeploySpec,
    Event,
    HookSucceeded,
    InstanceRef,
    ScalePlaced,
)
from dockyard.contract.names import InvalidName, check_app, check_deployment_id
from dockyard.contract.state import LiveRelease
from dockyard.router.errors import BadEnvelope, ForeignHost, NoVerdict, PlacementMismatch
from dockyard.router.routes import WEB
from dockyard.state.placements import Placement

# The step under which the hook-runner records its postdeploy outcome (before publishing it).
POSTDEPLOY_STEP = "postdeploy-phase"
# The hosts each runtime publishes instance ports on: process and docker bind loopback only;
# swarm's are its nodes' addresses (DOCKYARD_SWARM_HOSTS, loopback for a single node).
RUNTIME_HOSTS: Mapping[str, tuple[str, ...]] = {
    "process": ("127.0.0.1",), "docker": ("127.0.0.1",), "swarm": ("127.0.0.1",)}


def runtime_hosts(swarm_hosts: tuple[str, ...]) -> Mapping[str, tuple[str, ...]]:
    """RUNTIME_HOSTS with the swarm's nodes as configured."""
    return {**RUNTIME_HOSTS, "swarm": swarm_hosts}
MAX_PORT = 65535


class Verified(msgspec.Struct, frozen=True, kw_only=True):
    """A switch the records vouch for, with what to route taken from the records."""

    app: str
    deployment_id: str
    release: int
    spec: DeploySpec
    instances: list[InstanceRef]


def checked_envelope(event: Event[Any], subject: str) -> str:
    """The event's app, once its app and deployment id are well-formed and it came on its
    own app's subject (the raw NATS subject it was delivered on)."""
    try:
        check_app(event.subject)
        check_deployment_id(event.deployment_id)
    except InvalidName as exc:
        raise BadEnvelope(event.subject, event.deployment_id, str(exc)) from None
    expected = event.nats_subject()
    if subject != expected:
        raise BadEnvelope(event.subject, event.deployment_id,
                          f"arrived on {subject!r}, not on its own app's subject {expected!r}")
    return event.subject


def web_instances(instances: list[InstanceRef]) -> list[InstanceRef]:
    """The instances that are routed: web ones, in a stable order."""
    return sorted((i for i in instances if i.process == WEB), key=lambda i: (i.id, i.port or 0))


def _described(instances: list[InstanceRef]) -> str:
    return ", ".join(f"{i.id}@{i.host}:{i.port}" for i in instances) or "none"


def verified_switch(event: HookSucceeded, subject: str, verdict: AnyEvent | None,
                    placement: Placement | None,
                    hosts: Mapping[str, tuple[str, ...]] = RUNTIME_HOSTS) -> Verified:
    """What a hook.succeeded may switch to, given the hook-runner's recorded postdeploy outcome
    and the scheduler's recorded placement of the release; raises Unverified otherwise."""
    app = checked_envelope(event, subject)
    deployment_id, release = event.deployment_id, event.release
    if verdict is None:
        raise NoVerdict(app, deployment_id,
                        "postdeploy has no recorded outcome: it is still running or never ran")
    if not isinstance(verdict, HookSucceeded):
        raise NoVerdict(app, deployment_id,
                        f"postdeploy's recorded outcome is {verdict.type}, not a success")
    recorded = (verdict.id, verdict.subject, verdict.deployment_id, verdict.release)
    if recorded != (event.id, app, deployment_id, release):
        raise NoVerdict(app, deployment_id,
                        f"the event (id {event.id!r}, release {release}) is not the recorded "
                        f"postdeploy outcome (id {verdict.id!r}, app {verdict.subject!r}, "
                        f"release {verdict.release})")
    if placement is None:
        raise PlacementMismatch(app, deployment_id,
                                f"the scheduler recorded no instances for release {release}")
    if (placement.app, placement.release, placement.deployment_id) != (app, release,
                                                                        deployment_id):
        raise PlacementMismatch(app, deployment_id,
                                f"release {release}'s instances were recorded for app "
                                f"{placement.app!r} by deployment {placement.deployment_id!r}")
    claimed, placed = web_instances(event.data.instances), web_instances(placement.instances)
    if claimed != placed:
        raise PlacementMismatch(app, deployment_id,
                                f"the event routes to [{_described(claimed)}], the scheduler "
                                f"started [{_described(placed)}]")
    if event.data != verdict.data:
        raise NoVerdict(app, deployment_id,
                        "the event's spec differs from the recorded postdeploy outcome's")
    _check_hosts(app, deployment_id, event.data.spec.runtime, placed, hosts)
    return Verified(app=app, deployment_id=deployment_id, release=release,
                    spec=verdict.data.spec, instances=list(placement.instances))


def _check_hosts(app: str, deployment_id: str, runtime: str, placed: list[InstanceRef],
                 hosts: Mapping[str, tuple[str, ...]]) -> None:
    own = hosts.get(runtime, ())
    for instance in placed:
        if instance.host not in own:
            raise ForeignHost(app, deployment_id,
                              f"instance {instance.id} is on host {instance.host!r}, not on "
                              f"runtime {runtime!r}'s own ({', '.join(own) or 'none'})")
        if instance.port is not None and not 0 < instance.port <= MAX_PORT:
            raise ForeignHost(app, deployment_id,
                              f"instance {instance.id} has port {instance.port}")


def verified_scale(event: ScalePlaced, subject: str, live: LiveRelease | None,
                   placement: Placement | None,
                   hosts: Mapping[str, tuple[str, ...]] = RUNTIME_HOSTS) -> LiveRelease:
    """The live record a scale.placed may route to: the app's live release with the instances
    the scheduler recorded for it by this very operation; raises Unverified otherwise."""
    app = checked_envelope(event, subject)
    operation = event.deployment_id
    if live is None or live.release != event.release:
        raise PlacementMismatch(app, operation,
                                f"release {event.release} is not the live release "
                                f"({'none' if live is None else live.release})")
    if placement is None or (placement.app, placement.release, placement.operation_id) != (
            app, event.release, operation):
        raise PlacementMismatch(app, operation,
                                f"the scheduler recorded no instances of release "
                                f"{event.release} for this operation")
    claimed, placed = web_instances(event.data.instances), web_instances(placement.instances)
    if claimed != placed:
        raise PlacementMismatch(app, operation,
                                f"the event routes to [{_described(claimed)}], the scheduler "
                                f"placed [{_described(placed)}]")
    _check_hosts(app, operation, live.spec.runtime, placed, hosts)
    return msgspec.structs.replace(live, instances=list(placement.instances))

"""Pure decisions: what the route table becomes given the KV state records and an event."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from dockyard.schemas.events import (
    DeployFailed,
    DeployQueued,
    HookSucceeded,
    InstanceRef,
    TrafficFailed,
    TrafficSwitched,
    event_id,
    type_of,
)
from dockyard.schemas.state import LiveRelease, Pending

SOURCE = "dockyard/router"
WEB = "web"


class AppRoute(msgspec.Struct, frozen=True, kw_only=True):
    """How one app's host answers: proxied to upstreams, or 503 while its first deploy runs."""

    app: str
    upstreams: tuple[str, ...] = ()
    pending: bool = False


RouteTable = Mapping[str, AppRoute]


class Switch(msgspec.Struct, frozen=True, kw_only=True):
    """Route the app to a new release."""

    live: LiveRelease
    previous_release: int | None


class Republish(msgspec.Struct, frozen=True, kw_only=True):
    """The switch already happened (a redelivery): only announce it again."""

    live: LiveRelease


class Ignore(msgspec.Struct, frozen=True, kw_only=True):
    """Nothing to do, and why."""

    reason: str


def upstreams(instances: Iterable[InstanceRef]) -> tuple[str, ...]:
    """host:port of every web instance that listens on a port, in a stable order."""
    return tuple(sorted(f"{i.host}:{i.port}" for i in instances
                        if i.process == WEB and i.port is not None))


def table_from_state(live: Iterable[LiveRelease], pending: Iterable[Pending]) -> dict[str, AppRoute]:
    """The route table the KV records describe; a live release wins over a pending marker."""
    table = {p.app: AppRoute(app=p.app, pending=True) for p in pending}
    for record in live:
        table[record.app] = AppRoute(app=record.app, upstreams=upstreams(record.instances))
    return table


def with_live(table: RouteTable, live: LiveRelease) -> dict[str, AppRoute]:
    """The table with one app routed to the instances of its live release."""
    return {**table, live.app: AppRoute(app=live.app, upstreams=upstreams(live.instances))}


def with_pending(table: RouteTable, app: str) -> dict[str, AppRoute]:
    """The table with one app answering 503 (unless it already routes to a release)."""
    current = table.get(app)
    if current is not None and not current.pending:
        return dict(table)
    return {**table, app: AppRoute(app=app, pending=True)}


def without_pending(table: RouteTable, app: str) -> dict[str, AppRoute]:
    """The table without an app's pending marker (its host answers 404 again)."""
    return {name: route for name, route in table.items() if not (name == app and route.pending)}


def decide_switch(event: HookSucceeded, current: LiveRelease | None) -> Switch | Republish | Ignore:
    """What a HookSucceeded does, given the app's live release record."""
    if current is not None and current.deployment_id == event.deployment_id:
        return Republish(live=current)
    if current is not None and event.release < current.release:
        # A late redelivery of an older deploy must not route back to retired instances.
        return Ignore(reason=f"release {event.release} is older than live {current.release}")
    live = LiveRelease(app=event.app, release=event.release, deployment_id=event.deployment_id,
                       spec=event.spec, instances=list(event.instances))
    return Switch(live=live, previous_release=None if current is None else current.release)


def decide_queued(event: DeployQueued, current: LiveRelease | None,
                  pending: Pending | None) -> Pending | None:
    """The Pending record to write when a first deploy is queued, or None when nothing changes."""
    if current is not None:
        return None
    if pending is not None and pending.deployment_id == event.deployment_id:
        return None
    return Pending(app=event.app, deployment_id=event.deployment_id)


def decide_failed(event: DeployFailed, current: LiveRelease | None, pending: Pending | None) -> bool:
    """Whether a failed deploy removes the app's pending marker (the first deploy failed)."""
    return current is None and pending is not None and pending.deployment_id == event.deployment_id


def switched_event(live: LiveRelease, previous_release: int | None) -> TrafficSwitched:
    """The TrafficSwitched announcing a live record (same id on every redelivery)."""
    return TrafficSwitched(
        id=event_id(live.deployment_id, type_of(TrafficSwitched)),
        source=SOURCE,
        subject=live.app,
        time=live.switched_at,
        deployment_id=live.deployment_id,
        release=live.release,
        spec=live.spec,
        instances=list(live.instances),
        previous_release=previous_release,
    )


def switch_failed_event(event: HookSucceeded, reason: str) -> TrafficFailed:
    """The TrafficFailed for a switch Caddy refused or could not be asked to make."""
    return TrafficFailed(
        id=event_id(event.deployment_id, type_of(TrafficFailed)),
        source=SOURCE,
        subject=event.app,
        deployment_id=event.deployment_id,
        release=event.release,
        status="switch-error",
        reason=reason,
    )


def previous_release_from_history(history: Iterable[LiveRelease], deployment_id: str) -> int | None:
    """The release that was live before deployment_id's, from the live key's history (oldest first)."""
    previous: int | None = None
    for record in history:
        if record.deployment_id == deployment_id:
            return previous
        previous = record.release
    return previous

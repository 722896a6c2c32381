"""Pure decisions: what the route table becomes given the KV state records and an event."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import msgspec

from dockyard.contract.events import (
    DeployFailed,
    DeployQueued,
    DeploySpec,
    Fact,
    FailedStatus,
    FailureData,
    InstanceRef,
    SwitchData,
    TrafficFailed,
    TrafficSwitched,
)
from dockyard.contract.names import InvalidAppName, check_app
from dockyard.contract.plan import Rollout
from dockyard.contract.state import LiveRelease, Maintenance, Pending
from dockyard.state.maintenance import MaintenanceError, check_message
from dockyard.state.routes import LIVE, RouteGone, RouteUpdate

if TYPE_CHECKING:
    from dockyard.router.rollout import Canary
    from dockyard.router.verify import Verified

WEB = "web"
T = TypeVar("T")


class AppRoute(msgspec.Struct, frozen=True, kw_only=True):
    """How one app's host answers: proxied to upstreams, or 503 while its first deploy runs,
    or 503 with a maintenance page (whatever its upstreams) while it is in maintenance."""

    app: str
    upstreams: tuple[str, ...] = ()
    pending: bool = False
    maintenance: bool = False
    # The operator's line on the maintenance page, if any.
    message: str | None = None
    # Each client keeps the dial slot a cookie names: the app's release has a [rollout] (its
    # next deploy's canary needs it, and the config's shape does not change when one starts).
    sticky: bool = False
    # A canary in progress: the new release's upstreams, and the share of requests they take.
    canary: tuple[str, ...] = ()
    canary_percent: int = 0


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


def valid_app(name: str) -> bool:
    """Whether a name is a valid app name (a record under any other is never routed)."""
    try:
        check_app(name)
    except InvalidAppName:
        return False
    return True


def shown_message(message: str | None) -> str | None:
    """A recorded maintenance message as the page shows it; one the writers should have refused
    (a Caddy placeholder, a control character) is left out."""
    try:
        return check_message(message)
    except MaintenanceError:
        return None


def table_from_state(live: Iterable[LiveRelease], pending: Iterable[Pending],
                     maintenance: Iterable[Maintenance] = ()) -> dict[str, AppRoute]:
    """The route table the KV records describe; a live release wins over a pending marker, and
    maintenance over both (an app in maintenance answers its page, with or without a release).

    Records under an invalid app name are left out: they name no host and no file.
    """
    table = {p.app: AppRoute(app=p.app, pending=True) for p in pending if valid_app(p.app)}
    for record in live:
        if valid_app(record.app):
            table[record.app] = live_route(record)
    for flag in maintenance:
        if flag.enabled and valid_app(flag.app):
            current = table.get(flag.app, AppRoute(app=flag.app))
            table[flag.app] = msgspec.structs.replace(current, maintenance=True,
                                                      message=shown_message(flag.message))
    return table


@dataclass
class Records:
    """What the router knows of the records its routes come from, by app: read whole at start,
    then kept current by the buckets' updates, its own writes and each event's fresh reads of
    its own app, so that no event reads every app's records again."""

    live: dict[str, LiveRelease] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)
    maintenance: dict[str, Maintenance] = field(default_factory=dict)  # only apps in it

    def table(self) -> dict[str, AppRoute]:
        """The route table these records describe."""
        return table_from_state(self.live.values(), self.pending.values(),
                                self.maintenance.values())

    def route(self, app: str) -> AppRoute | None:
        """How one app's host answers, as its records say."""
        live, pending, flag = self.live.get(app), self.pending.get(app), self.maintenance.get(app)
        return table_from_state([live] if live else [], [pending] if pending else [],
                                [flag] if flag else []).get(app)

    def knows(self, update: RouteUpdate | Maintenance) -> bool:
        """Whether a record as an update says it is known already (then there is nothing to
        do; otherwise it may be newer than what is known, or older: a watcher lags)."""
        if isinstance(update, Maintenance):
            return self.maintenance.get(update.app) == (update if update.enabled else None)
        if isinstance(update, RouteGone):
            return update.app not in (self.live if update.kind == LIVE else self.pending)
        if isinstance(update, LiveRelease):
            return self.live.get(update.app) == update
        return self.pending.get(update.app) == update

    def apply(self, update: RouteUpdate | Maintenance) -> bool:
        """Take one record as it is now; whether that changed what is known."""
        if isinstance(update, Maintenance):
            return _put(self.maintenance, update.app, update if update.enabled else None)
        if isinstance(update, RouteGone) and update.kind == LIVE:
            return _put(self.live, update.app, None)
        if isinstance(update, RouteGone):
            return _put(self.pending, update.app, None)
        if isinstance(update, LiveRelease):
            return _put(self.live, update.app, update)
        return _put(self.pending, update.app, update)

    def app(self, app: str, live: LiveRelease | None, pending: Pending | None,
            maintenance: Maintenance) -> bool:
        """Take all of one app's records as they are now; whether that changed what is known."""
        changed = [_put(self.live, app, live), _put(self.pending, app, pending),
                   _put(self.maintenance, app, maintenance if maintenance.enabled else None)]
        return any(changed)


def _put(known: dict[str, T], app: str, record: T | None) -> bool:
    if known.get(app) == record:
        return False
    if record is None:
        del known[app]
    else:
        known[app] = record
    return True


def live_route(live: LiveRelease) -> AppRoute:
    """An app routed to the web instances of its live release."""
    return AppRoute(app=live.app, upstreams=upstreams(live.instances),
                    sticky=live.spec.plan.rollout is not None)


def with_canary(route: AppRoute, canary: Canary | None) -> AppRoute:
    """An app's route with its canary's share of requests going to the new release's
    instances (unless the app answers 503: maintenance, pending or no web instance). Sticky
    from the canary's start, before any share is given: a client has its slot's cookie before
    a slot turns new, so it never bounces back."""
    if canary is None or route.maintenance or route.pending or not route.upstreams:
        return route
    if not canary.percent:
        return msgspec.structs.replace(route, sticky=True)
    return msgspec.structs.replace(route, sticky=True, canary=canary.upstreams,
                                   canary_percent=canary.percent)


def with_live(table: RouteTable, live: LiveRelease) -> dict[str, AppRoute]:
    """The table with one app routed to the instances of its live release (still answering its
    maintenance page if it is in maintenance)."""
    current = table.get(live.app)
    route = live_route(live)
    if current is not None and current.maintenance:
        route = msgspec.structs.replace(route, maintenance=True, message=current.message)
    return {**table, live.app: route}


def with_pending(table: RouteTable, app: str) -> dict[str, AppRoute]:
    """The table with one app answering 503 (unless it already routes to a release)."""
    current = table.get(app)
    if current is not None and current.maintenance:
        # Its maintenance page stays; the marker is kept for when maintenance ends.
        return {**table, app: msgspec.structs.replace(current, pending=True)}
    if current is not None and not current.pending:
        return dict(table)
    return {**table, app: AppRoute(app=app, pending=True)}


def without_pending(table: RouteTable, app: str) -> dict[str, AppRoute]:
    """The table without an app's pending marker (its host answers 404 again, or its
    maintenance page)."""
    found: dict[str, AppRoute] = {}
    for name, route in table.items():
        if name == app and route.pending:
            if route.maintenance:
                found[name] = msgspec.structs.replace(route, pending=False)
            continue
        found[name] = route
    return found


def without_app(table: RouteTable, app: str) -> dict[str, AppRoute]:
    """The table with no route for the app at all (destroyed: its host answers 404)."""
    return {name: route for name, route in table.items() if name != app}


def decide_switch(verified: Verified, current: LiveRelease | None) -> Switch | Republish | Ignore:
    """What a verified HookSucceeded does, given the app's live release record."""
    if current is not None and current.deployment_id == verified.deployment_id:
        return Republish(live=current)
    if current is not None and verified.release < current.release:
        # A late redelivery of an older deploy must not route back to retired instances.
        return Ignore(reason=f"release {verified.release} is older than live {current.release}")
    live = LiveRelease(app=verified.app, release=verified.release,
                       deployment_id=verified.deployment_id, spec=verified.spec,
                       instances=list(verified.instances))
    return Switch(live=live, previous_release=None if current is None else current.release)


def canary_of(decision: Switch, current: LiveRelease | None,
              table: RouteTable) -> Rollout | None:
    """The rollout a switch goes through as a canary, or None to switch every request at once:
    the new release has a [rollout], is not a rollback (that is wanted at once), and the old
    release serves requests the canary can be compared with (not a first deploy, not an app
    in maintenance or without a web instance, new or old)."""
    rollout = decision.live.spec.plan.rollout
    if rollout is None or not rollout.steps or decision.live.spec.kind == "rollback" \
            or current is None:
        return None
    route = table.get(decision.live.app)
    if route is None or route.maintenance or route.pending or not route.upstreams:
        return None
    return rollout if upstreams(decision.live.instances) else None


def decide_queued(event: DeployQueued, current: LiveRelease | None,
                  pending: Pending | None) -> Pending | None:
    """The Pending record to write when a first deploy is queued, or None when nothing changes."""
    if current is not None:
        return None
    if pending is not None and pending.deployment_id == event.deployment_id:
        return None
    return Pending(app=event.app, deployment_id=event.deployment_id)


def decide_failed(event: DeployFailed, current: LiveRelease | None,
                  pending: Pending | None) -> bool:
    """Whether a failed deploy removes the app's pending marker (the first deploy failed)."""
    return current is None and pending is not None and pending.deployment_id == event.deployment_id


def switched(live: LiveRelease, previous_release: int | None) -> Fact[SwitchData]:
    """The traffic.switched announcing a live record."""
    return Fact.of(TrafficSwitched, SwitchData(spec=live.spec, instances=list(live.instances),
                                               previous_release=previous_release))


def switch_failed(reason: str, spec: DeploySpec,
                  status: FailedStatus = "switch-error") -> Fact[FailureData]:
    """The traffic.failed of a switch Caddy refused or could not be asked to make (or of a
    canary sent back), with the deploy's spec: the scheduler removes the new instances by it,
    the hook-runner runs on-failure from its build."""
    return Fact.of(TrafficFailed, FailureData(status=status, reason=reason, spec=spec))


def previous_release_from_history(history: Iterable[LiveRelease], deployment_id: str) -> int | None:
    """The release that was live before deployment_id's, from the live key's history
    (oldest first)."""
    previous: int | None = None
    for record in history:
        if record.deployment_id == deployment_id:
            return previous
        previous = record.release
    return previous

"""Events in → checked against the records → one atomic proxy change → recorded routes and
events out; decisions in routes.py and verify.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import msgspec
from faststream import Context
from nats.aio.client import Client
from nats.errors import Error as NatsError

from dockyard.bus.broker import Rejected
from dockyard.bus.emit import Emitter
from dockyard.bus.logs import DeployLog, heading
from dockyard.contract.events import (
    DeployFailed,
    DeployQueued,
    DestroyData,
    DestroyStarted,
    DestroyUnrouted,
    Event,
    Fact,
    HookSucceeded,
    InstanceRef,
    ScalePlaced,
    TrafficScaled,
)
from dockyard.contract.state import LiveRelease
from dockyard.router import upstream_files
from dockyard.router.access_log import AccessEntry, writer_address
from dockyard.router.caddy import CaddyAdmin, CaddyError, CaddyUnreachable, admin_listen
from dockyard.router.config import (
    app_handler,
    app_of_host,
    build_config,
    host_of,
    join_host_port,
    slotted,
)
from dockyard.router.errors import EndedDeploy, Unverified
from dockyard.router.figures import KEPT_RELEASES, Measurements, Sample
from dockyard.router.routes import (
    AppRoute,
    Ignore,
    Records,
    Republish,
    RouteTable,
    decide_failed,
    decide_queued,
    decide_switch,
    previous_release_from_history,
    switch_failed,
    switched,
    valid_app,
    with_live,
    with_pending,
    without_app,
    without_pending,
)
from dockyard.router.routes import upstreams as route_upstreams
from dockyard.router.verify import (
    POSTDEPLOY_STEP,
    checked_envelope,
    runtime_hosts,
    verified_scale,
    verified_switch,
)
from dockyard.settings import Settings
from dockyard.state.routes import LIVE, PENDING, RouteGone

if TYPE_CHECKING:
    from dockyard.router.app import RouterDoors

# The NATS subject a message was delivered on (not the one its payload claims).
NatsSubject = Annotated[str, Context("message.raw_message.subject")]


class Router:
    """Keeps one Caddy's routes equal to the KV state, changing it one atomic load at a time."""

    def __init__(self, *, admin: CaddyAdmin, doors: RouterDoors, emitter: Emitter,
                 settings: Settings, log: Any, nc: Client | None = None,
                 access_log: Path | None = None) -> None:
        self.nc = nc  # for the deploy log; None in tests that drive the router alone
        self.routes_dir = (settings.data_dir / "caddy-routes").absolute()
        self.admin = admin
        self.routes = doors.routes
        self.verdicts = doors.verdicts
        self.placements = doors.placements
        self.maintenance = doors.maintenance
        self.timeouts = doors.timeouts
        self.emitter = emitter
        self.domain = settings.domain
        self.hosts = runtime_hosts(settings.swarm_hosts)  # where each runtime's instances are
        self.listen = join_host_port(settings.http_host, settings.http_port)
        self.admin_listen = admin_listen(admin.url)
        self.log = log
        # One config change at a time inside this instance; other instances' changes arrive
        # as the buckets' updates.
        self.lock = asyncio.Lock()
        self.loaded: dict[str, Any] | None = None  # the config Caddy was last given
        self.table: dict[str, AppRoute] | None = None  # what it serves now (None: not known)
        self.records = Records()
        # Caddy logs every request to this socket (None: no measurement); each is counted for
        # the release whose instance served it.
        self.access_log = None if access_log is None else writer_address(access_log)
        self.measured = Measurements()
        self.serving: dict[str, dict[str, int]] = {}  # app -> upstream -> release

    def config_for(self, table: RouteTable) -> dict[str, Any]:
        """The whole Caddy config of a route table."""
        return build_config(table, domain=self.domain, listen=self.listen,
                            admin_listen=self.admin_listen, routes_dir=str(self.routes_dir),
                            access_log=self.access_log)

    def measure(self, entry: AccessEntry) -> None:
        """Count one request of the access log for the release whose instance served it."""
        app = app_of_host(entry.host, self.domain)
        release = self.serving.get(app or "", {}).get(entry.upstream)
        if app is None or release is None:
            return  # not an app's request, or no instance answered (maintenance, 503, 404)
        self.measured.add(app, release, Sample(at=time.monotonic(), status=entry.status,
                                               seconds=entry.duration,
                                               failed=entry.failed))

    def _attribute(self, live: LiveRelease) -> None:
        """Requests to these instances count for their release (from before the switch)."""
        serving = self.serving.setdefault(live.app, {})
        for upstream in route_upstreams(live.instances):
            serving[upstream] = live.release
        oldest = sorted(set(serving.values()))[:-KEPT_RELEASES]
        for upstream, release in list(serving.items()):
            if release in oldest:
                del serving[upstream]

    async def _load(self, table: RouteTable, *, force: bool = True) -> None:
        """Point every app at its upstreams; reload Caddy only when the config's shape changed
        (or when forced). Only the apps whose route changed since the last load are looked at,
        so a switch costs the same with 1,000 apps as with one."""
        before = self.table
        changed = sorted(table) if before is None else sorted(
            app for app in table.keys() | before.keys() if table.get(app) != before.get(app))
        if before is not None and not changed and not force:
            return
        switched = self._write_upstreams(table, changed)
        reshaped = before is None or any(
            self._shape(before.get(app)) != self._shape(table.get(app)) for app in changed)
        config = self.config_for(table) if force or reshaped or self.loaded is None \
            else self.loaded
        try:
            if force or config != self.loaded:
                await self.admin.load(config)
            else:
                # Nothing to reload: the files are the switch. Caddy must still answer before
                # the switch is announced, or it is not serving anything.
                await self.admin.ping()
        except CaddyError as exc:
            for app, previous in switched:
                upstream_files.restore(self.routes_dir, app, previous)
            if isinstance(exc, CaddyUnreachable):
                # The outcome is unknown: put back the last confirmed config, never a half-switch.
                await self._restore()
            raise
        self.loaded = config
        self.table = dict(table)
        for app, previous in switched:
            upstream_files.prune(self.routes_dir, app, keep={previous} if previous else set())

    def _shape(self, route: AppRoute | None) -> dict[str, Any] | None:
        """What an app's route puts in the config (its addresses are in files, not in it)."""
        return None if route is None else app_handler(route, str(self.routes_dir))

    def _write_upstreams(self, table: RouteTable,
                         apps: list[str]) -> list[tuple[str, str | None]]:
        """Rewrite the upstream files of the apps among `apps` whose addresses changed;
        (app, previous generation)."""
        switched = []
        for app in apps:
            route = table.get(app)
            if route is None or route.pending or not route.upstreams:
                continue
            wanted = slotted(route.upstreams)
            if upstream_files.current_addresses(self.routes_dir, app) != wanted:
                switched.append((app, upstream_files.switch(self.routes_dir, app, wanted)))
        return switched

    async def _restore(self) -> None:
        if self.loaded is None:
            return
        try:
            await self.admin.load(self.loaded)
        except CaddyError as exc:
            self.log.warning("restore failed", error=str(exc))

    async def rebuild(self) -> None:
        """Load the whole config the KV state describes (at start); an adopted Caddy that
        already serves exactly it is left alone (a reload resets connections arriving then)."""
        async with self.lock:
            started = time.monotonic()
            live, pending, maintenance = await asyncio.gather(
                self.routes.all_live(), self.routes.all_pending(), self.maintenance.all_on())
            self.records = Records(live=live, pending=pending, maintenance=maintenance)
            for record in live.values():
                self._attribute(record)
            read = time.monotonic()
            self.loaded = await self.admin.config()
            self.table = None  # every app's files are looked at once
            await self._load(self.records.table(), force=False)
            self.log.info("routes rebuilt", live=sorted(live), pending=sorted(pending),
                          maintenance=sorted(maintenance), read_s=round(read - started, 3),
                          loaded_s=round(time.monotonic() - read, 3))
            if ignored := sorted(a for a in {*live, *pending} if not valid_app(a)):
                self.log.warning("route records under invalid app names ignored", apps=ignored)

    def _table(self, app: str) -> dict[str, AppRoute]:
        """The table Caddy serves, with one app's route as its records say now (the others'
        are not looked at: an event costs the same with 1,000 apps as with one)."""
        if self.table is None:
            return self.records.table()
        table = dict(self.table)
        route = self.records.route(app)
        if route is None:
            table.pop(app, None)
        else:
            table[app] = route
        return table

    async def _fresh(self, app: str) -> None:
        """Read one app's records again (another writer's change may not have arrived yet)."""
        live, pending, maintenance = await asyncio.gather(
            self.routes.live(app), self.routes.pending_mark(app), self.maintenance.get(app))
        self.records.app(app, live, pending, maintenance)

    async def on_hook_succeeded(self, event: HookSucceeded, subject: NatsSubject) -> None:
        """The gate opened: once the records vouch for it, switch the app's host to the
        recorded instances, then announce it."""
        log = self.log.bind(app=event.app, deployment_id=event.deployment_id, release=event.release)
        try:
            checked_envelope(event, subject)  # before its names are used as keys
        except Unverified as exc:
            _refuse(log, exc)
        async with self.lock:
            # Independent reads, asked at once: each is a round trip on the switch's path.
            ended, _, verdict, placement = await asyncio.gather(
                self.timeouts.timed_out(event.deployment_id), self._fresh(event.app),
                self.verdicts.outcome(event.deployment_id, POSTDEPLOY_STEP),
                self.placements.get(event.app, event.release))
            live, pending = self.records.live, self.records.pending
            if ended is not None:
                _refuse(log, EndedDeploy(event.app, event.deployment_id,
                                         f"the deploy already ended as timeout: {ended.reason}"))
            try:
                verified = verified_switch(event, subject, verdict, placement, self.hosts)
            except Unverified as exc:
                _refuse(log, exc)
            decision = decide_switch(verified, live.get(event.app))
            if isinstance(decision, Ignore):
                log.warning("switch ignored", reason=decision.reason)
                return
            if isinstance(decision, Republish):
                history = await self.routes.live_history(event.app)
                previous = previous_release_from_history(history, event.deployment_id)
                await self._announce(event, switched(decision.live, previous))
                log.info("switch already made, announced again")
                return
            log.info("switching", previous_release=decision.previous_release)
            self._attribute(decision.live)
            table = with_live(self._table(event.app), decision.live)
            try:
                await self._load(table, force=False)
            except CaddyError as exc:
                log.error("switch failed", error=str(exc))
                await self._announce(event, switch_failed(str(exc)))
                return
            await self.routes.set_live(decision.live)
            self.records.apply(decision.live)
            if event.app in pending:
                await self.routes.clear_pending(event.app)
                self.records.apply(RouteGone(app=event.app, kind=PENDING))
            await self._announce(event, switched(decision.live, decision.previous_release))
            log.info("switched", previous_release=decision.previous_release)
            await self._tell(event, decision.live.instances, decision.previous_release,
                             in_maintenance=event.app in self.records.maintenance)

    async def on_scale_placed(self, event: ScalePlaced, subject: NatsSubject) -> None:
        """A scale or restart placed the live release's instances: once the scheduler's record
        vouches for them, route the app's host to exactly its web instances, then announce it."""
        log = self.log.bind(app=event.app, operation_id=event.deployment_id,
                            release=event.release)
        try:
            checked_envelope(event, subject)
        except Unverified as exc:
            _refuse(log, exc)
        async with self.lock:
            _, placement = await asyncio.gather(self._fresh(event.app),
                                                self.placements.get(event.app, event.release))
            current = self.records.live.get(event.app)
            try:
                routed = verified_scale(event, subject, current, placement, self.hosts)
            except Unverified as exc:
                _refuse(log, exc)
            if current is None or current.instances != routed.instances:
                self._attribute(routed)
                await self._load(with_live(self._table(event.app), routed),
                                 force=False)  # a CaddyError: retried
                await self.routes.set_live(routed)
                self.records.apply(routed)
                log.info("scaled", upstreams=route_upstreams(routed.instances))
            announced = self.emitter.after(event, Fact.of(TrafficScaled, msgspec.structs.replace(
                event.data, instances=list(routed.instances))))
            await self.emitter.emit(announced)
            if self.nc is not None:
                op_log = DeployLog(self.nc, event.app, event.deployment_id, "router")
                upstreams = ", ".join(route_upstreams(routed.instances)) or "no web instance"
                await op_log.system(f"{host_of(event.app, self.domain)} routes to "
                                    f"v{event.release}: {upstreams}")
                await op_log.flush()

    async def _tell(self, event: HookSucceeded, instances: list[InstanceRef],
                    previous: int | None, *, in_maintenance: bool = False) -> None:
        """Say in the deploy log where the app's traffic goes now."""
        if self.nc is None:
            return
        deploy_log = DeployLog(self.nc, event.app, event.deployment_id, "router")
        await deploy_log.system(heading("switch"))
        upstreams = ", ".join(route_upstreams(instances)) or "no web instance"
        before = f" (was v{previous})" if previous else " (first release)"
        await deploy_log.system(f"{host_of(event.app, self.domain)} now routes to "
                                f"v{event.release}{before}: {upstreams}")
        if in_maintenance:
            await deploy_log.system(f"{event.app} is in maintenance: its host answers 503 until "
                                    f"`dockyard maintenance off {event.app}`")
        await deploy_log.flush()

    async def on_deploy_queued(self, event: DeployQueued, subject: NatsSubject) -> None:
        """A first deploy is queued: its host answers 503 with Retry-After
        until it is switched in."""
        try:
            checked_envelope(event, subject)
        except Unverified as exc:
            _refuse(self.log.bind(app=event.app, deployment_id=event.deployment_id), exc)
        async with self.lock:
            await self._fresh(event.app)
            marker = decide_queued(event, self.records.live.get(event.app),
                                   self.records.pending.get(event.app))
            if marker is None:
                return
            table = with_pending(self._table(event.app), event.app)
            await self._load(table)  # a CaddyError propagates: the message is retried
            await self.routes.set_pending(marker)
            self.records.apply(marker)
            self.log.info("pending", app=event.app, deployment_id=event.deployment_id)

    async def on_deploy_failed(self, event: DeployFailed, subject: NatsSubject) -> None:
        """A first deploy failed: its host answers 404 again."""
        try:
            checked_envelope(event, subject)
        except Unverified as exc:
            _refuse(self.log.bind(app=event.app, deployment_id=event.deployment_id), exc)
        async with self.lock:
            await self._fresh(event.app)
            if not decide_failed(event, self.records.live.get(event.app),
                                 self.records.pending.get(event.app)):
                return
            await self._load(without_pending(self._table(event.app), event.app))
            await self.routes.clear_pending(event.app)
            self.records.apply(RouteGone(app=event.app, kind=PENDING))
            self.log.info("pending cleared", app=event.app, deployment_id=event.deployment_id)

    async def on_destroy_started(self, event: DestroyStarted, subject: NatsSubject) -> None:
        """An app is destroyed: its host answers 404 (one proxy load without it), then its
        route records go, before the scheduler stops its instances; idempotent, so a redelivery
        does it again."""
        try:
            checked_envelope(event, subject)
        except Unverified as exc:
            _refuse(self.log.bind(app=event.app, deployment_id=event.deployment_id), exc)
        async with self.lock:
            await self._fresh(event.app)
            await self._load(without_app(self._table(event.app), event.app))  # a CaddyError
            gone = await self.routes.forget(event.app)  # propagates: the message is retried
            for kind in (LIVE, PENDING):
                self.records.apply(RouteGone(app=event.app, kind=kind))
            self.serving.pop(event.app, None)
            self.measured.forget(event.app)
            upstream_files.remove_app(self.routes_dir, event.app)
        self.log.info("routes removed", app=event.app, deployment_id=event.deployment_id)
        removed = [f"route of {host_of(event.app, self.domain)}"] if gone else []
        # What the builder read from the records travels on to the scheduler.
        await self.emitter.emit(self.emitter.after(event, Fact.of(DestroyUnrouted, DestroyData(
            removed=removed, runtimes=event.data.runtimes))))

    async def follow_state(self) -> None:
        """Follow the recorded routes: another router instance's change is loaded as it comes."""
        await self._follow(self.routes.updates())

    async def follow_maintenance(self) -> None:
        """Follow maintenance, turned on or off by the cli or the api."""
        await self._follow(self.maintenance.updates())

    async def _follow(self, watch: AbstractAsyncContextManager[AsyncIterator[Any]]) -> None:
        me = asyncio.current_task()
        async with watch as updates:
            async for update in updates:
                try:
                    async with self.lock:
                        # Our own writes come back too: known already, nothing to load. An
                        # update is never applied as it is: a watcher that lags (a busy
                        # machine, a bus restart) delivers a value older than one we wrote,
                        # and routing to it would send traffic to stopped instances. The
                        # app's records are read again instead: the bucket's latest.
                        if not self.records.knows(update):
                            await self._fresh(update.app)
                            if (live := self.records.live.get(update.app)) is not None:
                                self._attribute(live)
                            await self._load(self._table(update.app), force=False)
                except (CaddyError, NatsError) as exc:
                    self.log.warning("resync failed", error=str(exc))
                if me is not None and me.cancelling():
                    # nats-py swallows a cancel that lands in its flush: honour it here.
                    raise asyncio.CancelledError

    async def _announce(self, event: HookSucceeded, fact: Fact[Any]) -> Event[Any]:
        return await self.emitter.emit(self.emitter.after(event, fact))

    async def rebuild_until_loaded(self, every: float = 1.0) -> None:
        """Retry the initial rebuild until an external Caddy answers."""
        while True:
            try:
                await self.rebuild()
                return
            except CaddyUnreachable:
                await asyncio.sleep(every)


def _refuse(log: Any, exc: Unverified) -> NoReturn:
    """Dead-letter the message with the reason; nothing was changed."""
    log.warning("event refused", reason=str(exc))
    raise Rejected(str(exc)) from exc

"""Events in → checked against the records → one atomic proxy change → recorded routes and
events out; decisions in routes.py and verify.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
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
from dockyard.router import upstream_files
from dockyard.router.caddy import CaddyAdmin, CaddyError, CaddyUnreachable, admin_listen
from dockyard.router.config import build_config, host_of, join_host_port, slotted
from dockyard.router.errors import EndedDeploy, Unverified
from dockyard.router.routes import (
    Ignore,
    Republish,
    RouteTable,
    decide_failed,
    decide_queued,
    decide_switch,
    previous_release_from_history,
    switch_failed,
    switched,
    table_from_state,
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

if TYPE_CHECKING:
    from dockyard.router.app import RouterDoors

# The NATS subject a message was delivered on (not the one its payload claims).
NatsSubject = Annotated[str, Context("message.raw_message.subject")]


class Router:
    """Keeps one Caddy's routes equal to the KV state, changing it one atomic load at a time."""

    def __init__(self, *, admin: CaddyAdmin, doors: RouterDoors, emitter: Emitter,
                 settings: Settings, log: Any, nc: Client | None = None) -> None:
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
        # One config change at a time inside this instance; other instances re-read KV.
        self.lock = asyncio.Lock()
        self.loaded: dict[str, Any] | None = None

    def config_for(self, table: RouteTable) -> dict[str, Any]:
        """The whole Caddy config of a route table."""
        return build_config(table, domain=self.domain, listen=self.listen,
                            admin_listen=self.admin_listen, routes_dir=str(self.routes_dir))

    async def _load(self, table: RouteTable, *, force: bool = True) -> None:
        """Point every app at its upstreams; reload Caddy only when the config's shape changed."""
        switched = self._write_upstreams(table)
        config = self.config_for(table)
        try:
            if force or config != self.loaded:
                await self.admin.load(config)
            else:
                # Nothing to reload: the files are the switch. Caddy must still answer before
                # the switch is announced, or it is not serving anything.
                await self.admin.config()
        except CaddyError as exc:
            for app, previous in switched:
                upstream_files.restore(self.routes_dir, app, previous)
            if isinstance(exc, CaddyUnreachable):
                # The outcome is unknown: put back the last confirmed config, never a half-switch.
                await self._restore()
            raise
        self.loaded = config
        for app, previous in switched:
            upstream_files.prune(self.routes_dir, app, keep={previous} if previous else set())

    def _write_upstreams(self, table: RouteTable) -> list[tuple[str, str | None]]:
        """Rewrite the upstream files of apps whose addresses changed;
        (app, previous generation)."""
        switched = []
        for app, route in sorted(table.items()):
            if route.pending or not route.upstreams:
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
            live, pending, maintenance = await self._state()
            table = table_from_state(live.values(), pending.values(), maintenance.values())
            self.loaded = await self.admin.config()
            await self._load(table, force=False)
            self.log.info("routes rebuilt", live=sorted(live), pending=sorted(pending),
                          maintenance=sorted(maintenance))
            if ignored := sorted(a for a in {*live, *pending} if not valid_app(a)):
                self.log.warning("route records under invalid app names ignored", apps=ignored)

    async def resync(self) -> None:
        """Reload only if the KV state (changed by any router instance)
        differs from what we loaded."""
        async with self.lock:
            live, pending, maintenance = await self._state()
            await self._load(table_from_state(live.values(), pending.values(),
                                              maintenance.values()), force=False)

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
            ended, (live, pending, maintenance), verdict, placement = await asyncio.gather(
                self.timeouts.timed_out(event.deployment_id), self._state(),
                self.verdicts.outcome(event.deployment_id, POSTDEPLOY_STEP),
                self.placements.get(event.app, event.release))
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
            table = with_live(table_from_state(live.values(), pending.values(),
                                               maintenance.values()), decision.live)
            try:
                await self._load(table, force=False)
            except CaddyError as exc:
                log.error("switch failed", error=str(exc))
                await self._announce(event, switch_failed(str(exc)))
                return
            await self.routes.set_live(decision.live)
            if event.app in pending:
                await self.routes.clear_pending(event.app)
            await self._announce(event, switched(decision.live, decision.previous_release))
            log.info("switched", previous_release=decision.previous_release)
            await self._tell(event, decision.live.instances, decision.previous_release,
                             in_maintenance=event.app in maintenance)

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
            live, pending, maintenance = await self._state()
            placement = await self.placements.get(event.app, event.release)
            current = live.get(event.app)
            try:
                routed = verified_scale(event, subject, current, placement, self.hosts)
            except Unverified as exc:
                _refuse(log, exc)
            if current is None or current.instances != routed.instances:
                table = with_live(table_from_state(live.values(), pending.values(),
                                                   maintenance.values()), routed)
                await self._load(table, force=False)  # a CaddyError: retried
                await self.routes.set_live(routed)
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
            live, pending, maintenance = await self._state()
            marker = decide_queued(event, live.get(event.app), pending.get(event.app))
            if marker is None:
                return
            table = with_pending(table_from_state(live.values(), pending.values(),
                                                  maintenance.values()), event.app)
            await self._load(table)  # a CaddyError propagates: the message is retried
            await self.routes.set_pending(marker)
            self.log.info("pending", app=event.app, deployment_id=event.deployment_id)

    async def on_deploy_failed(self, event: DeployFailed, subject: NatsSubject) -> None:
        """A first deploy failed: its host answers 404 again."""
        try:
            checked_envelope(event, subject)
        except Unverified as exc:
            _refuse(self.log.bind(app=event.app, deployment_id=event.deployment_id), exc)
        async with self.lock:
            live, pending, maintenance = await self._state()
            if not decide_failed(event, live.get(event.app), pending.get(event.app)):
                return
            table = without_pending(table_from_state(live.values(), pending.values(),
                                                     maintenance.values()), event.app)
            await self._load(table)
            await self.routes.clear_pending(event.app)
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
            live, pending, maintenance = await self._state()
            table = without_app(table_from_state(live.values(), pending.values(),
                                                 maintenance.values()), event.app)
            await self._load(table)  # a CaddyError propagates: the message is retried
            gone = await self.routes.forget(event.app)
            upstream_files.remove_app(self.routes_dir, event.app)
        self.log.info("routes removed", app=event.app, deployment_id=event.deployment_id)
        removed = [f"route of {host_of(event.app, self.domain)}"] if gone else []
        # What the builder read from the records travels on to the scheduler.
        await self.emitter.emit(self.emitter.after(event, Fact.of(DestroyUnrouted, DestroyData(
            removed=removed, runtimes=event.data.runtimes))))

    async def follow_state(self) -> None:
        """Reload whenever another router instance changed the recorded routes."""
        await self._follow(self.routes.changes())

    async def follow_maintenance(self) -> None:
        """Reload whenever an app's maintenance was turned on or off (by the cli or the api)."""
        await self._follow(self.maintenance.changes())

    async def _follow(self, watch: AbstractAsyncContextManager[AsyncIterator[None]]) -> None:
        me = asyncio.current_task()
        async with watch as changes:
            async for _ in changes:
                try:
                    await self.resync()
                except (CaddyError, NatsError) as exc:
                    self.log.warning("resync failed", error=str(exc))
                if me is not None and me.cancelling():
                    # nats-py swallows a cancel that lands in its flush: honour it here.
                    raise asyncio.CancelledError

    async def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        return await asyncio.gather(self.routes.all_live(), self.routes.all_pending(),
                                    self.maintenance.all_on())

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

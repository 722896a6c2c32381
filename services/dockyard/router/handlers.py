"""Events in → checked against the records → one atomic proxy change → recorded routes and
events out; decisions in routes.py and verify.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
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
    AfterSwitchSucceeded,
    DeployFailed,
    DeployQueued,
    DestroyData,
    DestroyStarted,
    DestroyUnrouted,
    Event,
    Fact,
    FailureData,
    HookSucceeded,
    InstanceRef,
    ReleaseFigures,
    RolloutAborted,
    RolloutData,
    RolloutPromoted,
    RolloutRolledBack,
    RolloutStep,
    RolloutWatched,
    ScalePlaced,
    TrafficScaled,
    WatchData,
)
from dockyard.contract.plan import Rollout, watches
from dockyard.contract.state import LiveRelease, RolloutAction, RolloutProgress
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
from dockyard.router.figures import KEPT_RELEASES, Figures, Measurements, Sample
from dockyard.router.rollout import (
    Canary,
    aborts,
    judge,
    ordered_verdict,
    release_figures,
)
from dockyard.router.routes import (
    AppRoute,
    Ignore,
    Records,
    Republish,
    RouteTable,
    Switch,
    canary_of,
    decide_failed,
    decide_queued,
    decide_switch,
    previous_release_from_history,
    switch_failed,
    switched,
    valid_app,
    with_canary,
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

# A watch window judges the new release every WATCH_EVERY seconds on its last WATCH_SPAN.
WATCH_EVERY = 0.5
WATCH_SPAN = 10.0
# How often a rollout's wait looks for an operator's order.
ORDER_EVERY = 0.5

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
        self.rollouts = doors.rollouts
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
        self.canaries: dict[str, Canary] = {}  # app -> its canary in progress
        # app -> the release a switch replaced, and its figures then (a watch window's
        # comparison and where it switches back to)
        self.replaced: dict[str, tuple[LiveRelease, Figures]] = {}
        self.watching: dict[str, str] = {}  # app -> the deployment whose window runs
        self.running: set[asyncio.Task[None]] = set()

    def _checked(self, event: Event[Any], subject: str, id_name: str = "deployment_id") -> Any:
        """The event's log, once its envelope is checked (before its names are used as keys);
        a bad one is dead-lettered with the reason."""
        log = self.log.bind(app=event.app, release=event.release,
                            **{id_name: event.deployment_id})
        try:
            checked_envelope(event, subject)
        except Unverified as exc:
            _refuse(log, exc)
        return log

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
            wanted = slotted(route)
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
            return {name: with_canary(route, self.canaries.get(name))
                    for name, route in self.records.table().items()}
        table = dict(self.table)
        route = self.records.route(app)
        if route is not None:
            route = with_canary(route, self.canaries.get(app))
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
        recorded instances, then announce it; or, for a release with a [rollout], begin its
        canary (the switch comes once every step passed)."""
        log = self._checked(event, subject)
        async with self.lock:
            # Independent reads, asked at once: each is a round trip on the switch's path.
            ended, _, verdict, placement = await asyncio.gather(
                self.timeouts.timed_out(event.deployment_id), self._fresh(event.app),
                self.verdicts.outcome(event.deployment_id, POSTDEPLOY_STEP),
                self.placements.get(event.app, event.release))
            live = self.records.live
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
            canary = self.canaries.get(event.app)
            if canary is not None:
                log.info("canary already running", canary_of=canary.deployment_id)
                return  # a redelivery: the running canary ends this deploy
            rollout = canary_of(decision, live.get(event.app), self._table(event.app))
            if rollout is None:
                await self._switch(event, decision, log)
                return
            self._attribute(decision.live)
            self.canaries[event.app] = Canary(
                deployment_id=event.deployment_id, release=event.release,
                upstreams=route_upstreams(decision.live.instances))
            try:  # clients get their slot's cookie first (a reload if the app had none)
                await self._load(self._table(event.app), force=False)
            except CaddyError as exc:
                del self.canaries[event.app]
                log.error("canary could not start", error=str(exc))
                await self._announce(event, switch_failed(str(exc), event.data.spec))
                return
            task = asyncio.create_task(self._canary(event, decision, rollout, log))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def _switch(self, event: HookSucceeded, decision: Switch, log: Any) -> None:
        """Route every request to the new release (under the lock), record it, announce it."""
        log.info("switching", previous_release=decision.previous_release)
        previous = self.records.live.get(event.app)
        self._attribute(decision.live)
        table = with_live(self._table(event.app), decision.live)
        try:
            await self._load(table, force=False)
        except CaddyError as exc:
            log.error("switch failed", error=str(exc))
            await self._announce(event, switch_failed(str(exc), event.data.spec))
            return
        await self.routes.set_live(decision.live)
        self.records.apply(decision.live)
        spec = decision.live.spec
        if previous is not None and previous.release != decision.live.release \
                and watches(spec.plan, spec.kind):
            # Its watch window's baseline: sorting the old release's samples is done only for
            # a release that has a window, never on every switch.
            figures = self.measured.figures(event.app, previous.release, time.monotonic())
            self.replaced[event.app] = (previous, figures)
        else:
            self.replaced.pop(event.app, None)
        if event.app in self.records.pending:
            await self.routes.clear_pending(event.app)
            self.records.apply(RouteGone(app=event.app, kind=PENDING))
        await self._announce(event, switched(decision.live, decision.previous_release))
        log.info("switched", previous_release=decision.previous_release)
        await self._tell(event, decision.live.instances, decision.previous_release,
                         in_maintenance=event.app in self.records.maintenance)

    async def _canary(self, event: HookSucceeded, decision: Switch, rollout: Rollout,
                      log: Any) -> None:
        """Give the new release each step's share of requests in turn, judge each step on what
        both releases answered over it, then switch every request (or send every request back
        and fail the deploy `canary-error`). Never raises: a canary that cannot go on aborts."""
        app, steps = event.app, len(rollout.steps)
        judged: RolloutData | None = None
        try:
            for number, percent in enumerate(rollout.steps, 1):
                async with self.lock:
                    if (stop := await self._canary_stopped(event)) is not None:
                        await self._load(self._table(app), force=False)
                        log.info("canary stopped", reason=stop)
                        return
                    self.canaries[app] = msgspec.structs.replace(self.canaries[app],
                                                                 percent=percent)
                    await self._load(self._table(app), force=False)
                started = RolloutData(step=number, steps=steps, percent=percent)
                await self._announce(event, Fact.of(RolloutStep, started, number, "started"))
                await self._say(event, f"canary step {number}/{steps}: v{event.release} takes "
                                       f"{percent}% of requests for {rollout.hold:g}s")
                log.info("canary step", step=number, percent=percent)
                begun = time.monotonic()
                progress = RolloutProgress(
                    app=app, deployment_id=event.deployment_id, release=event.release,
                    previous_release=decision.previous_release or 0, stage="canary",
                    step=number, steps=steps, percent=percent,
                    until=datetime.now(UTC) + timedelta(seconds=rollout.hold),
                    new=None if judged is None else judged.new,
                    old=None if judged is None else judged.old)
                ordered = await self._hold(progress, rollout.hold)
                if self.canaries.get(app) is None:
                    log.info("canary stopped", reason="its deploy ended")
                    return  # on_deploy_failed sent every request back already
                now = time.monotonic()
                new = self.measured.figures(app, event.release, now, window=now - begun)
                old = self.measured.figures(app, decision.previous_release or 0, now,
                                            window=now - begun)
                verdict, reason = judge(new, old, rollout, measured=self.access_log is not None)
                if ordered is not None:
                    verdict, reason = ordered_verdict(ordered, reason)
                judged = RolloutData(step=number, steps=steps, percent=percent, verdict=verdict,
                                     reason=reason, new=release_figures(new),
                                     old=release_figures(old))
                await self._say(event, f"canary step {number}/{steps}: {verdict}: {reason}")
                if aborts(verdict, rollout):
                    await self._abort_canary(event, judged, log)
                    return
                await self._announce(event, Fact.of(RolloutStep, judged, number, "judged"))
                if ordered == "promote":
                    break  # the operator's order: every request now
            promoted = judged or RolloutData(step=steps, steps=steps, percent=100)
            await self._announce(event, Fact.of(RolloutPromoted, msgspec.structs.replace(
                promoted, step=steps + 1, percent=100)))
            async with self.lock:
                if (stop := await self._canary_stopped(event)) is not None:
                    await self._load(self._table(app), force=False)
                    log.info("canary stopped", reason=stop)
                    return
                del self.canaries[app]
                await self._switch(event, decision, log)
            await self.rollouts.done(app)
        except asyncio.CancelledError:
            raise  # the router stops: a restarted one serves the old release (records)
        except Exception as exc:  # noqa: BLE001 (a canary that cannot go on must still end)
            log.exception("canary failed")
            failed = judged or RolloutData(step=0, steps=steps, percent=0)
            await self._abort_canary(event, msgspec.structs.replace(
                failed, verdict="failed", reason=f"the canary could not go on: {exc}"), log)

    async def _canary_stopped(self, event: HookSucceeded) -> str | None:
        """Why an app's canary must not go on (its deploy ended: the watchdog's timeout), or
        None; a stopped canary is forgotten (the caller loads the table without it)."""
        if self.canaries.get(event.app, None) is None:
            return "its deploy ended"
        ended = await self.timeouts.timed_out(event.deployment_id)
        if ended is not None:
            self.canaries.pop(event.app, None)
            return f"the deploy ended as timeout: {ended.reason}"
        return None

    async def _hold(self, progress: RolloutProgress, seconds: float) -> RolloutAction | None:
        """Wait out a step (or a stretch of the window), saying where the rollout is; an
        operator's order for this deployment ends the wait early and is returned."""
        await self.rollouts.show(progress)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(ORDER_EVERY, left))
            order = await self.rollouts.order(progress.app)
            if order is not None and order.deployment_id == progress.deployment_id:
                return order.action
        return None

    async def _abort_canary(self, event: HookSucceeded, judged: RolloutData, log: Any) -> None:
        """Every request back to the old release, then the deploy fails `canary-error` (the
        scheduler removes the new instances, on-failure runs)."""
        async with self.lock:
            self.canaries.pop(event.app, None)
            await self._load(self._table(event.app), force=False)
        await self.rollouts.done(event.app)
        log.warning("canary aborted", step=judged.step, reason=judged.reason)
        await self._announce(event, Fact.of(RolloutAborted, judged))
        await self._say(event, f"canary aborted at step {judged.step}: every request is back "
                               f"on the old release")
        await self._announce(event, switch_failed(
            f"canary step {judged.step}/{judged.steps} ({judged.percent}%) failed: "
            f"{judged.reason}", event.data.spec, "canary-error"))

    async def _say(self, event: Event[Any], line: str) -> None:
        """One line in the deploy log."""
        if self.nc is None:
            return
        deploy_log = DeployLog(self.nc, event.app, event.deployment_id, "router")
        await deploy_log.system(line)
        await deploy_log.flush()

    async def stop(self) -> None:
        """Stop the canaries (a restarted router serves what the records say: the old
        releases; their deploys end at the watchdog's deadline)."""
        for task in list(self.running):
            task.cancel()
        if self.running:
            await asyncio.wait(self.running, timeout=5)

    async def on_after_switch_succeeded(self, event: AfterSwitchSucceeded,
                                        subject: NatsSubject) -> None:
        """A release with a watch window took every request and its after-switch passed: watch
        it for the window, the old release still warm; switch back if it crosses the
        thresholds (rollout.rolled_back), or say it passed (rollout.watched).

        The event only starts the window: its length and thresholds are the live record's (the
        router's own, from a verified switch), and the only release it can switch back to is
        the one the router itself switched away from, never one an event names."""
        if not watches(event.data.spec.plan, event.data.spec.kind):
            return  # the scheduler ends the deploy itself
        log = self._checked(event, subject)
        async with self.lock:
            if self.watching.get(event.app) == event.deployment_id:
                return  # a redelivery: its window runs
            ended, _ = await asyncio.gather(self.timeouts.timed_out(event.deployment_id),
                                            self._fresh(event.app))
            live = self.records.live.get(event.app)
            if ended is not None or live is None or live.deployment_id != event.deployment_id:
                log.info("not watched", reason="the deploy ended, or its release is not live")
                return
            window = watches(live.spec.plan, live.spec.kind)
            rollout = live.spec.plan.rollout
            if not window or rollout is None:
                # The scheduler waits for the window's end: say there is none to watch.
                await self._watched(event, 0, "its live record has no watch window", None, None)
                return
            replaced = self.replaced.get(event.app)
            if replaced is None or replaced[0].release >= event.release \
                    or not route_upstreams(replaced[0].instances):
                # Nothing warm to go back to (a first deploy, a router restarted since the
                # switch): the window cannot switch back, so it passes at once.
                await self._watched(event, window, "nothing to switch back to", None, None)
                return
            self.watching[event.app] = event.deployment_id
        task = asyncio.create_task(self._watch(event, window, rollout, *replaced, log))
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    async def _watch(self, event: AfterSwitchSucceeded, window: float, rollout: Rollout,
                     old: LiveRelease, before: Figures, log: Any) -> None:
        """Judge the new release every WATCH_EVERY seconds on its last WATCH_SPAN seconds
        against the old one's figures before the switch, until the window ends. Never raises."""
        app = event.app
        begun = time.monotonic()
        await self._say(event, f"watching v{event.release} for {window:g}s; v{old.release} "
                               f"stays warm to switch back to")
        until = datetime.now(UTC) + timedelta(seconds=window)
        new: Figures | None = None
        reason = "the watch window passed"
        try:
            while (now := time.monotonic()) < begun + window:
                ordered = await self._hold(RolloutProgress(
                    app=app, deployment_id=event.deployment_id, release=event.release,
                    previous_release=old.release, stage="watch", until=until,
                    new=None if new is None else release_figures(new),
                    old=release_figures(before)),
                    min(WATCH_EVERY, begun + window - now))
                if self.watching.get(app) != event.deployment_id:
                    return  # the deploy ended (the watchdog)
                now = time.monotonic()
                new = self.measured.figures(app, event.release, now,
                                            window=min(WATCH_SPAN, now - begun))
                verdict, judged = judge(new, before, rollout,
                                        measured=self.access_log is not None)
                if ordered == "promote":
                    reason = f"the watch window was ended by an operator's order: {judged}"
                    break
                if ordered == "abort" or verdict == "failed":
                    why = "an operator's order" if ordered == "abort" else judged
                    await self._switch_back(event, old, f"{now - begun:.0f}s into the "
                                                        f"{window:g}s watch window: {why}",
                                            log)
                    return
            new = self.measured.figures(app, event.release, time.monotonic(), window=window)
            await self._watched(event, window, reason, release_figures(new),
                                release_figures(before))
        except asyncio.CancelledError:
            raise  # the router stops: the deploy ends at the watchdog's deadline
        except Exception:
            log.exception("watch failed")
            await self._watched(event, window, "the watch could not go on (see the router's "
                                               "log): the release stays", None, None)
        finally:
            if self.watching.get(app) == event.deployment_id:
                del self.watching[app]
                await self.rollouts.done(app)

    async def _watched(self, event: AfterSwitchSucceeded, window: float, reason: str,
                       new: ReleaseFigures | None, old: ReleaseFigures | None) -> None:
        await self._say(event, f"watch window: {reason}")
        await self._announce(event, Fact.of(RolloutWatched, WatchData(
            spec=event.data.spec, watch=window, reason=reason, new=new, old=old)))

    async def _switch_back(self, event: AfterSwitchSucceeded, old: LiveRelease, reason: str,
                           log: Any) -> None:
        """Every request back to the still-warm old release (no build, no hook), recorded,
        then the deploy ends `rolled-back`."""
        async with self.lock:
            await self._fresh(event.app)
            live = self.records.live.get(event.app)
            if live is None or live.deployment_id != event.deployment_id:
                return
            self._attribute(old)
            await self._load(with_live(self._table(event.app), old), force=False)
            await self.routes.set_live(old)
            self.records.apply(old)
            self.replaced.pop(event.app, None)
        log.warning("switched back", to_release=old.release, reason=reason)
        await self._say(event, f"switched back to v{old.release}: {reason}")
        await self._announce(event, Fact.of(RolloutRolledBack, FailureData(
            status="rolled-back", reason=f"switched back to v{old.release}, {reason}",
            spec=event.data.spec)))

    async def on_scale_placed(self, event: ScalePlaced, subject: NatsSubject) -> None:
        """A scale or restart placed the live release's instances: once the scheduler's record
        vouches for them, route the app's host to exactly its web instances, then announce it."""
        log = self._checked(event, subject, id_name="operation_id")
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
        self._checked(event, subject)
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
        self._checked(event, subject)
        async with self.lock:
            if self.watching.get(event.app) == event.deployment_id:
                del self.watching[event.app]  # the release stays: the scheduler retires the old
            canary = self.canaries.get(event.app)
            if canary is not None and canary.deployment_id == event.deployment_id:
                # Ended (the watchdog's timeout) while its canary ran: every request goes back
                # to the old release before the scheduler stops the new one.
                del self.canaries[event.app]
                await self._load(self._table(event.app), force=False)
                self.log.info("canary stopped", app=event.app,
                              deployment_id=event.deployment_id, reason=event.data.reason)
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
        self._checked(event, subject)
        async with self.lock:
            await self._fresh(event.app)
            await self._load(without_app(self._table(event.app), event.app))  # a CaddyError
            gone = await self.routes.forget(event.app)  # propagates: the message is retried
            for kind in (LIVE, PENDING):
                self.records.apply(RouteGone(app=event.app, kind=kind))
            self.serving.pop(event.app, None)
            self.replaced.pop(event.app, None)
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

    async def _announce(self, event: Event[Any], fact: Fact[Any]) -> Event[Any]:
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

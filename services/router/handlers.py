"""Events in → one whole-config Caddy load → KV state and events out; decisions live in routes.py."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import msgspec
from faststream.nats import NatsBroker
from nats.errors import Error as NatsError
from nats.js.errors import KeyDeletedError, KeyNotFoundError, NoKeysError
from nats.aio.client import Client
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from dockyard.bus.broker import publish
from dockyard.bus.logs import DeployLog, heading
from dockyard.router.caddy import CaddyAdmin, CaddyError, CaddyUnreachable, admin_listen
from dockyard.router import upstream_files
from dockyard.router.config import build_config, host_of, join_host_port
from dockyard.router.routes import upstreams as route_upstreams
from dockyard.router.routes import (
    Ignore,
    Republish,
    RouteTable,
    decide_failed,
    decide_queued,
    decide_switch,
    previous_release_from_history,
    switch_failed_event,
    switched_event,
    table_from_state,
    with_live,
    with_pending,
    without_pending,
)
from dockyard.schemas import codec
from dockyard.schemas.events import DeployFailed, DeployQueued, HookSucceeded
from dockyard.schemas.state import LiveRelease, Pending, live_key, pending_key
from dockyard.settings import Settings

R = TypeVar("R", LiveRelease, Pending)


async def _records(kv: KeyValue, pattern: str, type_: type[R], log: Any) -> dict[str, R]:
    """The current value of every key matching pattern, by app (deleted keys left out)."""
    # The server lists the stream's subjects itself: a KV watcher's "no more values" marker can
    # come before values already in flight (nats-py 2.16), which would drop a live app's route.
    prefix: str = kv._pre  # "$KV.<bucket>.", the KV subject convention (ADR-8)
    info = await kv._js.stream_info(kv._stream, subjects_filter=f"{prefix}{pattern}")
    found: dict[str, R] = {}
    for subject in sorted(info.state.subjects or {}):
        key = subject.removeprefix(prefix)
        try:
            entry = await kv.get(key)
        except (KeyNotFoundError, KeyDeletedError):
            continue
        if not entry.value:
            continue
        try:
            record = codec.decode_as(entry.value, type_)
        except msgspec.DecodeError as exc:
            log.error("unreadable state record", key=key, error=str(exc))
            continue
        found[record.app] = record
    return found


async def read_state(kv: KeyValue, log: Any) -> tuple[dict[str, LiveRelease], dict[str, Pending]]:
    """Every live release and pending marker, read fresh from the KV state bucket."""
    live = await _records(kv, live_key("*"), LiveRelease, log)
    pending = await _records(kv, pending_key("*"), Pending, log)
    return live, pending


async def live_history(kv: KeyValue, app: str) -> list[LiveRelease]:
    """Every kept version of an app's live record, oldest first."""
    try:
        entries = await kv.history(live_key(app))
    except NoKeysError:
        return []
    return [codec.decode_as(e.value, LiveRelease) for e in entries
            if e.value and e.operation not in (KV_DEL, KV_PURGE)]


class Router:
    """Keeps one Caddy's routes equal to the KV state, changing it one atomic load at a time."""

    def __init__(self, *, admin: CaddyAdmin, state: KeyValue, broker: NatsBroker,
                 settings: Settings, log: Any, nc: Client | None = None) -> None:
        self.nc = nc  # for the deploy log; None in tests that drive the router alone
        self.routes_dir = (settings.data_dir / "caddy-routes").absolute()
        self.admin = admin
        self.state = state
        self.broker = broker
        self.domain = settings.domain
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
        """Rewrite the upstream files of apps whose addresses changed; (app, previous generation)."""
        switched = []
        for app, route in sorted(table.items()):
            wanted = list(route.upstreams)
            if route.pending or not wanted:
                continue
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
        """Load the whole config the KV state describes (at start)."""
        async with self.lock:
            live, pending = await read_state(self.state, self.log)
            await self._load(table_from_state(live.values(), pending.values()))
            self.log.info("routes rebuilt", live=sorted(live), pending=sorted(pending))

    async def resync(self) -> None:
        """Reload only if the KV state (changed by any router instance) differs from what we loaded."""
        async with self.lock:
            live, pending = await read_state(self.state, self.log)
            await self._load(table_from_state(live.values(), pending.values()), force=False)

    async def on_hook_succeeded(self, event: HookSucceeded) -> None:
        """The gate opened: switch the app's host to the new instances, then announce it."""
        log = self.log.bind(app=event.app, deployment_id=event.deployment_id, release=event.release)
        async with self.lock:
            live, pending = await read_state(self.state, self.log)
            decision = decide_switch(event, live.get(event.app))
            if isinstance(decision, Ignore):
                log.warning("switch ignored", reason=decision.reason)
                return
            if isinstance(decision, Republish):
                history = await live_history(self.state, event.app)
                previous = previous_release_from_history(history, event.deployment_id)
                await publish(self.broker, switched_event(decision.live, previous))
                log.info("switch already made, announced again")
                return
            log.info("switching", previous_release=decision.previous_release)
            table = with_live(table_from_state(live.values(), pending.values()), decision.live)
            try:
                await self._load(table, force=False)
            except CaddyError as exc:
                log.error("switch failed", error=str(exc))
                await publish(self.broker, switch_failed_event(event, str(exc)))
                return
            await self.state.put(live_key(event.app), codec.encode(decision.live))
            if event.app in pending:
                await self.state.delete(pending_key(event.app))
            await publish(self.broker, switched_event(decision.live, decision.previous_release))
            log.info("switched", previous_release=decision.previous_release)
            await self._tell(event, decision.previous_release)

    async def _tell(self, event: HookSucceeded, previous: int | None) -> None:
        """Say in the deploy log where the app's traffic goes now."""
        if self.nc is None:
            return
        deploy_log = DeployLog(self.nc, event.app, event.deployment_id, "router")
        await deploy_log.system(heading("switch"))
        upstreams = ", ".join(route_upstreams(event.instances)) or "no web instance"
        before = f" (was v{previous})" if previous else " (first release)"
        await deploy_log.system(f"{host_of(event.app, self.domain)} now routes to "
                                f"v{event.release}{before}: {upstreams}")
        await deploy_log.flush()

    async def on_deploy_queued(self, event: DeployQueued) -> None:
        """A first deploy is queued: its host answers 503 with Retry-After until it is switched in."""
        async with self.lock:
            live, pending = await read_state(self.state, self.log)
            marker = decide_queued(event, live.get(event.app), pending.get(event.app))
            if marker is None:
                return
            table = with_pending(table_from_state(live.values(), pending.values()), event.app)
            await self._load(table)  # a CaddyError propagates: the message is retried
            await self.state.put(pending_key(event.app), codec.encode(marker))
            self.log.info("pending", app=event.app, deployment_id=event.deployment_id)

    async def on_deploy_failed(self, event: DeployFailed) -> None:
        """A first deploy failed: its host answers 404 again."""
        async with self.lock:
            live, pending = await read_state(self.state, self.log)
            if not decide_failed(event, live.get(event.app), pending.get(event.app)):
                return
            table = without_pending(table_from_state(live.values(), pending.values()), event.app)
            await self._load(table)
            await self.state.delete(pending_key(event.app))
            self.log.info("pending cleared", app=event.app, deployment_id=event.deployment_id)

    async def follow_state(self) -> None:
        """Reload whenever another router instance changed the live or pending records."""
        watchers = [await self.state.watch(live_key("*")), await self.state.watch(pending_key("*"))]

        async def pump(watcher: KeyValue.KeyWatcher) -> None:
            async for entry in watcher:
                if entry is None:
                    continue
                try:
                    await self.resync()
                except (CaddyError, NatsError) as exc:
                    self.log.warning("resync failed", error=str(exc))

        try:
            await asyncio.gather(*(pump(w) for w in watchers))
        finally:
            for watcher in watchers:
                try:
                    await watcher.stop()  # type: ignore[no-untyped-call]
                except NatsError:
                    pass

    async def rebuild_until_loaded(self, every: float = 1.0) -> None:
        """Retry the initial rebuild until an external Caddy answers."""
        while True:
            try:
                await self.rebuild()
                return
            except CaddyUnreachable:
                await asyncio.sleep(every)

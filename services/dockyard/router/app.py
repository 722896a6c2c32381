"""The router's doors: `hook.succeeded` (the only switch trigger, checked against the hook-runner's
and the scheduler's records) and first-deploy events in."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from dockyard.bus import metrics
from dockyard.bus.service import On, Service, ServiceContext
from dockyard.contract.events import (
    AfterSwitchSucceeded,
    DeployFailed,
    DeployQueued,
    DestroyStarted,
    DestroyUnrouted,
    HookSucceeded,
    RolloutAborted,
    RolloutPromoted,
    RolloutRolledBack,
    RolloutStep,
    RolloutWatched,
    ScalePlaced,
    TrafficFailed,
    TrafficScaled,
    TrafficSwitched,
)
from dockyard.router import access_log
from dockyard.router.access_log import AccessLogServer
from dockyard.router.caddy import (
    MAX_SOCKET_PATH,
    CaddyAdmin,
    CaddyProcess,
    CaddyUnreachable,
    ensure_caddy,
    socket_path,
)
from dockyard.router.handlers import Router
from dockyard.router.metrics import ReleaseFigures
from dockyard.state.inflight import TimeoutReader
from dockyard.state.maintenance import MaintenanceReader
from dockyard.state.placements import PlacementReader
from dockyard.state.rollouts import RolloutBoard
from dockyard.state.routes import RouteWriter
from dockyard.state.steps import Verdicts


@dataclass(frozen=True)
class RouterDoors:
    """The state the router uses: its routes, the records a switch is checked against, and which
    apps are in maintenance."""

    routes: RouteWriter
    verdicts: Verdicts
    placements: PlacementReader
    maintenance: MaintenanceReader
    timeouts: TimeoutReader
    rollouts: RolloutBoard


async def make(ctx: ServiceContext, doors: RouterDoors) -> Router:
    """Start Caddy (or adopt the one a dead router left, or drive the operator's), load the
    routes the recorded state describes."""
    settings = ctx.settings
    process: CaddyProcess | None = None
    if settings.caddy_admin:
        admin = CaddyAdmin(settings.caddy_admin)
    else:
        process = await ensure_caddy(settings.data_dir,
                                     http=(settings.http_host, settings.http_port))
        ctx.on_stop(process.stop)
        admin = process.admin
        if process.adopted:
            ctx.log.info("caddy adopted", pid=process.pid, admin=admin.url)
    # Caddy's access log comes to the router that runs it: each release's figures, exported as
    # Prometheus metrics. A second router driving that Caddy names the same socket in the
    # configs it loads (the same data dir), so its loads keep the log going to the first.
    access = access_socket(admin) if settings.access_log else None
    if access is not None and process is None and not access.exists():
        access = None  # an operator's Caddy: nothing of ours listens beside its socket
    router = Router(admin=admin, doors=doors, emitter=ctx.emitter, settings=settings,
                    log=ctx.log, nc=ctx.nc, access_log=access)
    ctx.on_stop(router.stop)
    if access is not None and process is not None:
        server = await AccessLogServer(access, router.measure).start()
        ctx.on_stop(server.stop)
        collector = ReleaseFigures(router.measured)
        metrics.REGISTRY.register(collector)
        ctx.on_stop(partial(_unregister, collector))
    try:
        await router.rebuild()
    except CaddyUnreachable as exc:
        if process is not None:
            raise
        # An operator's Caddy may come up after us: keep trying instead of refusing to start.
        ctx.log.warning("caddy unreachable, will retry", admin=admin.url, error=str(exc))
        ctx.spawn(router.rebuild_until_loaded())
    ctx.spawn(router.follow_state())
    ctx.spawn(router.follow_maintenance())
    return router


def access_socket(admin: CaddyAdmin) -> Path | None:
    """Where Caddy's access log goes: beside its admin socket; None for an admin over HTTP
    (a Caddy elsewhere cannot reach a socket here)."""
    sock = socket_path(admin.url)
    if sock is None:
        return None
    path = access_log.socket_path(Path(sock).parent)
    # One byte longer than the admin socket's name: a data dir at the limit goes unmeasured.
    return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH else None


async def _unregister(collector: ReleaseFigures) -> None:
    metrics.REGISTRY.unregister(collector)


SERVICE = Service(
    name="router",
    doors=RouterDoors,
    subscribes=(
        On(HookSucceeded, "on_hook_succeeded"),
        On(AfterSwitchSucceeded, "on_after_switch_succeeded"),
        On(DeployQueued, "on_deploy_queued"),
        On(DeployFailed, "on_deploy_failed"),
        On(ScalePlaced, "on_scale_placed"),
        On(DestroyStarted, "on_destroy_started"),
    ),
    publishes=(TrafficSwitched, TrafficFailed, TrafficScaled, DestroyUnrouted, RolloutStep,
               RolloutPromoted, RolloutAborted, RolloutWatched, RolloutRolledBack),
    make=make,
    logs=True,
)

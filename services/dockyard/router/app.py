"""The router's doors: `hook.succeeded` (the only switch trigger, checked against the hook-runner's
and the scheduler's records) and first-deploy events in."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.bus.service import On, Service, ServiceContext
from dockyard.contract.events import (
    DeployFailed,
    DeployQueued,
    DestroyStarted,
    DestroyUnrouted,
    HookSucceeded,
    ScalePlaced,
    TrafficFailed,
    TrafficScaled,
    TrafficSwitched,
)
from dockyard.router.caddy import CaddyAdmin, CaddyProcess, CaddyUnreachable, ensure_caddy
from dockyard.router.handlers import Router
from dockyard.state.inflight import TimeoutReader
from dockyard.state.maintenance import MaintenanceReader
from dockyard.state.placements import PlacementReader
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
    router = Router(admin=admin, doors=doors, emitter=ctx.emitter, settings=settings,
                    log=ctx.log, nc=ctx.nc)
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


SERVICE = Service(
    name="router",
    doors=RouterDoors,
    subscribes=(
        On(HookSucceeded, "on_hook_succeeded"),
        On(DeployQueued, "on_deploy_queued"),
        On(DeployFailed, "on_deploy_failed"),
        On(ScalePlaced, "on_scale_placed"),
        On(DestroyStarted, "on_destroy_started"),
    ),
    publishes=(TrafficSwitched, TrafficFailed, TrafficScaled, DestroyUnrouted),
    make=make,
    logs=True,
)

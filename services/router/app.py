"""Wiring of the router service: Caddy, the initial rebuild from KV, and its three subscriptions."""

from __future__ import annotations

from dockyard.bus.broker import durable_subscriber
from dockyard.bus.service import ServiceContext
from dockyard.router.caddy import CaddyAdmin, CaddyProcess, CaddyUnreachable, start_caddy
from dockyard.router.handlers import Router
from dockyard.schemas import subjects
from dockyard.schemas.events import DeployFailed, DeployQueued, HookSucceeded


async def setup(ctx: ServiceContext) -> None:
    """Start (or attach to) Caddy, load the routes the KV state describes, subscribe."""
    settings = ctx.settings
    process: CaddyProcess | None = None
    if settings.caddy_admin:
        admin = CaddyAdmin(settings.caddy_admin)
    else:
        process = await start_caddy(settings.data_dir)
        ctx.on_stop(process.stop)
        admin = process.admin
    router = Router(admin=admin, state=ctx.stores.state, broker=ctx.broker, settings=settings,
                    log=ctx.log, nc=ctx.stores.nc)
    try:
        await router.rebuild()
    except CaddyUnreachable as exc:
        if process is not None:
            await process.stop()
            raise
        # An operator's Caddy may come up after us: keep trying instead of refusing to start.
        ctx.log.warning("caddy unreachable, will retry", admin=admin.url, error=str(exc))
        ctx.spawn(router.rebuild_until_loaded())
    except BaseException:
        if process is not None:
            await process.stop()
        raise
    ctx.spawn(router.follow_state())

    @durable_subscriber(  # type: ignore[untyped-decorator]
        ctx.broker, subjects.events_of("hook", "succeeded"), "router-switch",
        subjects.STREAM_EVENTS)
    async def hook_succeeded(event: HookSucceeded) -> None:
        await router.on_hook_succeeded(event)

    @durable_subscriber(  # type: ignore[untyped-decorator]
        ctx.broker, subjects.events_of("deploy", "queued"), "router-queued",
        subjects.STREAM_EVENTS)
    async def deploy_queued(event: DeployQueued) -> None:
        await router.on_deploy_queued(event)

    @durable_subscriber(  # type: ignore[untyped-decorator]
        ctx.broker, subjects.events_of("deploy", "failed"), "router-failed",
        subjects.STREAM_EVENTS)
    async def deploy_failed(event: DeployFailed) -> None:
        await router.on_deploy_failed(event)

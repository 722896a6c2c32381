"""The router's handlers against a real Caddy and the session's real nats-server."""

from __future__ import annotations

import asyncio
import tempfile
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import structlog
from faststream.nats import NatsBroker

from dockyard.bus.broker import make_broker
from dockyard.bus.embedded import EmbeddedNats, free_port
from dockyard.bus.topology import Stores
from dockyard.router.caddy import CaddyAdmin, CaddyProcess, start_caddy
from dockyard.router.handlers import Router, read_state
from dockyard.schemas import codec, subjects
from dockyard.schemas.events import DeployFailed, TrafficFailed, TrafficSwitched, event_id
from dockyard.schemas.state import LiveRelease, live_key, pending_key
from dockyard.settings import Settings

from .conftest import (
    Upstream,
    app_name,
    deploy_queued,
    get,
    hook_succeeded,
    stream_events,
    wait_for,
)

Factory = Callable[[str], Awaitable[Upstream]]


@pytest.fixture
async def broker(nats_server: EmbeddedNats) -> AsyncIterator[NatsBroker]:
    """A connected broker to publish with."""
    b = make_broker(nats_server.url, "router-test")
    await b.start()
    yield b
    await b.stop()


def make_router(admin: CaddyAdmin, stores: Stores, broker: NatsBroker, http_port: int) -> Router:
    # The router keeps its upstream files under the data dir: a fresh one per router.
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="router-test-")), http_port=http_port)
    return Router(admin=admin, state=stores.state, broker=broker, settings=settings,
                  log=structlog.get_logger().bind(service="router-test"))


def failed(app: str, deployment_id: str) -> DeployFailed:
    return DeployFailed(id=event_id(deployment_id, "dockyard.deploy.failed"), source="test",
                        subject=app, deployment_id=deployment_id, status="build-error",
                        reason="boom")


async def test_queued_switch_and_redelivery(caddy: CaddyProcess, stores: Stores,
                                            broker: NatsBroker, http_port: int,
                                            upstreams: Factory) -> None:
    app = app_name("shop")
    host = f"{app}.localhost"
    router = make_router(caddy.admin, stores, broker, http_port)
    await router.rebuild()
    assert (await get(http_port, host)).status_code == 404

    await router.on_deploy_queued(deploy_queued(app, f"{app}-d1"))
    pending = await get(http_port, host)
    assert (pending.status_code, pending.headers["Retry-After"]) == (503, "5")
    assert (await stores.state.get(pending_key(app))).value

    up = await upstreams("v1")
    event = hook_succeeded(app, f"{app}-d1", 1, [up.instance(1)])
    loads = caddy.admin.loads
    await router.on_hook_succeeded(event)
    assert caddy.admin.loads == loads + 1
    assert (await get(http_port, host)).text == "v1"
    record = codec.decode_as((await stores.state.get(live_key(app))).value, LiveRelease)
    assert (record.deployment_id, record.release, record.instances) == (f"{app}-d1", 1, [up.instance(1)])
    live, pending_records = await read_state(stores.state, router.log)
    assert app in live and app not in pending_records

    # The same event again (a redelivery): no Caddy load, the same announcement, deduplicated.
    await router.on_hook_succeeded(event)
    assert caddy.admin.loads == loads + 1
    switched = await stream_events(stores.js, subjects.event(app, "traffic", "switched"))
    assert len(switched) == 1
    (first,) = switched
    assert isinstance(first, TrafficSwitched)
    assert (first.id, first.previous_release, first.source) == (
        event_id(f"{app}-d1", "dockyard.traffic.switched"), None, "dockyard/router")

    # A second deploy names the release it replaced.
    up2 = await upstreams("v2")
    await router.on_hook_succeeded(hook_succeeded(app, f"{app}-d2", 2, [up2.instance(2)]))
    assert (await get(http_port, host)).text == "v2"
    await router.on_hook_succeeded(hook_succeeded(app, f"{app}-d2", 2, [up2.instance(2)]))
    switched = await stream_events(stores.js, subjects.event(app, "traffic", "switched"))
    assert [(e.deployment_id, getattr(e, "previous_release", "?")) for e in switched] == [
        (f"{app}-d1", None), (f"{app}-d2", 1)]


async def test_failed_first_deploy_clears_pending(caddy: CaddyProcess, stores: Stores,
                                                  broker: NatsBroker, http_port: int) -> None:
    app = app_name("blog")
    router = make_router(caddy.admin, stores, broker, http_port)
    await router.rebuild()
    await router.on_deploy_queued(deploy_queued(app, f"{app}-d1"))
    await router.on_deploy_failed(failed(app, f"{app}-other"))
    assert (await get(http_port, f"{app}.localhost")).status_code == 503
    await router.on_deploy_failed(failed(app, f"{app}-d1"))
    assert (await get(http_port, f"{app}.localhost")).status_code == 404
    _, pending = await read_state(stores.state, router.log)
    assert app not in pending


async def test_refused_switch_publishes_switch_error(caddy: CaddyProcess, stores: Stores,
                                                     broker: NatsBroker,
                                                     upstreams: Factory) -> None:
    app = app_name("web")
    with socket.socket() as taken:
        # Caddy cannot listen on a port someone else holds: it refuses the whole config.
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        router = make_router(caddy.admin, stores, broker, taken.getsockname()[1])
        up = await upstreams("v1")
        await router.on_hook_succeeded(hook_succeeded(app, f"{app}-d1", 1, [up.instance(1)]))
    (failure,) = await stream_events(stores.js, subjects.event(app, "traffic", "failed"))
    assert isinstance(failure, TrafficFailed)
    assert failure.status == "switch-error"
    assert "refused" in failure.reason
    live, _ = await read_state(stores.state, router.log)
    assert app not in live
    assert await stream_events(stores.js, subjects.event(app, "traffic", "switched")) == []


async def test_unreachable_caddy_publishes_switch_error(stores: Stores, broker: NatsBroker,
                                                        upstreams: Factory) -> None:
    app = app_name("web")
    admin = CaddyAdmin(f"http://127.0.0.1:{free_port()}", timeout=2)
    router = make_router(admin, stores, broker, free_port())
    up = await upstreams("v1")
    await router.on_hook_succeeded(hook_succeeded(app, f"{app}-d1", 1, [up.instance(1)]))
    (failure,) = await stream_events(stores.js, subjects.event(app, "traffic", "failed"))
    assert isinstance(failure, TrafficFailed) and failure.status == "switch-error"
    live, _ = await read_state(stores.state, router.log)
    assert app not in live


async def test_second_instance_follows_the_kv_state(caddy: CaddyProcess, stores: Stores,
                                                    broker: NatsBroker, tmp_path: Path,
                                                    upstreams: Factory) -> None:
    app = app_name("shop")
    port_a, port_b = free_port(), free_port()
    other = await start_caddy(tmp_path / "other")
    try:
        first = make_router(caddy.admin, stores, broker, port_a)
        second = make_router(other.admin, stores, broker, port_b)
        await first.rebuild()
        await second.rebuild()
        follower = asyncio.ensure_future(second.follow_state())
        try:
            up = await upstreams("v1")
            await first.on_hook_succeeded(hook_succeeded(app, f"{app}-d1", 1, [up.instance(1)]))

            async def routed() -> bool:
                return (await get(port_b, f"{app}.localhost")).text == "v1"

            await wait_for(routed)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
    finally:
        await other.stop()


async def test_a_switch_of_the_same_shape_reloads_nothing_and_no_request_fails(
        caddy: CaddyProcess, stores: Stores, broker: NatsBroker, http_port: int,
        upstreams: Factory) -> None:
    app = app_name("shape")
    first, second = await upstreams("first"), await upstreams("second")
    router = make_router(caddy.admin, stores, broker, http_port)
    await router.on_hook_succeeded(hook_succeeded(app, f"{app}-d1", 1, [first.instance(1)]))
    loads = caddy.admin.loads
    assert (await get(http_port, f"{app}.localhost")).text == "first"
    await router.on_hook_succeeded(hook_succeeded(app, f"{app}-d2", 2, [second.instance(2)]))
    assert (await get(http_port, f"{app}.localhost")).text == "second"
    assert caddy.admin.loads == loads, "a same-shape switch must not reload Caddy"
    generations = [p.name for p in (router.routes_dir / app).glob("gen-*")]
    assert len(generations) <= 2  # the current one and the one it replaced


async def test_files_are_put_back_when_caddy_does_not_answer(
        caddy: CaddyProcess, stores: Stores, broker: NatsBroker, http_port: int,
        upstreams: Factory) -> None:
    app = app_name("putback")
    first, second = await upstreams("first"), await upstreams("second")
    router = make_router(caddy.admin, stores, broker, http_port)
    await router.on_hook_succeeded(hook_succeeded(app, f"{app}-d1", 1, [first.instance(1)]))
    router.admin = CaddyAdmin(f"http://127.0.0.1:{free_port()}", timeout=1.0)  # nobody there
    await router.on_hook_succeeded(hook_succeeded(app, f"{app}-d2", 2, [second.instance(2)]))
    assert (await get(http_port, f"{app}.localhost")).text == "first"

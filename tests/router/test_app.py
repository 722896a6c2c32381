"""The router service as `dockyard service router` runs it: real Caddy, real nats-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from nats.aio.msg import Msg

from dockyard.bus.broker import publish
from dockyard.bus.embedded import EmbeddedNats, free_port
from dockyard.bus.service import RunningService, start_service
from dockyard.router.caddy import CaddyAdmin, CaddyProcess, admin_listen, read_admin_url
from dockyard.schemas import codec, subjects
from dockyard.schemas.events import TrafficFailed, TrafficSwitched
from dockyard.schemas.state import LiveRelease, live_key
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
def settings(tmp_path: Path, fresh_nats: EmbeddedNats) -> Settings:
    """Settings of a router on its own nats-server and free ports."""
    return Settings(data_dir=tmp_path / "data", nats_url=fresh_nats.url, http_port=free_port())


@pytest.fixture
async def router(settings: Settings) -> AsyncIterator[RunningService]:
    """The started router service (and its Caddy), stopped after the test."""
    running = await start_service("router", settings)
    yield running
    await running.stop()


async def switched_queue(running: RunningService, app: str) -> asyncio.Queue[TrafficSwitched]:
    """TrafficSwitched events of app, as they are published."""
    queue: asyncio.Queue[TrafficSwitched] = asyncio.Queue()

    async def received(msg: Msg) -> None:
        event = codec.decode_event(msg.data)
        assert isinstance(event, TrafficSwitched)
        queue.put_nowait(event)

    await running.ctx.stores.nc.subscribe(subjects.event(app, "traffic", "switched"), cb=received)
    return queue


async def test_first_deploy_503_then_switch_then_rebuild_at_start(
        settings: Settings, upstreams: Factory) -> None:
    router = await start_service("router", settings)
    try:
        await _first_deploy(router, settings, upstreams)
    finally:
        await router.stop()
    # A restarted router rebuilds Caddy's whole config from the KV state.
    again = await start_service("router", settings)
    try:
        live = await again.ctx.stores.state.keys()
        (key,) = [k for k in live if k.startswith("live.")]
        assert (await get(settings.http_port, f"{key.removeprefix('live.')}.localhost")).text == "v1"
    finally:
        await again.stop()


async def _first_deploy(router: RunningService, settings: Settings, upstreams: Factory) -> None:
    app = app_name("shop")
    host = f"{app}.localhost"
    port = settings.http_port
    broker = router.ctx.broker
    assert read_admin_url(settings.data_dir) is not None
    assert (await get(port, host)).status_code == 404

    await publish(broker, deploy_queued(app, f"{app}-d1"))

    async def pending() -> bool:
        answer = await get(port, host)
        return answer.status_code == 503 and answer.headers.get("Retry-After") == "5"

    await wait_for(pending)

    # What the host answers at the very moment TrafficSwitched is published.
    seen: asyncio.Queue[tuple[int, str]] = asyncio.Queue()

    async def on_switched(msg: Msg) -> None:
        answer = await get(port, host)
        seen.put_nowait((answer.status_code, answer.text))

    await router.ctx.stores.nc.subscribe(subjects.event(app, "traffic", "switched"),
                                         cb=on_switched)
    up = await upstreams("v1")
    event = hook_succeeded(app, f"{app}-d1", 1, [up.instance(1)])
    await publish(broker, event)
    assert await asyncio.wait_for(seen.get(), 10) == (200, "v1")
    record = codec.decode_as((await router.ctx.stores.state.get(live_key(app))).value,
                             LiveRelease)
    assert record.deployment_id == f"{app}-d1"

    # A duplicate that slipped past deduplication (another message id): no second switch.
    admin = CaddyAdmin(str(read_admin_url(settings.data_dir)))
    config_before = await admin.config()
    await router.ctx.broker.publish(codec.encode(event), event.nats_subject(),
                                    stream=subjects.STREAM_EVENTS,
                                    headers={"Nats-Msg-Id": "duplicate"})
    await asyncio.sleep(1.0)
    assert await admin.config() == config_before
    switched = await stream_events(router.ctx.stores.js, subjects.event(app, "traffic", "switched"))
    assert len(switched) == 1
    assert _loads(settings.data_dir) == 3  # initial rebuild, pending, switch


def _loads(data_dir: Path) -> int:
    """POST /load requests Caddy's admin API logged."""
    lines = (data_dir / "caddy.log").read_text().splitlines()
    return sum(1 for line in lines if '"uri":"/load"' in line)


async def test_drives_an_already_running_caddy(settings: Settings, caddy: CaddyProcess,
                                                upstreams: Factory) -> None:
    running = await start_service("router", replace(settings, caddy_admin=caddy.admin_url))
    try:
        app = app_name("shop")
        up = await upstreams("v1")
        queue = await switched_queue(running, app)
        await publish(running.ctx.broker, hook_succeeded(app, f"{app}-d1", 1, [up.instance(1)]))
        await asyncio.wait_for(queue.get(), 10)
        assert (await get(settings.http_port, f"{app}.localhost")).text == "v1"
        # It did not start a Caddy of its own.
        assert read_admin_url(settings.data_dir) is None
    finally:
        await running.stop()
    assert (await caddy.admin.config())["admin"]["listen"] == admin_listen(caddy.admin_url)


async def test_unreachable_caddy_admin_gives_switch_error(settings: Settings,
                                                          upstreams: Factory) -> None:
    dead = replace(settings, caddy_admin=f"http://127.0.0.1:{free_port()}")
    running = await start_service("router", dead)
    try:
        app = app_name("shop")
        up = await upstreams("v1")
        await publish(running.ctx.broker, hook_succeeded(app, f"{app}-d1", 1, [up.instance(1)]))

        async def failed() -> bool:
            return bool(await stream_events(running.ctx.stores.js,
                                            subjects.event(app, "traffic", "failed"), wait=0.2))

        await wait_for(failed)
        (failure,) = await stream_events(running.ctx.stores.js,
                                         subjects.event(app, "traffic", "failed"))
        assert isinstance(failure, TrafficFailed)
        assert failure.status == "switch-error"
    finally:
        await running.stop()


async def test_no_errors_while_switching_and_slow_requests_finish(
        router: RunningService, settings: Settings, upstreams: Factory) -> None:
    app = app_name("shop")
    host = f"{app}.localhost"
    port = settings.http_port
    a, b = await upstreams("a"), await upstreams("b")
    switched = await switched_queue(router, app)
    release = 0

    async def switch_to(up: Upstream) -> None:
        nonlocal release
        release += 1
        await publish(router.ctx.broker,
                      hook_succeeded(app, f"{app}-d{release}", release, [up.instance(release)]))
        event = await asyncio.wait_for(switched.get(), 10)
        assert event.release == release

    await switch_to(a)
    assert (await get(port, host)).text == "a"

    # A slow request in flight on the old upstream survives the switch.
    hits = a.hits
    slow = asyncio.ensure_future(get(port, host, "/slow"))
    await wait_for(lambda: _true_if(a.hits > hits))
    await switch_to(b)
    answer = await asyncio.wait_for(slow, 10)
    assert (answer.status_code, answer.text) == (200, "a")
    assert (await get(port, host)).text == "b"

    # Bounded load on loopback: 8 clients for 3 seconds while traffic switches back and forth.
    # Half open a connection per request, half keep connections alive. Each retries a GET once
    # when the connection was refused or closed before any response byte, as browsers and Go's
    # client do for idempotent requests (RFC 9110 9.2.2): measured with Caddy 2.11.7 on Linux,
    # a reload drops a few connections that reached the old server's socket (fresh or kept alive).
    ok: list[str] = []
    errors: list[str] = []
    retried: list[str] = []
    stop_at = time.monotonic() + 3.0

    async def client(keep_alive: bool) -> None:
        limits = httpx.Limits(max_keepalive_connections=None if keep_alive else 0)
        async with httpx.AsyncClient(timeout=5, base_url=f"http://127.0.0.1:{port}",
                                     limits=limits) as http:
            for _ in range(5000):
                if time.monotonic() >= stop_at:
                    return
                try:
                    try:
                        response = await http.get("/", headers={"Host": host})
                    except (httpx.ConnectError, httpx.ReadError,
                            httpx.RemoteProtocolError) as exc:
                        retried.append(repr(exc))
                        response = await http.get("/", headers={"Host": host})
                except httpx.HTTPError as exc:
                    errors.append(f"keep_alive={keep_alive} {time.monotonic():.3f} {exc!r}")
                    continue
                if response.status_code == 200:
                    ok.append(response.text)
                else:
                    errors.append(f"{response.status_code} {response.text}")

    async def switcher() -> int:
        count = 0
        while time.monotonic() < stop_at - 0.3:
            await switch_to(a if count % 2 else b)
            count += 1
            await asyncio.sleep(0.2)
        return count

    switching = asyncio.ensure_future(switcher())
    await asyncio.gather(*(client(i % 2 == 0) for i in range(8)))
    switches = await switching
    assert errors == []
    assert switches >= 4
    assert set(ok) == {"a", "b"}
    assert len(ok) > 100
    print(f"{len(ok)} requests, {switches} switches, {len(retried)} retries (connection refused or closed before a response)")


async def _true_if(value: bool) -> bool:
    return value

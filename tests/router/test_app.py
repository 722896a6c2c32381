"""The router service as `dockyard service router` runs it: real Caddy, real nats-server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.msg import Msg

from dockyard.bus.broker import DeadLetter, publish
from dockyard.bus.embedded import EmbeddedNats, free_port
from dockyard.bus.emit import Emitter, UndeclaredEvent
from dockyard.bus.service import RunningService, start_service
from dockyard.contract import codec, subjects
from dockyard.contract import events as contract_events
from dockyard.contract.events import HookSucceeded, TrafficFailed, TrafficSwitched
from dockyard.router.app import SERVICE, RouterDoors
from dockyard.router.caddy import (
    CaddyAdmin,
    CaddyProcess,
    admin_listen,
    read_admin_url,
    read_record,
)
from dockyard.router.handlers import Router
from dockyard.settings import Settings
from dockyard.state.placements import open_placement_writer
from dockyard.state.registry import open_doors
from dockyard.state.routes import RouteWriter
from dockyard.state.steps import open_steps
from tests import fakes
from tests.conftest import Bus
from tests.contract import samples

from .conftest import (
    Upstream,
    app_name,
    deploy_queued,
    deployment,
    get,
    hook_succeeded,
    open_gate,
    stream_events,
    wait_for,
)
from .listening import processes_of

Factory = Callable[[str], Awaitable[Upstream]]


@pytest.fixture
def settings(tmp_path: Path, fresh_nats: EmbeddedNats) -> Settings:
    """Settings of a router on its own nats-server and free ports."""
    return Settings(data_dir=tmp_path / "data", nats_url=fresh_nats.url, http_port=free_port(),
                    nats_keys=fresh_nats.keys_dir)


@pytest.fixture
async def router(settings: Settings) -> AsyncIterator[RunningService]:
    """The started router service (and its Caddy), stopped after the test."""
    running = await start_service("router", settings)
    yield running
    await running.stop()


async def switched_queue(harness: Bus, app: str) -> asyncio.Queue[TrafficSwitched]:
    """TrafficSwitched events of app, as they are published."""
    queue: asyncio.Queue[TrafficSwitched] = asyncio.Queue()

    async def received(msg: Msg) -> None:
        event = codec.decode_event(msg.data)
        assert isinstance(event, TrafficSwitched)
        queue.put_nowait(event)

    await harness.nc.subscribe(subjects.event(app, "traffic", "switched"), cb=received)
    return queue


async def gated(harness: Bus, event: HookSucceeded) -> HookSucceeded:
    """The event, once the scheduler's and the hook-runner's records vouch for it (written by
    the harness, which plays both: the router's own connection may only read them)."""
    js = harness.js
    await open_gate(await open_steps(js, "hook-runner"),
                    await open_placement_writer(js, "scheduler"), event)
    return event


async def dead_letters(harness: Bus, wait: float = 0.3) -> list[DeadLetter]:
    """The router's dead letters, oldest first (read as the harness)."""
    sub = await harness.js.pull_subscribe(subjects.dlq(SERVICE.name), stream=subjects.STREAM_DLQ)
    found: list[DeadLetter] = []
    try:
        while True:
            try:
                batch = await sub.fetch(100, timeout=wait)
            except TimeoutError:
                break
            found.extend(codec.decode_as(m.data, DeadLetter) for m in batch)
    finally:
        await sub.unsubscribe()
    return found


async def routes_of(running: RunningService) -> RouteWriter:
    """The routes door on the service's own connection."""
    return (await open_doors(RouterDoors, running.ctx.js, SERVICE.name)).routes


async def test_first_deploy_503_then_switch_then_rebuild_at_start(
        settings: Settings, upstreams: Factory, fresh_harness: Bus) -> None:
    router = await start_service("router", settings)
    try:
        await _first_deploy(router, settings, upstreams, fresh_harness)
    finally:
        await router.stop()
    # A restarted router rebuilds Caddy's whole config from the KV state.
    again = await start_service("router", settings)
    try:
        (app,) = await (await routes_of(again)).all_live()
        assert (await get(settings.http_port, f"{app}.localhost")).text == "v1"
    finally:
        await again.stop()


async def _first_deploy(router: RunningService, settings: Settings, upstreams: Factory,
                        harness: Bus) -> None:
    app = app_name("shop")
    host = f"{app}.localhost"
    port = settings.http_port
    broker = harness.broker
    assert read_admin_url(settings.data_dir) is not None
    assert (await get(port, host)).status_code == 404

    d1 = deployment()
    await publish(broker, deploy_queued(app, d1))

    async def pending() -> bool:
        try:
            answer = await get(port, host)
        except httpx.TransportError:  # the load resets connections arriving at that moment
            return False
        return answer.status_code == 503 and answer.headers.get("Retry-After") == "5"

    await wait_for(pending)

    # What the host answers at the very moment TrafficSwitched is published.
    seen: asyncio.Queue[tuple[int, str]] = asyncio.Queue()

    async def on_switched(msg: Msg) -> None:
        answer = await get(port, host)
        seen.put_nowait((answer.status_code, answer.text))

    await harness.nc.subscribe(subjects.event(app, "traffic", "switched"), cb=on_switched)
    up = await upstreams("v1")
    event = await gated(harness, hook_succeeded(app, d1, 1, [up.instance(1)]))
    await publish(broker, event)
    assert await asyncio.wait_for(seen.get(), 10) == (200, "v1")
    record = await (await routes_of(router)).live(app)
    assert record is not None and record.deployment_id == d1

    # A duplicate that slipped past deduplication (another message id): no second switch.
    admin = CaddyAdmin(str(read_admin_url(settings.data_dir)))
    config_before = await admin.config()
    await harness.broker.publish(codec.encode(event), event.nats_subject(),
                                 stream=subjects.STREAM_EVENTS,
                                 headers={"Nats-Msg-Id": "duplicate"})
    await asyncio.sleep(1.0)
    assert await admin.config() == config_before
    switched = await stream_events(harness.js, subjects.event(app, "traffic", "switched"))
    assert len(switched) == 1
    assert _loads(settings.data_dir) == 3  # initial rebuild, pending, switch


def _loads(data_dir: Path) -> int:
    """POST /load requests Caddy's admin API logged."""
    lines = (data_dir / "caddy.log").read_text().splitlines()
    return sum(1 for line in lines if '"uri":"/load"' in line)


async def test_drives_an_already_running_caddy_at_its_socket(
        settings: Settings, caddy: CaddyProcess, upstreams: Factory,
        fresh_harness: Bus) -> None:
    await _drives(replace(settings, caddy_admin=caddy.admin_url), upstreams, fresh_harness)
    assert (await caddy.admin.config())["admin"]["listen"] == f"unix/{caddy.admin_url}"


async def test_drives_an_already_running_caddy_at_an_http_url(
        settings: Settings, tcp_admin_caddy: str, upstreams: Factory,
        fresh_harness: Bus) -> None:
    await _drives(replace(settings, caddy_admin=tcp_admin_caddy), upstreams, fresh_harness)
    listen = (await CaddyAdmin(tcp_admin_caddy).config())["admin"]["listen"]
    assert listen == admin_listen(tcp_admin_caddy)


async def _drives(settings: Settings, upstreams: Factory, harness: Bus) -> None:
    running = await start_service("router", settings)
    try:
        app = app_name("shop")
        up = await upstreams("v1")
        queue = await switched_queue(harness, app)
        await publish(harness.broker,
                      await gated(harness, hook_succeeded(app, deployment(), 1,
                                                          [up.instance(1)])))
        await asyncio.wait_for(queue.get(), 10)
        assert (await get(settings.http_port, f"{app}.localhost")).text == "v1"
        # It did not start a Caddy of its own.
        assert read_admin_url(settings.data_dir) is None
    finally:
        await running.stop()


async def test_a_forged_switch_is_dead_lettered_with_its_reason(
        router: RunningService, settings: Settings, upstreams: Factory,
        fresh_harness: Bus) -> None:
    app = app_name("shop")
    own, attacker = await upstreams("own"), await upstreams("attacker")
    switched = await switched_queue(fresh_harness, app)
    await publish(fresh_harness.broker,
                  await gated(fresh_harness,
                              hook_succeeded(app, deployment(), 1, [own.instance(1)])))
    await asyncio.wait_for(switched.get(), 10)
    # An unrestricted connection (the harness) publishes what no service recorded: nothing
    # vouches for it.
    forged = hook_succeeded(app, deployment(), 2, [attacker.instance(2)])
    await publish(fresh_harness.broker, forged)

    async def refused() -> bool:
        return any(forged.id in letter.payload for letter in await dead_letters(fresh_harness))

    await wait_for(refused)
    (letter,) = [x for x in await dead_letters(fresh_harness) if forged.id in x.payload]
    assert letter.reason.startswith("rejected: postdeploy has no recorded outcome")
    assert letter.subject == forged.nats_subject()
    assert (await get(settings.http_port, f"{app}.localhost")).text == "own"
    assert switched.empty()
    record = await (await routes_of(router)).live(app)
    assert record is not None and record.release == 1


async def test_unreachable_caddy_admin_gives_switch_error(settings: Settings,
                                                          upstreams: Factory,
                                                          fresh_harness: Bus) -> None:
    dead = replace(settings, caddy_admin=str(settings.data_dir / "nobody.sock"))
    running = await start_service("router", dead)
    try:
        app = app_name("shop")
        up = await upstreams("v1")
        await publish(fresh_harness.broker,
                      await gated(fresh_harness, hook_succeeded(app, deployment(), 1,
                                                                [up.instance(1)])))

        async def failed() -> bool:
            return bool(await stream_events(fresh_harness.js,
                                            subjects.event(app, "traffic", "failed"), wait=0.2))

        await wait_for(failed)
        (failure,) = await stream_events(fresh_harness.js,
                                         subjects.event(app, "traffic", "failed"))
        assert isinstance(failure, TrafficFailed)
        assert failure.data.status == "switch-error"
    finally:
        await running.stop()


async def test_no_errors_while_switching_and_slow_requests_finish(
        router: RunningService, settings: Settings, upstreams: Factory,
        fresh_harness: Bus) -> None:
    app = app_name("shop")
    host = f"{app}.localhost"
    port = settings.http_port
    a, b = await upstreams("a"), await upstreams("b")
    switched = await switched_queue(fresh_harness, app)
    release = 0

    async def switch_to(up: Upstream) -> None:
        nonlocal release
        release += 1
        event = hook_succeeded(app, deployment(), release, [up.instance(release)])
        await publish(fresh_harness.broker, await gated(fresh_harness, event))
        announced = await asyncio.wait_for(switched.get(), 10)
        assert announced.release == release

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

    # Bounded load on loopback: 8 clients while traffic switches back and forth 6 times, for at
    # least 3 seconds (a busy machine makes it longer, never fewer switches).
    # Half open a connection per request, half keep connections alive. Each retries a GET once
    # when the connection was refused or closed before any response byte, as browsers and Go's
    # client do for idempotent requests (RFC 9110 9.2.2): measured with Caddy 2.11.7 on Linux,
    # a reload drops a few connections that reached the old server's socket (fresh or kept alive).
    ok: list[str] = []
    errors: list[str] = []
    retried: list[str] = []
    done = asyncio.Event()
    give_up_at = time.monotonic() + 120.0

    async def client(keep_alive: bool) -> None:
        limits = httpx.Limits(max_keepalive_connections=None if keep_alive else 0)
        async with httpx.AsyncClient(timeout=5, base_url=f"http://127.0.0.1:{port}",
                                     limits=limits) as http:
            while not done.is_set() and time.monotonic() < give_up_at:
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
        count, at_least_until = 0, time.monotonic() + 3.0
        try:
            while count < 6 or time.monotonic() < at_least_until:
                await switch_to(a if count % 2 else b)
                count += 1
                await asyncio.sleep(0.2)
        finally:
            done.set()
        return count

    switching = asyncio.ensure_future(switcher())
    await asyncio.gather(*(client(i % 2 == 0) for i in range(8)))
    switches = await switching
    assert errors == []
    assert switches >= 6
    assert set(ok) == {"a", "b"}
    assert len(ok) > 100
    print(f"{len(ok)} requests, {switches} switches, {len(retried)} retries"
          " (connection refused or closed before a response)")


def spawn_router(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """`dockyard service router` as its own OS process (its own process group, as a service
    manager starts it), logging to log."""
    env = {**os.environ, "DOCKYARD_NATS_URL": settings.nats_url,
           "DOCKYARD_NATS_KEYS": str(settings.nats_keys), "DOCKYARD_DATA_DIR":
           str(settings.data_dir), "DOCKYARD_HTTP_PORT": str(settings.http_port),
           "DOCKYARD_LOG_LEVEL": "INFO"}
    with log.open("ab") as out:
        return subprocess.Popen([str(Path(sys.executable).parent / "dockyard"), "service",
                                 "router"], env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=out, start_new_session=True)


def tail(log: Path) -> str:
    """The end of a log file."""
    return log.read_text(errors="replace")[-3000:]


async def owned_by(settings: Settings, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until proc's router drives the data dir's Caddy (it recorded itself as its owner)
    and has loaded the routes (an unknown host answers 404)."""
    async def owns() -> bool:
        assert proc.poll() is None, f"the router exited: {tail(log)}"
        record = read_record(settings.data_dir)
        if record is None or record.owner_pid != proc.pid:
            return False
        try:
            return (await get(settings.http_port, "nobody.localhost")).status_code == 404
        except httpx.TransportError:
            return False

    await wait_for(owns, 30)


async def test_a_killed_router_restarted_adopts_its_caddy_and_no_request_fails(
        settings: Settings, upstreams: Factory, fresh_harness: Bus, tmp_path: Path) -> None:
    log = tmp_path / "router.log"
    port = settings.http_port
    first = spawn_router(settings, log)
    routers = [first]
    try:
        await owned_by(settings, first, log)
        app, later = app_name("shop"), app_name("later")
        up, up_later = await upstreams("v1"), await upstreams("later")
        switched = await switched_queue(fresh_harness, app)
        await publish(fresh_harness.broker, await gated(
            fresh_harness, hook_succeeded(app, deployment(), 1, [up.instance(1)])))
        await asyncio.wait_for(switched.get(), 10)
        (caddy,) = processes_of("caddy", settings.data_dir)
        loads = _loads(settings.data_dir)

        # Poll the live app every 50 ms, each request on a new connection, across the crash.
        answers: list[str] = []
        polling = True

        async def poll() -> None:
            async with httpx.AsyncClient(timeout=5, limits=httpx.Limits(
                    max_keepalive_connections=0)) as http:
                while polling:
                    try:
                        response = await http.get(f"http://127.0.0.1:{port}/",
                                                  headers={"Host": f"{app}.localhost"})
                        answers.append(f"{response.status_code} {response.text}")
                    except httpx.HTTPError as exc:
                        answers.append(repr(exc))
                    await asyncio.sleep(0.05)

        poller = asyncio.ensure_future(poll())
        await wait_for(lambda: _true_if(len(answers) >= 5))
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        await wait_for(lambda: _true_if(len(answers) >= 10))  # no router at all meanwhile
        second = spawn_router(settings, log)
        routers.append(second)
        await owned_by(settings, second, log)
        assert processes_of("caddy", settings.data_dir) == [caddy]  # adopted, not doubled
        assert _loads(settings.data_dir) == loads  # it already served the recorded routes
        await wait_for(lambda: _true_if(len(answers) >= 15))
        # The window is the kill and the restart (the reload for a new host below is not).
        polling = False
        await poller
        assert set(answers) == {"200 v1"}, [a for a in answers if a != "200 v1"]

        # An app first deployed after the restart answers every request.
        later_switched = await switched_queue(fresh_harness, later)
        await publish(fresh_harness.broker, await gated(
            fresh_harness, hook_succeeded(later, deployment(), 1, [up_later.instance(1)])))
        await asyncio.wait_for(later_switched.get(), 10)
        later_answers = [(await get(port, f"{later}.localhost")).text for _ in range(40)]
        assert later_answers == ["later"] * 40
    finally:
        for proc in routers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(20) == 0, tail(log)
        left = processes_of("caddy", settings.data_dir)
        for pid in left:  # a failed run must not leave one behind either
            os.kill(pid, signal.SIGTERM)
    assert left == []  # a router stop stops the adopted one


async def _true_if(value: bool) -> bool:
    return value


# ---------------------------------------------------------------- the declaration's wiring


async def test_each_declared_event_reaches_its_handler_as_its_type() -> None:
    routed: dict[type[contract_events.Event[Any]], str] = {
        contract_events.HookSucceeded: "on_hook_succeeded",
        contract_events.AfterSwitchSucceeded: "on_after_switch_succeeded",
        contract_events.DeployQueued: "on_deploy_queued",
        contract_events.DeployFailed: "on_deploy_failed",
        contract_events.ScalePlaced: "on_scale_placed",
        contract_events.DestroyStarted: "on_destroy_started",
    }
    sent = [samples.sample_event(cls) for cls in routed]
    calls = await fakes.delivered_on_test_broker(SERVICE, Router, sent)
    assert calls == [(routed[type(event)], event) for event in sent]
    assert all(type(got) is type(event) for (_, got), event in zip(calls, sent, strict=True))
    # Commands, and the events no subscription names, reach nothing.
    others: list[contract_events.Message] = [
        contract_events.DeployRequested(deployment_id=contract_events.new_id(), app="shop"),
        contract_events.CancelRequested(deployment_id=contract_events.new_id(), app="shop"),
        contract_events.ScaleRequested(deployment_id=contract_events.new_id(), app="shop"),
        *(samples.sample_event(cls) for cls in contract_events.EVENT_TYPES if cls not in routed),
    ]
    assert await fakes.delivered_on_test_broker(SERVICE, Router, others) == []


def test_publishing_an_undeclared_event_type_is_refused() -> None:
    emitter = Emitter(fakes.offline_broker(SERVICE.name), SERVICE.name,
                      SERVICE.publishes)
    for cls in fakes.undeclared_events(SERVICE):
        fact = contract_events.Fact.of(cls, samples.sample_event(cls).data)
        with pytest.raises(UndeclaredEvent, match=cls.__name__):
            emitter.stamp(fact, app="shop", deployment_id="d", release=1)
    for cls in SERVICE.publishes:
        fact = contract_events.Fact.of(cls, samples.sample_event(cls).data)
        assert type(emitter.stamp(fact, app="shop", deployment_id="d", release=1)) is cls

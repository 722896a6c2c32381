"""Each release's figures from the proxy's access log: the windows as values, the log's lines
as bytes, then a real Caddy logging to a router that counts what each release answered."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from faststream.nats import NatsBroker
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from dockyard.bus.emit import Emitter
from dockyard.router.access_log import AccessEntry, AccessLogServer, decode_entry, socket_path
from dockyard.router.app import SERVICE, RouterDoors
from dockyard.router.caddy import CaddyProcess, start_caddy
from dockyard.router.config import app_of_host, build_config
from dockyard.router.figures import (
    KEPT_RELEASES,
    MAX_SAMPLES,
    Measurements,
    Sample,
    figures_of,
    percentile,
)
from dockyard.router.handlers import Router
from dockyard.router.metrics import ReleaseFigures
from dockyard.router.routes import AppRoute
from dockyard.settings import Settings

from .conftest import Gate, Upstream, app_name, deployment, get, hook_succeeded, wait_for
from .test_handlers import LOG, switch

# ------------------------------------------------------------------ values


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.99)) == (
        50.0, 95.0, 99.0)
    assert percentile([0.2], 0.99) == 0.2 and percentile([], 0.5) is None


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=1),
       st.sampled_from([0.5, 0.95, 0.99]))
def test_a_percentile_is_one_of_the_values_and_at_least_that_share_is_at_or_below_it(
        values: list[float], fraction: float) -> None:
    ordered = sorted(values)
    found = percentile(ordered, fraction)
    assert found in ordered
    assert sum(1 for v in ordered if v <= found) >= fraction * len(ordered)


def test_figures_count_what_is_inside_the_window() -> None:
    samples = [Sample(at=0.0, status=500, seconds=9.0),  # too old: left out
               Sample(at=50.0, status=200, seconds=0.01),
               Sample(at=55.0, status=503, seconds=0.02),
               Sample(at=58.0, status=502, seconds=0.001, failed=True),
               Sample(at=59.0, status=200, seconds=0.03)]
    found = figures_of("shop", 2, samples, now=60.0, window=30.0)
    assert (found.requests, found.errors, found.failures, found.error_rate) == (4, 2, 1, 0.5)
    assert (found.p50, found.p99) == (0.01, 0.03)
    empty = figures_of("shop", 3, [], now=60.0)
    assert (empty.requests, empty.error_rate, empty.p95) == (0, 0.0, None)


def test_measurements_keep_a_window_a_bounded_count_and_the_latest_releases() -> None:
    measured = Measurements(window=10.0)
    for release in range(1, KEPT_RELEASES + 3):
        measured.add("shop", release, Sample(at=float(release), status=200, seconds=0.01))
    assert sorted(measured.samples["shop"]) == list(range(3, KEPT_RELEASES + 3))
    for _ in range(MAX_SAMPLES + 10):
        measured.add("blog", 1, Sample(at=100.0, status=200, seconds=0.01))
    assert len(measured.samples["blog"][1]) == MAX_SAMPLES
    measured.add("blog", 1, Sample(at=200.0, status=500, seconds=0.01))  # the rest is too old
    assert measured.figures("blog", 1, now=200.0).requests == 1
    measured.forget("blog")
    assert "blog" not in measured.samples and measured.figures("blog", 1, 0.0).requests == 0


def test_the_figures_are_prometheus_gauges_per_app_and_release() -> None:
    measured = Measurements()
    now = time.monotonic()
    measured.add("shop", 4, Sample(at=now, status=200, seconds=0.25))
    measured.add("shop", 4, Sample(at=now, status=500, seconds=0.5))
    registry = CollectorRegistry()
    registry.register(ReleaseFigures(measured))
    text = generate_latest(registry).decode()
    assert 'dockyard_release_requests{app="shop",release="4"} 2.0' in text
    assert 'dockyard_release_errors{app="shop",release="4"} 1.0' in text
    assert 'dockyard_release_latency_seconds{app="shop",quantile="0.99",release="4"} 0.5' in text


def test_a_log_line_is_an_entry_or_nothing() -> None:
    # Caddy's own 502 (no answer from the instance), as Caddy 2.11 logs it.
    entry = decode_entry(b'{"level":"error","logger":"http.log.access.dockyard","request":{'
                         b'"host":"Shop.localhost:8080","uri":"/"},"duration":0.0011,"size":0,'
                         b'"status":502,"resp_headers":{"Server":["Caddy"]},'
                         b'"upstream":"127.0.0.1:5001"}\n')
    assert entry is not None
    assert (entry.host, entry.status, entry.upstream, entry.failed) == (
        "shop.localhost", 502, "127.0.0.1:5001", True)
    own = decode_entry(b'{"request":{"host":"shop.localhost"},"status":502,"resp_headers":'
                       b'{"Server":["Caddy"],"Content-Type":["text/plain"]}}')
    assert own is not None and not own.failed  # the app's own 502 is an error, not a failure
    for junk in (b"not json\n", b'{"status": "five hundred"}\n', b"[1, 2]\n"):
        assert decode_entry(junk) is None
    assert app_of_host("shop.localhost", "localhost") == "shop"
    assert app_of_host("a.shop.localhost", "localhost") is None
    assert app_of_host("localhost", "localhost") is None


async def test_the_socket_takes_entries_and_drops_junk_and_over_long_lines() -> None:
    folder = Path(tempfile.mkdtemp(prefix="access-"))
    got: list[AccessEntry] = []
    server = await AccessLogServer(socket_path(folder), got.append).start()
    try:
        assert socket_path(folder).stat().st_mode & 0o777 == 0o600
        _, writer = await asyncio.open_unix_connection(str(socket_path(folder)))
        writer.write(b"x" * (200 * 1024) + b"\n" + b"{not json\n"
                     + b'{"request":{"host":"shop.localhost"},"status":200,"duration":0.01,'
                       b'"upstream":"127.0.0.1:5001"}\n')
        await writer.drain()
        writer.close()

        async def took_one() -> bool:
            return len(got) == 1

        await wait_for(took_one)
        assert (got[0].host, got[0].status) == ("shop.localhost", 200)
        assert server.dropped >= 2
    finally:
        await server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    assert not socket_path(folder).exists()


def test_the_config_logs_each_request_with_its_upstream_only_when_asked() -> None:
    table = {"shop": AppRoute(app="shop", upstreams=("127.0.0.1:5001",)),
             "blog": AppRoute(app="blog", pending=True)}
    plain = build_config(table, domain="localhost", listen="127.0.0.1:80", admin_listen="a")
    assert "logging" not in plain
    logged = build_config(table, domain="localhost", listen="127.0.0.1:80", admin_listen="a",
                          access_log="unix//run/access.sock")
    server = logged["apps"]["http"]["servers"]["dockyard"]
    assert server["logs"] == {"default_logger_name": "dockyard"}
    blog, shop, _ = server["routes"]  # sorted by host
    assert [h["handler"] for h in shop["handle"]] == ["log_append", "reverse_proxy"]
    assert [h["handler"] for h in blog["handle"]] == ["static_response"]
    access = logged["logging"]["logs"]["access"]
    assert access["writer"]["address"] == "unix//run/access.sock"
    assert logged["logging"]["logs"]["default"]["exclude"] == access["include"]


# ------------------------------------------------------------------ a real Caddy


@pytest.fixture
async def measured_router(tmp_path: Path, doors: RouterDoors, broker: NatsBroker,
                          http_port: int) -> AsyncIterator[tuple[Router, CaddyProcess]]:
    """A router on its own Caddy, receiving Caddy's access log as the service does."""
    data = Path(tempfile.mkdtemp(prefix="router-figures-"))  # short: a unix socket path
    caddy = await start_caddy(data)
    access = socket_path(Path(caddy.admin.url).parent)
    router = Router(admin=caddy.admin, doors=doors,
                    emitter=Emitter(broker, SERVICE.name, SERVICE.publishes),
                    settings=Settings(data_dir=data, http_port=http_port), log=LOG,
                    access_log=access)
    server = await AccessLogServer(access, router.measure).start()
    try:
        yield router, caddy
    finally:
        await caddy.stop()
        await server.stop()
        shutil.rmtree(data, ignore_errors=True)


async def test_the_router_counts_each_releases_answers_from_caddys_access_log(
        measured_router: tuple[Router, CaddyProcess], gate: Gate, http_port: int,
        upstreams: Callable[[str], Awaitable[Upstream]]) -> None:
    router, _ = measured_router
    await router.rebuild()
    app = app_name("shop")
    host = f"{app}.localhost"
    v1, v2 = await upstreams("v1"), await upstreams("v2")
    await switch(router, await gate.open(hook_succeeded(app, deployment(), 1, [v1.instance(1)])))
    async with httpx.AsyncClient(timeout=10) as client:
        for path in ["/"] * 8 + ["/error"] * 2:
            await client.get(f"http://127.0.0.1:{http_port}{path}", headers={"Host": host})
    await switch(router, await gate.open(hook_succeeded(app, deployment(), 2, [v2.instance(2)])))
    for _ in range(5):
        assert (await get(http_port, host)).text == "v2"
    assert (await get(http_port, "nobody.localhost")).status_code == 404  # no app: not counted

    def counted(release: int, requests: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return router.measured.figures(app, release, time.monotonic()).requests >= requests
        return check

    await wait_for(counted(1, 10), 30)
    await wait_for(counted(2, 5), 30)
    first = router.measured.figures(app, 1, time.monotonic())
    second = router.measured.figures(app, 2, time.monotonic())
    assert (first.requests, first.errors, first.failures, first.error_rate) == (10, 2, 0, 0.2)
    assert (second.requests, second.errors) == (5, 0)
    assert first.p95 is not None and 0 < first.p95 < 5

    # An instance that is gone: the proxy's own 502, counted as a failure of its release.
    await v2.stop()
    assert (await get(http_port, host)).status_code == 502
    await wait_for(counted(2, 6), 30)
    assert router.measured.figures(app, 2, time.monotonic()).failures == 1

"""Observability on the real stack, for both runtimes: /metrics of `dockyard up`'s one address
after real deploys (succeeded, queued, failed) and a garbage request; one deploy is one trace."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from dockyard.bus import tracing
from dockyard.bus.embedded import free_port
from dockyard.bus.metrics import MetricsError
from dockyard.contract import subjects
from dockyard.contract.events import DeployFailed, DeploySucceeded
from dockyard.settings import Settings
from dockyard.stack import METRICS_URL, start_stack
from tests.e2e.apps import make_app
from tests.e2e.conftest import RUNTIMES, Running, start_running, stop_running
from tests.e2e.phase_support import deploy

SECRET = "obs-s3cret-value-7d2a91"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module", params=RUNTIMES)
async def observed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                   ) -> AsyncIterator[tuple[Running, InMemorySpanExporter]]:
    """A stack whose spans are kept in memory (tracing on before its brokers are made)."""
    spans = InMemorySpanExporter()
    tracing.export_to(spans, batch=False)
    try:
        r = await start_running(tmp_path_factory.mktemp(f"obs-{request.param}"), request.param)
        try:
            yield r, spans
        finally:
            await stop_running(r)
    finally:
        tracing.stop_exporting()


async def scrape(running: Running) -> tuple[str, Samples]:
    """The stack's /metrics, at the address `dockyard up` recorded: the text and its samples."""
    url = (running.settings.data_dir / METRICS_URL).read_text().strip()
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(url)
    response.raise_for_status()
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(response.text)
               for s in family.samples}
    return response.text, samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def until_scraped(running: Running, check: Callable[[Samples], bool],
                        within: float = 30.0) -> tuple[str, Samples]:
    """Scrape until the samples pass the check (the last publish's ack may still be on its way)."""
    deadline = time.monotonic() + within
    while True:
        text, samples = await scrape(running)
        if check(samples) or time.monotonic() > deadline:
            return text, samples
        await asyncio.sleep(0.1)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return sample(after, name, **labels) - sample(before, name, **labels)


async def test_metrics_count_deploys_queue_hooks_switches_and_dead_letters(
        observed: tuple[Running, InMemorySpanExporter], tmp_path: Path) -> None:
    running, _ = observed
    good, bad = running.app_name("obs-good"), running.app_name("obs-bad")
    await running.client.config_change(good, {"API_TOKEN": SECRET}, [])
    _, before = await scrape(running)

    # Two deploys of one app at once: the second waits in the app's queue meanwhile.
    first = make_app(tmp_path / "v1", running.runtime, "v1", postdeploy="echo warm")
    second = make_app(tmp_path / "v2", running.runtime, "v2", postdeploy="echo warm")
    both = asyncio.gather(deploy(running, good, first), deploy(running, good, second))
    _, waiting = await until_scraped(
        running, lambda s: sample(s, "dockyard_queue_depth", app=good) == 1)
    assert sample(waiting, "dockyard_queue_depth", app=good) == 1
    ends = await both
    assert [type(end) for end, _ in ends] == [DeploySucceeded, DeploySucceeded]
    failing = make_app(tmp_path / "bad", running.runtime, "v1", postdeploy="exit 3")
    end, _ = await deploy(running, bad, failing)
    assert isinstance(end, DeployFailed) and end.data.status == "hook-error"
    await running.client.js.publish(subjects.CMD_DEPLOY, b"{garbage")

    def counted(s: Samples) -> bool:
        return (grew(before, s, "dockyard_deploys_total", status="succeeded") >= 2
                and grew(before, s, "dockyard_deploys_total", status="hook-error") >= 1
                and grew(before, s, "dockyard_dead_letters_total", service="builder",
                         reason="undecodable") >= 1
                and grew(before, s, "dockyard_phase_duration_seconds_count",
                         phase="on_failure") >= 1)

    text, after = await until_scraped(running, counted)
    assert grew(before, after, "dockyard_deploys_total", status="succeeded") == 2
    assert grew(before, after, "dockyard_deploys_total", status="hook-error") == 1
    assert grew(before, after, "dockyard_dead_letters_total", service="builder",
                reason="undecodable") == 1
    assert grew(before, after, "dockyard_router_switches_total", outcome="switched") == 2
    assert grew(before, after, "dockyard_router_switches_total", outcome="failed") == 0
    assert grew(before, after, "dockyard_hook_command_duration_seconds_count",
                phase="postdeploy") == 3
    assert grew(before, after, "dockyard_hook_commands_total", phase="postdeploy",
                result="ok") == 2
    assert grew(before, after, "dockyard_hook_commands_total", phase="postdeploy",
                result="failed") == 1
    for phase, count in (("build", 3), ("release", 3), ("start", 3), ("postdeploy", 3),
                         ("switch", 2), ("on_failure", 1)):
        assert grew(before, after, "dockyard_phase_duration_seconds_count", phase=phase) == count
        assert grew(before, after, "dockyard_phase_duration_seconds_sum", phase=phase) > 0
    # The waiting deploy was looked at again until its turn came.
    assert grew(before, after, "dockyard_redeliveries_total", service="builder",
                subject="dockyard.cmd.deploy") >= 1
    # FastStream's own, per service and subject pattern.
    assert grew(before, after, "faststream_received_messages_total", app_name="hook-runner",
                broker="nats", handler="dockyard.evt.*.start.succeeded") == 3
    assert grew(before, after, "faststream_published_messages_total", app_name="router",
                broker="nats", destination="dockyard.evt.*.traffic.switched",
                status="success") == 2
    assert sample(after, "dockyard_inflight_oldest_seconds", service="router") >= 0
    # The queue emptied: its series went. No app, deployment id or config value is a label.
    assert ("dockyard_queue_depth", frozenset({("app", good)})) not in after
    ids = [end.deployment_id for end, _ in ends] + [end.deployment_id]
    for word in (good, bad, SECRET, *ids):
        assert word not in text


async def test_each_releases_answers_are_counted_at_the_router_and_exported(
        observed: tuple[Running, InMemorySpanExporter], tmp_path: Path) -> None:
    """Requests through the router are counted per app and release from Caddy's access log,
    on /metrics: the new release's after the switch, the old one's kept beside it."""
    running, _ = observed
    app = running.app_name("obs-fig")
    end, _ = await deploy(running, app, make_app(tmp_path / "v1", running.runtime, "v1"))
    assert isinstance(end, DeploySucceeded)

    async def ask(times: int) -> list[int]:
        async with httpx.AsyncClient(timeout=10) as http:
            return [(await http.get(f"http://127.0.0.1:{running.port}/",
                                    headers={"Host": f"{app}.localhost"})).status_code
                    for _ in range(times)]

    assert await ask(7) == [200] * 7
    end, _ = await deploy(running, app, make_app(tmp_path / "v2", running.runtime, "v2"))
    assert isinstance(end, DeploySucceeded)
    assert await ask(3) == [200] * 3

    def counted(s: Samples) -> bool:
        return (sample(s, "dockyard_release_requests", app=app, release="1") == 7
                and sample(s, "dockyard_release_requests", app=app, release="2") == 3)

    _, found = await until_scraped(running, counted)
    assert sample(found, "dockyard_release_requests", app=app, release="1") == 7
    assert sample(found, "dockyard_release_requests", app=app, release="2") == 3
    assert sample(found, "dockyard_release_errors", app=app, release="2") == 0
    assert 0 < sample(found, "dockyard_release_latency_seconds", app=app, release="2",
                      quantile="0.99") < 10


def of_trace(spans: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans()
            if s.context is not None and s.context.trace_id == trace_id]


async def test_one_deploy_is_one_trace_across_every_service(
        observed: tuple[Running, InMemorySpanExporter], tmp_path: Path) -> None:
    running, spans = observed
    app = running.app_name("obs-trace")
    src = make_app(tmp_path / "src", running.runtime, "v1", release="echo migrated",
                   postdeploy="echo warm")
    end, _ = await deploy(running, app, src)
    assert isinstance(end, DeploySucceeded)
    trace = int(end.deployment_id, 16)
    wanted = {f"dockyard-{s}" for s in ("builder", "hook-runner", "scheduler", "router")}

    def services() -> set[str]:
        return {str(s.resource.attributes["service.name"]) for s in of_trace(spans, trace)
                if s.name.endswith(" process")}

    def orphans() -> list[str]:
        """Spans whose parent is not among the trace's finished spans (yet: a handler's span
        ends after the events it published, which the client may have seen already)."""
        found = of_trace(spans, trace)
        ids = {s.context.span_id for s in found if s.context is not None}
        return [s.name for s in found if s.parent is not None and s.parent.span_id not in ids]

    deadline = time.monotonic() + 30
    while not wanted <= services() or orphans():
        assert time.monotonic() < deadline, (
            f"spans of {sorted(wanted - services())} missing; without a parent: {orphans()}")
        await asyncio.sleep(0.1)
    found = of_trace(spans, trace)
    # Every span about this app's events, in any service, is in the deploy's one trace.
    about = [s for s in spans.get_finished_spans() if f".evt.{app}." in s.name]
    assert about and all(s in found for s in about)
    # Its hops are linked through the headers: every span but the request's own roots has its
    # parent in the trace (checked above, once every span ended).
    roots = {s.name for s in found if s.parent is None}
    assert roots == {"dockyard.cmd.deploy create"}


def nats_servers_of(data_dir: Path) -> list[int]:
    """Pids of nats-servers running from a data dir."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "nats-server" in cmdline and str(data_dir) in cmdline:
            found.append(int(proc.name))
    return found


async def test_dockyard_up_keeps_its_metrics_port_and_refuses_a_taken_address_leaving_nothing(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = Settings.from_env(env={}, data_dir=data, runtime="process",
                                 http_port=free_port())
    stack = await start_stack(settings, services=())
    url = (data / METRICS_URL).read_text().strip()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    await stack.stop()
    again = await start_stack(settings, services=())
    try:
        # A restart serves on the port recorded last time (it is free): scrape configs hold.
        assert (data / METRICS_URL).read_text().strip() == url
    finally:
        await again.stop()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        told = Settings.from_env(env={"DOCKYARD_METRICS_ADDR": address}, data_dir=data,
                                 runtime="process", http_port=free_port())
        with pytest.raises(MetricsError, match=f"cannot serve metrics on {address} "):
            await start_stack(told, services=())
    assert (data / METRICS_URL).read_text().strip() == url  # not the address refused
    assert not (data / "nats.url").exists() and nats_servers_of(data) == []

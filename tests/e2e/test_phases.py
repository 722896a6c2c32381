"""Every row of DESIGN.md's phase table on the real stack, for both runtimes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from dockyard.contract.events import (
    CommandFinished,
    DeployFailed,
    DeploySucceeded,
    HookStarted,
    RetireSucceeded,
    TrafficSwitched,
)
from tests.e2e.apps import get, make_app
from tests.e2e.conftest import RUNTIMES, Running, module_stack
from tests.e2e.phase_support import (
    Seen,
    api_deployment,
    assert_failed_cleanly,
    assert_in_order,
    assert_lock_free,
    assert_nothing_left,
    deploy,
    events_of,
    releases_running,
    serves,
    stable_app,
    texts_of,
    types,
)

EVERY_PHASE = """
[[predeploy]]
label = "Prepare assets"
command = "echo predeploy-ran"

[[release]]
label = "Migrate"
command = "echo release-one"

[[release]]
label = "Seed"
command = "echo release-two"

[[postdeploy]]
label = "Warm cache"
command = "echo postdeploy-ran"

[[after_switch]]
label = "Announce"
command = "echo after-switch-ran"

[[on_failure]]
label = "Page"
command = "echo on-failure-ran"
"""


def _done(label: str) -> str:
    return rf"----- {label}: exit code 0 in \d+\.\ds -----"


@pytest.fixture(scope="module", params=[*RUNTIMES, "swarm"])
async def running(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """The phases on every runtime: Swarm's (instances and one-offs as Swarm services) too."""
    async for r in module_stack(request, tmp_path_factory):
        yield r


async def test_every_phase_runs_in_order_under_its_heading(running: Running,
                                                           tmp_path: Path) -> None:
    app = running.app_name("order")
    src = make_app(tmp_path / "v1", running.runtime, "v1", toml=EVERY_PHASE)
    end, _ = await deploy(running, app, src)
    assert isinstance(end, DeploySucceeded), end
    serves(running, app, "v1")

    texts = await texts_of(running, end.deployment_id)
    assert_in_order(texts, [
        "===== build =====",
        "===== predeploy =====", r"----- Prepare assets \(1/1\) -----", r"\$ echo predeploy-ran.*",
        "predeploy-ran", _done("Prepare assets"),
        "===== release =====", r"----- Migrate \(1/2\) -----", "release-one", _done("Migrate"),
        r"----- Seed \(2/2\) -----", "release-two", _done("Seed"),
        "===== start =====",
        "===== postdeploy =====", r"----- Warm cache \(1/1\) -----", "postdeploy-ran",
        _done("Warm cache"),
        "===== after_switch =====", r"----- Announce \(1/1\) -----", "after-switch-ran",
        _done("Announce"),
    ])
    assert "===== on_failure =====" not in texts and "on-failure-ran" not in texts

    row = await api_deployment(running, end.deployment_id, "succeeded")
    assert row["status"] == "succeeded"
    runs = [(r["phase"], r["label"], r["index"], r["total"], r["exit_code"], r["state"])
            for r in row["hook_runs"]]
    assert runs == [
        ("predeploy", "Prepare assets", 1, 1, 0, "succeeded"),
        ("release", "Migrate", 1, 2, 0, "succeeded"),
        ("release", "Seed", 2, 2, 0, "succeeded"),
        ("postdeploy", "Warm cache", 1, 1, 0, "succeeded"),
        ("after_switch", "Announce", 1, 1, 0, "succeeded"),
    ], row["hook_runs"]
    assert all(isinstance(r["duration"], float) and r["duration"] >= 0 for r in row["hook_runs"])


async def test_predeploy_changes_are_committed_release_changes_discarded(
        running: Running, tmp_path: Path) -> None:
    app = running.app_name("commit")
    toml = """
[[predeploy]]
command = "echo built > www/predeploy.txt"

[[release]]
command = "echo released > www/release.txt && cat www/predeploy.txt"
"""
    end, _ = await deploy(running, app, make_app(tmp_path / "v1", running.runtime, "v1",
                                                  toml=toml))
    assert isinstance(end, DeploySucceeded), end
    texts = await texts_of(running, end.deployment_id)
    # release runs from the artifact predeploy made
    assert_in_order(texts, ["===== release =====", "built"])
    assert ((r := get(running.port, app, "/predeploy.txt")).status_code == 200
            and r.text == "built\n")
    assert get(running.port, app, "/release.txt").status_code == 404


async def test_failing_release_starts_nothing(running: Running, tmp_path: Path) -> None:
    app, old = await stable_app(running, tmp_path)
    toml = '[[release]]\nlabel = "Migrate"\ncommand = "echo migrating; exit 7"\n'
    end, _ = await deploy(running, app, make_app(tmp_path / "v2", running.runtime, "v2",
                                                  toml=toml))
    failed = await assert_failed_cleanly(running, app, end, "release-error", old)
    assert failed.data.exit_code == 7
    assert "migrating" in failed.data.tail
    events = await events_of(running, app, end.deployment_id)
    assert "dockyard.start.started" not in types(events), types(events)
    assert "dockyard.start.succeeded" not in types(events)


async def test_failing_predeploy_is_a_release_error(running: Running, tmp_path: Path) -> None:
    app, old = await stable_app(running, tmp_path)
    toml = ('[[predeploy]]\ncommand = "echo collecting; exit 5"\n'
            '[[release]]\ncommand = "echo nope"\n')
    end, _ = await deploy(running, app, make_app(tmp_path / "v2", running.runtime, "v2",
                                                  toml=toml))
    failed = await assert_failed_cleanly(running, app, end, "release-error", old)
    assert failed.data.exit_code == 5
    assert "predeploy" in failed.data.reason
    texts = await texts_of(running, end.deployment_id)
    assert "nope" not in texts and "===== release =====" not in texts
    assert "dockyard.start.started" not in types(await events_of(running, app, end.deployment_id))


async def test_start_failures_remove_new_instances(running: Running, tmp_path: Path) -> None:
    app, old = await stable_app(running, tmp_path)
    # The web process exits at once.
    toml = '[processes.web]\ncommand = "echo bye; exit 3"\n'
    end, _ = await deploy(running, app, make_app(tmp_path / "v2", running.runtime, "v2",
                                                  toml=toml))
    await assert_failed_cleanly(running, app, end, "start-error", old)

    # The web process never listens: the health check gives up after its timeout.
    marker = f"never-listens-{uuid.uuid4().hex[:8]}"
    toml = (f'[processes.web]\ncommand = "sleep 60; echo {marker}"\n'
            '[health]\ntimeout = "3s"\n')
    started = time.monotonic()
    end, _ = await deploy(running, app, make_app(tmp_path / "v3", running.runtime, "v3",
                                                  toml=toml))
    await assert_failed_cleanly(running, app, end, "start-error", old)
    assert time.monotonic() - started < 50
    await assert_nothing_left(running, end.deployment_id, marker)


async def test_http_health_path(running: Running, tmp_path: Path) -> None:
    app = running.app_name("health")
    ok = '[health]\npath = "/health.html"\ntimeout = "20s"\n'
    end, _ = await deploy(running, app, make_app(tmp_path / "v1", running.runtime, "v1", toml=ok,
                                                  files={"www/health.html": "ok\n"}))
    assert isinstance(end, DeploySucceeded), end
    texts = await texts_of(running, end.deployment_id)
    assert any("HTTP GET /health.html" in t for t in texts)

    missing = '[health]\npath = "/missing.html"\ntimeout = "3s"\n'
    end2, _ = await deploy(running, app, make_app(tmp_path / "v2", running.runtime, "v2",
                                                   toml=missing))
    failed = await assert_failed_cleanly(running, app, end2, "start-error", end.release)
    assert "404" in failed.data.reason


async def test_postdeploy_timeout_is_a_hook_error_with_exit_code_minus_128(
        running: Running, tmp_path: Path) -> None:
    app, old = await stable_app(running, tmp_path)
    marker = f"pd-timeout-{uuid.uuid4().hex[:8]}"
    toml = (f"[[postdeploy]]\nlabel = \"Slow\"\ncommand = \"sh -c 'sleep 30; true' {marker}\"\n"
            'timeout = "2s"\n')
    started = time.monotonic()
    end, _ = await deploy(running, app, make_app(tmp_path / "v2", running.runtime, "v2",
                                                  toml=toml))
    elapsed = time.monotonic() - started
    failed = await assert_failed_cleanly(running, app, end, "hook-error", old)
    assert failed.data.exit_code == -128
    assert elapsed < 25, elapsed
    finished = [e for e in await events_of(running, app, end.deployment_id)
                if isinstance(e, CommandFinished)]
    assert [(e.data.hook_phase, e.data.exit_code) for e in finished] == [("postdeploy", -128)]
    assert finished[0].data.duration < 15
    await assert_nothing_left(running, end.deployment_id, marker)


async def test_release_timeout_is_a_release_error_with_exit_code_minus_128(
        running: Running, tmp_path: Path) -> None:
    app, old = await stable_app(running, tmp_path)
    marker = f"rel-timeout-{uuid.uuid4().hex[:8]}"
    toml = f"[[release]]\ncommand = \"sh -c 'sleep 30; true' {marker}\"\ntimeout = \"2s\"\n"
    started = time.monotonic()
    end, _ = await deploy(running, app, make_app(tmp_path / "v2", running.runtime, "v2",
                                                  toml=toml))
    failed = await assert_failed_cleanly(running, app, end, "release-error", old)
    assert failed.data.exit_code == -128
    assert time.monotonic() - started < 25
    events = await events_of(running, app, end.deployment_id)
    assert [e.data.exit_code for e in events if isinstance(e, CommandFinished)] == [-128]
    assert "dockyard.start.started" not in types(events)
    await assert_nothing_left(running, end.deployment_id, marker)


ALLOCATE = "x=$(yes | head -c 150000000); echo allocated ${#x}"


async def test_memory_limit_of_a_one_off(running: Running, tmp_path: Path) -> None:
    app = running.app_name("memory")
    small = f'[[release]]\ncommand = "{ALLOCATE}"\nmemory = "64M"\n'
    end, _ = await deploy(running, app, make_app(tmp_path / "v1", running.runtime, "v1",
                                                  toml=small))
    assert isinstance(end, DeployFailed), end
    assert end.data.status == "release-error" and end.data.exit_code not in (0, None), end
    assert "allocated 149999999" not in await texts_of(running, end.deployment_id)
    await assert_lock_free(running, app)

    large = f'[[release]]\ncommand = "{ALLOCATE}"\nmemory = "512M"\n'
    end, _ = await deploy(running, app, make_app(tmp_path / "v2", running.runtime, "v2",
                                                  toml=large))
    assert isinstance(end, DeploySucceeded), end
    assert "allocated 149999999" in await texts_of(running, end.deployment_id)
    serves(running, app, "v2")


async def test_after_switch_failure_keeps_traffic_on_the_new_release(
        running: Running, tmp_path: Path) -> None:
    app = running.app_name("afterswitch")
    end1, _ = await deploy(running, app, make_app(tmp_path / "v1", running.runtime, "v1"))
    assert isinstance(end1, DeploySucceeded), end1
    toml = """
[[after_switch]]
label = "Announce"
command = "echo announcing; exit 6"

[[on_failure]]
command = "echo on-failure-ran status=$DOCKYARD_FAILURE_STATUS"
"""
    end, _ = await deploy(running, app, make_app(tmp_path / "v2", running.runtime, "v2",
                                                  toml=toml))
    assert isinstance(end, DeployFailed), end
    assert end.data.status == "hook-error" and end.data.exit_code == 6, end
    serves(running, app, "v2")
    assert await releases_running(running, app) == {end.release}, "old retired, new serves"
    texts = await texts_of(running, end.deployment_id)
    assert_in_order(texts, ["===== after_switch =====", "announcing", "===== on_failure =====",
                            "on-failure-ran status=hook-error"])
    row = await api_deployment(running, end.deployment_id, "hook-error")
    assert row["status"] == "hook-error"
    await assert_lock_free(running, app)


BIG = 30_000_000


async def test_old_release_finishes_in_flight_requests_then_retires(
        running: Running, tmp_path: Path) -> None:
    app = running.app_name("retire")
    v1 = make_app(tmp_path / "v1", running.runtime, "v1", files={"www/big.bin": "x" * BIG})
    end1, _ = await deploy(running, app, v1)
    assert isinstance(end1, DeploySucceeded), end1

    got: dict[str, float | int] = {}
    switch_seen = asyncio.Event()

    async def held_download() -> None:
        # The first chunk before the switch, the rest once the switch is seen: the request
        # spans it whatever the machine's speed (v2 has no big.bin: a request routed to v2
        # would be a 404).
        async with httpx.AsyncClient(timeout=60) as http, http.stream(
                "GET", f"http://127.0.0.1:{running.port}/big.bin",
                headers={"Host": f"{app}.localhost"}) as response:
            got["status"] = response.status_code
            got["started"] = time.monotonic()
            size = 0
            async for chunk in response.aiter_bytes(256 * 1024):
                size += len(chunk)
                if not switch_seen.is_set():
                    await asyncio.wait_for(switch_seen.wait(), 60)
            got["size"] = size
            got["ended"] = time.monotonic()

    download: list[asyncio.Task[None]] = []
    marks: dict[str, float] = {}

    async def on_event(event: object) -> None:
        marks.setdefault(event.type, time.monotonic())  # type: ignore[attr-defined]
        if isinstance(event, HookStarted):
            download.append(asyncio.create_task(held_download()))
        if isinstance(event, TrafficSwitched):
            switch_seen.set()

    # postdeploy `sleep 1`: the download starts on v1 before the switch; after_switch
    # `sleep 2` keeps the old instances up (they retire after it and the drain).
    toml = ('[[postdeploy]]\ncommand = "sleep 1"\n'
            '[[after_switch]]\ncommand = "sleep 2"\n')
    end, _ = await deploy(running, app, make_app(tmp_path / "v2", running.runtime, "v2",
                                                  toml=toml), Seen(on_event=on_event))
    assert isinstance(end, DeploySucceeded), end
    assert download, "the download started"
    await asyncio.wait_for(download[0], 60)
    assert got["status"] == 200 and got["size"] == BIG, got
    switched = marks["dockyard.traffic.switched"]
    assert got["started"] < switched < got["ended"], (got, marks)
    serves(running, app, "v2")
    assert get(running.port, app, "/big.bin").status_code == 404

    events = await events_of(running, app, end.deployment_id, until="dockyard.retire.succeeded")
    retired = [e for e in events if isinstance(e, RetireSucceeded)]
    assert retired, types(events)
    assert retired[0].time >= next(e.time for e in events if isinstance(e, TrafficSwitched))
    old_ids = set(retired[0].data.stopped)
    assert old_ids and await releases_running(running, app) == {end.release}
    assert end1.release not in await releases_running(running, app)
    texts = await texts_of(running, end.deployment_id)
    assert_in_order(texts, ["===== retire =====", r"draining 1 old instance\(s\) for 0\.5s",
                            "stopped .*"])

"""Growth: with 1, 100 and 1,000 apps live on one stack, the time of a deploy, of a switch, of a
router restart (rebuilding every route), of `dockyard apps` and of the api's `GET /apps` (the
dashboard's first page), and the services' memory.

Every service runs as its own OS process. One real app (`probe`, process runtime, a static
page) is deployed; the other apps are registered in state without processes, as the services
would have left them: a live route record each in the routes bucket (written as the router
while the router is stopped, all pointing at one small HTTP server of this script) and an app
with one running instance in the api's store. Then, at each size:

- router first start: SIGTERM the router (it stops its Caddy), start `dockyard service router`
  again; the time until the last app's host and the probe's answer through the new Caddy
  (the newly registered apps' upstream files are written in it);
- router restart: the same again, with every app's files on disk (a router that crashed or
  was upgraded);
- deploy: a redeploy of `probe` (request → deploy.succeeded), `--deploys` times, the median;
- switch: in those redeploys, `hook.succeeded` → `traffic.switched` (the router's part, from
  the events' times as the api recorded them), the median;
- `dockyard apps` (the CLI, a fresh process) and `GET /apps` on the api (httpx), medians of 3;
- resident memory of each service process.

Each figure is also given as a ratio to the same figure with 1 app, measured in the same run.

Run: .venv/bin/python bench/growth.py [--sizes 1,100,1000] [--deploys 3]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import threading
import time
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
from stackprocs import (
    DOCKYARD,
    ServiceProcesses,
    load_average,
    make_app,
    rss_mib,
    run_main,
    service_processes,
)

from dockyard.api_client import api_token, api_url
from dockyard.bus.auth import Credentials
from dockyard.client import DockyardClient, Followers
from dockyard.contract import subjects
from dockyard.contract.events import InstanceRef, new_id
from dockyard.contract.state import LiveRelease
from dockyard.log_config import configure_logging
from dockyard.state.routes import live_key
from dockyard.store.db import open_store
from dockyard.store.models import App, Instance

FAKE_PAGE = b"fake\n"


class Page(SimpleHTTPRequestHandler):
    """Answers every GET with one short page (the registered apps' shared upstream)."""

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        self.send_response(200)
        self.send_header("Content-Length", str(len(FAKE_PAGE)))
        self.end_headers()
        self.wfile.write(FAKE_PAGE)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def host_get(port: int, app: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": f"{app}.localhost"}, timeout=2)


async def register(running: ServiceProcesses, names: list[str], upstream: int) -> None:
    """Live route records (as the router) and app rows with a running instance (the api's
    store) for apps that have no process: copies of the probe's, pointing at `upstream`."""
    settings = running.settings
    nc = await nats.connect(settings.bus_url(),
                            **Credentials.load(settings.keys_dir, "router").options())
    try:
        kv = await nc.jetstream().key_value(subjects.KV_ROUTES)
        probe = msgspec.json.decode((await kv.get(live_key("probe"))).value or b"",
                                    type=LiveRelease)
        for name in names:
            ref = InstanceRef(id=f"{name}-1-web-1", process="web", release=1, port=upstream)
            record = msgspec.structs.replace(probe, app=name, release=1,
                                             deployment_id=new_id(), instances=[ref])
            await kv.put(live_key(name), msgspec.json.encode(record))
    finally:
        await nc.close()
    store = open_store(settings.store_url)
    now = datetime.now(UTC)
    with store.session() as session:
        for name in names:
            session.add(App(name=name, created_at=now, live_release=1,
                            live_deployment_id=new_id()))
            session.add(Instance(id=f"{name}-1-web-1", app=name, release=1, process="web",
                                 port=upstream))
        session.commit()
    store.engine.dispose()


async def stop_router(running: ServiceProcesses) -> None:
    """SIGTERM the router (a clean stop: its Caddy stops too), and wait until nothing answers
    on the HTTP port, so the next start is timed against a new Caddy, not the old one."""
    (old,) = running.procs.pop("router")
    old.terminate()
    await asyncio.to_thread(old.wait, 30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            await asyncio.to_thread(host_get, running.settings.http_port, "probe")
        except httpx.HTTPError:
            return
        await asyncio.sleep(0.01)
    for log in sorted(running.logs.glob("router-*.log")):
        print(f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-15:]))
    raise SystemExit("the stopped router's Caddy still answers after 30 s")


async def start_router(running: ServiceProcesses, last: str) -> float:
    """Seconds from starting a new router until `last` and the probe answer through its
    Caddy."""
    port = running.settings.http_port
    started = time.monotonic()
    running.start("router")
    while True:
        try:
            if (await asyncio.to_thread(host_get, port, last)).status_code == 200 and \
                    (await asyncio.to_thread(host_get, port, "probe")).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        running.check_alive()
        if time.monotonic() - started > 120:
            raise SystemExit("the restarted router did not route every app within 120 s")
        await asyncio.sleep(0.01)


def switch_seconds(settings: Any, deployment_id: str) -> float:
    """hook.succeeded → traffic.switched of one deployment, from the api's record of its events."""
    headers = {"Authorization": f"Bearer {api_token(settings)}"}
    for _ in range(500):
        found = httpx.get(f"{api_url(settings)}/deployments/{deployment_id}/events",
                          headers=headers, timeout=10).json()
        times = {e["type"]: datetime.fromisoformat(e["time"]) for e in found}
        hook, switched = times.get("dockyard.hook.succeeded"), \
            times.get("dockyard.traffic.switched")
        if hook and switched:
            return (switched - hook).total_seconds()
        time.sleep(0.02)  # the api projects asynchronously
    raise SystemExit(f"the api never recorded the switch of {deployment_id}")


def timed_cli(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([DOCKYARD, "apps", "--json"], env=env, check=True, stdout=subprocess.DEVNULL,
                   timeout=120)
    return time.perf_counter() - started


def timed_get(settings: Any, expect: int) -> float:
    headers = {"Authorization": f"Bearer {api_token(settings)}"}
    started = time.perf_counter()
    rows = httpx.get(f"{api_url(settings)}/apps", headers=headers, timeout=60).json()
    took = time.perf_counter() - started
    assert len(rows) == expect, (len(rows), expect)
    return took


async def measure(running: ServiceProcesses, client: DockyardClient, work: Path, size: int,
                  last: str, deploys: int, version: list[int]) -> dict[str, float]:
    settings = running.settings
    # The first start after the apps were registered writes their upstream files; a restart
    # finds them on disk (the case of a router that crashed or was upgraded).
    found: dict[str, float] = {"router first start": await start_router(running, last)}
    await stop_router(running)
    found["router restart"] = await start_router(running, last)
    took, switches = [], []
    for _ in range(deploys):
        version[0] += 1
        src = make_app(work / f"probe{version[0]}", f"probe {version[0]}")
        started = time.monotonic()
        end = await client.deploy("probe", src, Followers(), wait=300)
        took.append(time.monotonic() - started)
        assert end.type == "dockyard.deploy.succeeded", end
        switches.append(await asyncio.to_thread(switch_seconds, settings, end.deployment_id))
    found["deploy"] = statistics.median(took)
    found["switch"] = statistics.median(switches)
    env = {**running.env(), "COLUMNS": "200"}
    found["dockyard apps"] = statistics.median([await asyncio.to_thread(timed_cli, env)
                                               for _ in range(3)])
    found["GET /apps"] = statistics.median([await asyncio.to_thread(timed_get, settings, size)
                                           for _ in range(3)])
    for name, pids in running.pids().items():
        found[f"RSS {name} (MiB)"] = rss_mib(pids[0])
    return found


async def main(sizes: str, deploys: int) -> None:
    counts = [int(s) for s in sizes.split(",")]
    configure_logging("WARNING")
    print(f"load average before: {load_average()}")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Page))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    upstream = server.server_address[1]
    results: dict[int, dict[str, float]] = {}
    try:
        async with service_processes("bench-growth-") as running:
            work = running.logs.parent / "src"
            client = await DockyardClient.connect(running.settings)
            try:
                end = await client.deploy("probe", make_app(work / "probe0", "probe 0"),
                                          Followers(), wait=300)
                assert end.type == "dockyard.deploy.succeeded", end
                have, version = 1, [0]
                for size in counts:
                    names = [f"app{n:04d}" for n in range(have - 1, size - 1)]
                    await stop_router(running)
                    if names:
                        # Registered while the router is stopped: its restart rebuilds them.
                        await register(running, names, upstream)
                    have = size
                    last = f"app{size - 2:04d}" if size > 1 else "probe"
                    results[size] = await measure(running, client, work, size, last, deploys,
                                                  version)
                    print(f"  {size} apps: " + ", ".join(
                        f"{k} {v:.3f}" for k, v in results[size].items()), flush=True)
                    print(f"  load average: {load_average()}", flush=True)
            finally:
                await client.close()
            if os.environ.get("BENCH_SERVICE_LOG_LEVEL"):
                for log in sorted(running.logs.glob("router-*.log")):
                    print(f"--- {log.name}\n" + "\n".join(
                        line for line in log.read_text().splitlines()
                        if "rebuilt" in line or "caddy" in line.lower() or "switch" in line))
    finally:
        server.shutdown()
    base = results[counts[0]]
    print(f"medians; ratios against {counts[0]} app(s), measured in the same run")
    print(f"{'':<22}" + "".join(f"{f'{s} apps':>18}" for s in counts))
    for key in base:
        unit = "" if key.startswith("RSS") else " s"
        cells = [f"{results[s][key]:.3f}{unit} ({results[s][key] / base[key]:.1f}×)"
                 if base[key] else f"{results[s][key]:.3f}" for s in counts]
        print(f"{key:<22}" + "".join(f"{c:>18}" for c in cells))
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    os.environ.pop("DOCKYARD_API_URL", None)
    run_main(__doc__ or "", main, sizes="1,100,1000", deploys=3)

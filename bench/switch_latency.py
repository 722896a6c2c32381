"""Switch latency: from the moment the postdeploy's success (`hook.succeeded`, the event the
router switches on) is published to the first response from the new release through the router.

Trivial deploys in a row on the embedded stack (process runtime), whose services run in this
process: the hook-runner's publish of `hook.succeeded` is timed as it starts (before the bus
confirms it). A prober in a process of its own asks the app's host through Caddy every 2 ms on
one keep-alive connection and tells when the answer changed (CLOCK_MONOTONIC, the same clock).
The anchor, measured in the same run: one request through Caddy to the live release.

Run: .venv/bin/python bench/switch_latency.py [--switches 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from deploy_latency import app  # noqa: E402
from embedded_stack import bench_stack  # noqa: E402

from dockyard.bus import emit  # noqa: E402
from dockyard.client import Followers  # noqa: E402
from dockyard.contract.events import HookSucceeded, Message  # noqa: E402
from dockyard.router import upstream_files  # noqa: E402

APP = "switch"
PAUSE = 0.002  # between the prober's requests


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def probe(url: str, host: str) -> None:
    """Ask the host through Caddy, again and again (a separate process, so the stack's event
    loop cannot delay it); print when each different answer first came and what it was."""
    last = None
    with httpx.Client(timeout=10) as http:
        while True:
            try:
                body = http.get(url, headers={"Host": host}).text
            except httpx.HTTPError as exc:
                body = type(exc).__name__
            if body != last:
                print(f"{time.monotonic()} {body.strip()}", flush=True)
                last = body
            time.sleep(PAUSE)


async def answered(prober: asyncio.subprocess.Process, body: str) -> float:
    """When the prober first got `body`."""
    assert prober.stdout is not None
    while True:
        line = (await prober.stdout.readline()).decode()
        if not line:
            raise RuntimeError("the prober ended")
        at, seen = line.split(" ", 1)
        if seen.strip() == body:
            return float(at)


async def main(switches: int) -> None:
    hooks: asyncio.Queue[float] = asyncio.Queue()
    publish = emit.publish  # type: ignore[attr-defined]

    async def timed_publish(broker: Any, message: Message, subject: str | None = None) -> None:
        if isinstance(message, HookSucceeded) and message.subject == APP:
            hooks.put_nowait(time.monotonic())
        await publish(broker, message, subject)

    renames: asyncio.Queue[float] = asyncio.Queue()
    switch = upstream_files.switch

    def timed_switch(routes_dir: Path, app: str, addresses: list[str]) -> str | None:
        previous = switch(routes_dir, app, addresses)
        renames.put_nowait(time.monotonic())  # the router's rename: Caddy dials the new files
        return previous

    emit.publish = timed_publish  # type: ignore[attr-defined]
    upstream_files.switch = timed_switch
    latencies, anchors, routed = [], [], []
    prober = None
    try:
        async with bench_stack(APP) as bench, httpx.AsyncClient(timeout=10) as http:
            url, host = f"http://127.0.0.1:{bench.settings.http_port}/", f"{APP}.localhost"
            await bench.client.deploy(APP, app(bench.work / "v0", 0, "process"), Followers(),
                                      wait=300)
            prober = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--probe", url, host, stdout=asyncio.subprocess.PIPE)
            await asyncio.wait_for(answered(prober, "v0"), 30)
            for n in range(1, switches + 1):
                for queue in (hooks, renames):  # an earlier deploy's (a retried publish's)
                    while not queue.empty():
                        queue.get_nowait()
                seen = asyncio.ensure_future(answered(prober, f"v{n}"))
                end = await bench.client.deploy(APP, app(bench.work / f"v{n}", n, "process"),
                                                Followers(), wait=300)
                assert end.type == "dockyard.deploy.succeeded", end
                hook_at = await hooks.get()
                latencies.append(await asyncio.wait_for(seen, 30) - hook_at)
                routed.append(await renames.get() - hook_at)
                started = time.monotonic()
                assert (await http.get(url, headers={"Host": host})).text == f"v{n}\n"
                anchors.append(time.monotonic() - started)
                print(f"{n}: {latencies[-1] * 1000:.1f} ms", flush=True)
    finally:
        emit.publish = publish  # type: ignore[attr-defined]
        upstream_files.switch = switch
        if prober is not None:
            prober.kill()
            await prober.wait()
    anchor = statistics.median(anchors)
    print(f"\nload average {os.getloadavg()[0]:.1f}; {switches} switches")
    print(f"hook.succeeded published → first answer of the new release: "
          f"p50 {pct(latencies, 50) * 1000:.0f} ms, p99 {pct(latencies, 99) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms")
    print(f"of which hook.succeeded published → the router's rename of the route files: "
          f"p50 {pct(routed, 50) * 1000:.0f} ms, p99 {pct(routed, 99) * 1000:.0f} ms")
    print(f"anchor, one request through Caddy: median {anchor * 1000:.1f} ms "
          f"(p50 switch = {pct(latencies, 50) / anchor:.0f}× a request)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--switches", type=int, default=50)
    parser.add_argument("--probe", nargs=2, metavar=("URL", "HOST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(*args.probe)
    else:
        asyncio.run(main(args.switches))

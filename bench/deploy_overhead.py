"""Control-plane overhead: trivial deploys through Dockyard against the same steps scripted
directly (bench/direct_deploy.py), interleaved in one run.

A Dockyard deploy is timed from the request (packing the upload included) to the moment
`deploy.succeeded` reaches the client; the direct one from packing to the old process stopped.
Each hop between events is reported too (its median), from the events' arrival at the client.

Run: .venv/bin/python bench/deploy_overhead.py [--deploys 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from deploy_latency import app  # noqa: E402
from direct_deploy import DirectDeployer  # noqa: E402
from embedded_stack import bench_stack  # noqa: E402

from dockyard.client import DockyardClient, Followers  # noqa: E402
from dockyard.contract.events import AnyEvent, new_id  # noqa: E402

APP_NAME = "overhead"


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def short(event_type: str) -> str:
    return event_type.removeprefix("dockyard.")


async def dockyard_deploy(client: DockyardClient, source: Path,
                          hops: dict[str, list[float]]) -> float:
    seen: list[tuple[float, str]] = []

    async def on_event(event: AnyEvent) -> None:
        seen.append((time.monotonic(), short(event.type)))

    dep = new_id()
    watch = await client.watch(APP_NAME, dep, Followers(on_event=on_event))
    try:
        started = time.monotonic()
        await client.request_deploy(APP_NAME, source, deployment_id=dep)
        end = await watch.result(300)
        finished = time.monotonic()
    finally:
        await watch.close()
    assert end.type == "dockyard.deploy.succeeded", end
    previous = (started, "request")
    for at, name in seen:
        hops[f"{previous[1]} → {name}"].append(at - previous[0])
        previous = (at, name)
    return finished - started


async def main(deploys: int) -> None:
    through, straight = [], []
    hops: dict[str, list[float]] = defaultdict(list)
    async with bench_stack(APP_NAME) as bench:
        direct = DirectDeployer(bench.work / "direct")
        direct.work.mkdir()
        try:
            # One of each first, not counted: imports, first route, first Caddy config.
            await dockyard_deploy(bench.client, app(bench.work / "warm", 0, "process"),
                                  defaultdict(list))
            await direct.deploy(app(bench.work / "warm-direct", 0, "process"))
            for n in range(1, deploys + 1):
                source = app(bench.work / f"v{n}", n, "process")
                through.append(await dockyard_deploy(bench.client, source, hops))
                started = time.monotonic()
                await direct.deploy(source)
                straight.append(time.monotonic() - started)
                print(f"{n}: dockyard {through[-1] * 1000:.0f} ms, "
                      f"direct {straight[-1] * 1000:.0f} ms", flush=True)
        finally:
            await direct.close()
    md, ms = statistics.median(through), statistics.median(straight)
    print(f"\nload average {os.getloadavg()[0]:.1f}; {deploys} deploys each, interleaved")
    print(f"dockyard: median {md * 1000:.0f} ms, p95 {p95(through) * 1000:.0f} ms")
    print(f"direct:   median {ms * 1000:.0f} ms, p95 {p95(straight) * 1000:.0f} ms")
    print(f"ratio {md / ms:.2f}×; overhead {(md - ms) * 1000:.0f} ms per deploy (medians)")
    print("\nhops (median, from the events' arrival at the client):")
    for name, values in hops.items():
        if len(values) == deploys:
            print(f"  {statistics.median(values) * 1000:6.0f} ms  {name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--deploys", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.deploys))

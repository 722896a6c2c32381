"""Scaling out the services: deploys of distinct apps per minute with 1 and with 2 processes of
each service, and events per second through one service's handler against a bare nats-py
subscriber on the same stream and consumer.

Deploys: every service runs as its own OS process (`dockyard service NAME`) against a
provisioned nats-server; after a warm-up deploy, `--apps` distinct apps (process runtime, a
static page, no hooks) are deployed at once and the wall time of the batch gives deploys per
minute. Then the same with a second process of each service (the second router drives the
first one's Caddy; the second api serves on a port of its own).

Events: the notifier alone (no sink configured, so its handler reads the app's sinks and acks)
is paused (SIGSTOP) while `--events` events are published, then resumed; the time until its
durable consumer has acked them all. The anchor: the same number of events drained from the
same durable consumer (notifier stopped) by a bare nats-py pull loop that decodes and acks each,
fetching one message at a time as the service's subscriber does, and 100 at a time.

Run: .venv/bin/python bench/service_scaling.py [--apps 8] [--events 2000]
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import msgspec
import nats
from nats.js.api import ConsumerInfo
from stackprocs import load_average, make_app, run_main, service_processes

from dockyard.bus.auth import Credentials
from dockyard.client import DockyardClient, Followers
from dockyard.contract import subjects
from dockyard.contract.events import AnyEvent, DeployQueued, Fact, KindData, new_id, stamp
from dockyard.log_config import configure_logging
from dockyard.settings import Settings

DURABLE = "notifier-all"


async def deploy_batch(settings: Settings, work: Path, apps: int, tag: str) -> float:
    """Seconds to deploy `apps` distinct apps at once (after one warm-up deploy)."""
    client = await DockyardClient.connect(settings)
    try:
        warm = await client.deploy(f"warm{tag}", make_app(work / f"warm{tag}", "warm"),
                                   Followers(), wait=300)
        assert warm.type == "dockyard.deploy.succeeded", warm
        names = [f"app{tag}{n}" for n in range(apps)]
        started = time.monotonic()
        ends = await asyncio.gather(*(
            client.deploy(name, make_app(work / name, name), Followers(), wait=600)
            for name in names))
        took = time.monotonic() - started
        failed = [e for e in ends if e.type != "dockyard.deploy.succeeded"]
        assert not failed, failed
        return took
    finally:
        await client.close()


async def deploys(apps: int, count: int) -> float:
    async with service_processes(f"bench-scale{count}-") as running:
        work = running.logs.parent / "src"
        took = await deploy_batch(running.settings, work, apps, f"x{count}")
        running.check_alive()
        return took


async def consumer(js: nats.js.JetStreamContext) -> ConsumerInfo:
    info: ConsumerInfo = await js.consumer_info(subjects.STREAM_EVENTS, DURABLE)
    return info


async def drained(js: nats.js.JetStreamContext, limit: float = 300) -> None:
    """Until the durable has nothing pending and nothing unacked."""
    deadline = time.monotonic() + limit
    while True:
        info = await consumer(js)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"consumer not drained after {limit}s: {info}")
        await asyncio.sleep(0.01)


async def publish(settings: Settings, count: int) -> None:
    """`count` deploy.queued events of distinct deploys, as the builder publishes them."""
    nc = await nats.connect(settings.bus_url(),
                            **Credentials.load(settings.keys_dir, "builder").options())
    try:
        js = nc.jetstream()
        for n in range(count):
            event = stamp(Fact.of(DeployQueued, KindData()), source="dockyard/builder",
                          app=f"ev{n % 50}", deployment_id=new_id(), release=0)
            await js.publish(event.nats_subject(), msgspec.json.encode(event),
                             stream=subjects.STREAM_EVENTS, headers={"Nats-Msg-Id": event.id})
    finally:
        await nc.close()


async def bare(js: nats.js.JetStreamContext, count: int, batch: int) -> None:
    """Drain `count` messages from the durable: fetch, decode, ack."""
    decoder = msgspec.json.Decoder(AnyEvent)
    sub = await js.pull_subscribe_bind(DURABLE, subjects.STREAM_EVENTS)
    seen = 0
    while seen < count:
        for msg in await sub.fetch(batch, timeout=5):
            decoder.decode(msg.data)
            await msg.ack()
            seen += 1


async def event_rates(count: int) -> dict[str, float]:
    """Events per second: the notifier's handler, then bare loops on its durable."""
    async with service_processes("bench-events-", services=("notifier",)) as running:
        settings = running.settings
        nc = await nats.connect(settings.bus_url(),
                                **Credentials.load(settings.keys_dir, "notifier").options())
        js = nc.jetstream()
        try:
            while True:  # the notifier creates its durable when it starts
                try:
                    await consumer(js)
                    break
                except nats.js.errors.NotFoundError:
                    running.check_alive()
                    await asyncio.sleep(0.05)
            found: dict[str, float] = {}
            (notifier,) = running.procs["notifier"]
            notifier.send_signal(signal.SIGSTOP)
            await publish(settings, count)
            started = time.monotonic()
            notifier.send_signal(signal.SIGCONT)
            await drained(js)
            found["notifier handler (1 process)"] = count / (time.monotonic() - started)
            running.check_alive()
            await asyncio.to_thread(running.stop)
            for batch in (1, 100):
                await publish(settings, count)
                started = time.monotonic()
                await bare(js, count, batch)
                found[f"bare nats-py, fetch {batch}"] = count / (time.monotonic() - started)
            await drained(js)
            return found
        finally:
            await nc.close()


async def main(apps: int, events: int) -> None:
    configure_logging("WARNING")
    print(f"load average before: {load_average()}")
    one = await deploys(apps, 1)
    two = await deploys(apps, 2)
    print(f"{apps} distinct apps deployed at once (process runtime), after a warm-up deploy:")
    print(f"  1 process of each service:   {one:6.2f} s, {apps / one * 60:6.1f} deploys/min")
    print(f"  2 processes of each service: {two:6.2f} s, {apps / two * 60:6.1f} deploys/min "
          f"({one / two:.2f}× one)")
    count = events
    rates = await event_rates(count)
    anchor = rates["bare nats-py, fetch 1"]
    print(f"{count} events through one durable consumer, events/s:")
    for name, rate in rates.items():
        print(f"  {name:<32} {rate:8.0f}  ({rate / anchor:.2f}× bare fetch 1)")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    run_main(__doc__ or "", main, apps=8, events=2000)

"""Dockyard on a 3-node NATS cluster (authenticated routes, every stream, bucket and store with
3 replicas): the node leading the events stream is SIGKILLed while a postdeploy runs. That
deploy and the ones after it (on two nodes, then with the node back) end succeeded; every
release and postdeploy command ran exactly once; the router serves each new release."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import pytest

from dockyard.bus.cluster import LocalCluster, start_cluster
from dockyard.bus.topology import stream_names
from dockyard.client import ClientError, DockyardClient, Followers
from dockyard.contract import subjects
from dockyard.contract.events import DeploySucceeded
from dockyard.settings import Settings
from dockyard.stack import identities
from tests.cluster_support import provision_when_ready
from tests.e2e.apps import make_app
from tests.e2e.conftest import Running, start_running, stop_running
from tests.e2e.phase_support import assert_lock_free
from tests.e2e.recovery_support import (
    check_ledger,
    ledger_hook,
    serves,
    until,
    until_async,
)
from tests.runtime.process_support import reachable_tmp, remove

REPLICAS = 3
WAIT = 60.0


async def _leader_of_events(running: Running, cluster: LocalCluster) -> int:
    """The index of the node that leads DOCKYARD_EVENTS (the stream every event goes through)."""
    info = await (await running.js_as("admin")).stream_info(subjects.STREAM_EVENTS)
    assert info.config.num_replicas == REPLICAS
    assert info.cluster is not None and len(info.cluster.replicas or []) == REPLICAS - 1
    names = [cluster.name(i) for i in range(len(cluster.ports))]
    assert info.cluster.leader in names, (info.cluster.leader, names)
    return names.index(info.cluster.leader)


async def _connect(settings: Settings) -> DockyardClient:
    """A client, once the cluster answers JetStream requests again: for some seconds after a
    node is lost, the streams it led elect new leaders and requests to them time out."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return await DockyardClient.connect(settings)
        except (nats.errors.Error, ClientError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


@pytest.mark.timeout(120)
async def test_a_node_killed_mid_postdeploy_loses_no_deploy_and_reruns_no_hook(
        tmp_path: Path) -> None:
    cluster = await asyncio.to_thread(start_cluster, tmp_path / "cluster", identities())
    shared = reachable_tmp("dockyard-cluster-")
    shared.chmod(0o1777)
    ledger, gate = shared / "ledger", shared / "gate"
    ledger.touch()
    ledger.chmod(0o666)
    running: Running | None = None
    try:
        # One DOCKYARD_NATS_URL naming the three nodes, and DOCKYARD_BUS_REPLICAS=3.
        await provision_when_ready(Settings.from_env(
            env={}, data_dir=tmp_path / "data", nats_url=cluster.url, nats_keys=cluster.keys_dir,
            bus_replicas=REPLICAS))
        running = await start_running(tmp_path, "process", ack_wait=3.0, nats_url=cluster.url,
                                      nats_keys=cluster.keys_dir, bus_replicas=REPLICAS)
        admin = await running.js_as("admin")
        for stream in stream_names():  # streams, buckets and object stores alike
            assert (await admin.stream_info(stream)).config.num_replicas == REPLICAS, stream
        app = running.app_name("clustered")
        killed: int | None = None

        async def deploy(k: int, *, kill: bool = False) -> None:
            nonlocal killed
            src = make_app(tmp_path / f"v{k}", "process", f"v{k}",
                           release=ledger_hook(ledger, f"release-{k}", 0.2),
                           postdeploy=ledger_hook(ledger, f"postdeploy-{k}",
                                                  gate=gate if kill else None))
            client = await DockyardClient.connect(running.settings)
            try:
                cmd = await client.request_deploy(app, src)
            finally:
                await client.close(at_once=True)
            if kill:
                await until(lambda: f"start postdeploy-{k}" in ledger.read_text(), WAIT)
                killed = await _leader_of_events(running, cluster)
                await asyncio.to_thread(cluster.kill, killed)
                gate.touch()  # the postdeploy ends after its node's leader is gone
            client = await _connect(running.settings)
            try:
                end = await client.follow(app, cmd.deployment_id, Followers(), wait=WAIT)
            finally:
                await client.close()
            assert isinstance(end, DeploySucceeded), (k, end)
            await until_async(lambda: serves(running.port, app, f"v{k}"), 10)
            await assert_lock_free(running, app)
            check_ledger(ledger.read_text().splitlines())

        await deploy(1)
        await deploy(2, kill=True)
        assert killed is not None
        # Every service's connection is up, on a node that runs (those on the killed one moved).
        for service in running.stack.services:
            nc = service.ctx.nc
            assert nc.is_connected and nc.connected_url is not None, service.ctx.name
            assert nc.connected_url.port != cluster.ports[killed], service.ctx.name
        await deploy(3)  # on the two nodes left
        await asyncio.to_thread(cluster.start, killed)
        await deploy(4)  # the node back
        lines = ledger.read_text().splitlines()
        assert lines == [f"{edge} {hook}-{k}" for k in range(1, 5)
                         for hook in ("release", "postdeploy") for edge in ("start", "end")]
    finally:
        try:
            if running is not None:
                await stop_running(running)
        finally:
            cluster.stop()
            remove(shared)

"""The embedded stack's bus across crashes: a stack that runs is never doubled, the nats-server a
killed stack left is adopted on its port, one that died too comes back on the recorded port."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest

from dockyard.bus.embedded import (
    RECORD_FILE,
    free_port,
    read_url,
    start_nats,
    surviving_nats,
    write_url,
)
from dockyard.bus.recorded import ProcessRecord, read_record, write_record
from dockyard.client import DockyardClient
from dockyard.settings import Settings
from dockyard.stack import StackError, identities, start_stack
from tests.router.listening import processes_of
from tests.waiting import until


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings of a stack in a data dir of this test's own; nothing of it outlives the test."""
    data_dir = tmp_path / "data"
    yield Settings.from_env(env={}, data_dir=data_dir)
    for pid in processes_of("nats-server", data_dir):
        os.kill(pid, signal.SIGTERM)


def killed_stack(settings: Settings, without: str = "") -> int:
    """What `dockyard up` killed with SIGKILL leaves: its nats-server, recorded, serving, with an
    owner that is gone (its config lacking identity `without`, as an older version's)."""
    permissions = {name: p for name, p in identities().items() if name != without}
    server = start_nats(settings.data_dir, permissions, keys_dir=settings.keys_dir)
    write_url(settings.data_dir, server.url)
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert server.record is not None
    write_record(settings.data_dir / RECORD_FILE, msgspec.structs.replace(
        server.record, owner_pid=gone.pid, owner_start_time=1))
    return server.port


async def test_a_second_stack_on_a_running_data_dir_is_refused(settings: Settings) -> None:
    stack = await start_stack(settings, services=())
    try:
        with pytest.raises(StackError, match="a Dockyard stack already runs from"):
            await start_stack(settings, services=())
        assert len(processes_of("nats-server", settings.data_dir)) == 1
    finally:
        await stack.stop()
    assert processes_of("nats-server", settings.data_dir) == []
    assert read_url(settings.data_dir) is None
    assert not (settings.data_dir / RECORD_FILE).exists()


async def test_the_bus_of_a_killed_stack_is_adopted_on_its_port(settings: Settings) -> None:
    port = killed_stack(settings)
    (pid,) = processes_of("nats-server", settings.data_dir)
    stack = await start_stack(settings, services=())
    try:
        assert stack.nats is not None and stack.nats.adopted
        assert processes_of("nats-server", settings.data_dir) == [pid]
        assert stack.settings.nats_url == f"nats://127.0.0.1:{port}"
        client = await DockyardClient.connect(settings)  # our identities, provisioned
        await client.close()
        record = read_record(settings.data_dir / RECORD_FILE)
        assert isinstance(record, ProcessRecord) and record.owner_pid == os.getpid()
        assert surviving_nats(settings.data_dir) == record
    finally:
        await stack.stop()
    assert processes_of("nats-server", settings.data_dir) == []


async def test_a_bus_that_died_too_comes_back_on_the_recorded_port(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True)
    port = free_port()
    write_url(settings.data_dir, f"nats://127.0.0.1:{port}")  # nothing runs there
    stack = await start_stack(settings, services=())
    try:
        assert stack.nats is not None and not stack.nats.adopted
        assert stack.settings.nats_url == f"nats://127.0.0.1:{port}"
    finally:
        await stack.stop()


async def test_a_survivor_whose_url_record_is_gone_is_stopped_not_doubled(
        settings: Settings) -> None:
    killed_stack(settings)
    (old,) = processes_of("nats-server", settings.data_dir)
    (settings.data_dir / "nats.url").unlink()
    stack = await start_stack(settings, services=())
    try:
        assert processes_of("nats-server", settings.data_dir) == [stack.nats.record.pid]  # type: ignore[union-attr]
        assert old not in processes_of("nats-server", settings.data_dir)
    finally:
        await stack.stop()


async def test_an_adopted_bus_takes_the_identities_of_today(settings: Settings) -> None:
    killed_stack(settings, without="cli")
    (pid,) = processes_of("nats-server", settings.data_dir)
    stack = await start_stack(settings, services=())
    try:
        assert processes_of("nats-server", settings.data_dir) == [pid]  # reloaded, not replaced
        client = await DockyardClient.connect(settings)  # the identity it lacked
        await client.close()
    finally:
        await stack.stop()


async def test_replicas_without_a_cluster_are_refused_before_anything_starts(
        settings: Settings) -> None:
    """DOCKYARD_BUS_REPLICAS=3 with the embedded (single) bus: one clear error, no server."""
    with pytest.raises(StackError, match="DOCKYARD_BUS_REPLICAS=3 needs a NATS cluster"):
        await start_stack(replace(settings, bus_replicas=3))
    assert processes_of("nats-server", settings.data_dir) == []
    assert read_url(settings.data_dir) is None


async def test_a_client_cut_off_from_its_bus_closes_without_an_error(settings: Settings) -> None:
    # Found by CI: a client whose bus restarted was still reconnecting when the test closed it,
    # and nats-py's drain raised ConnectionReconnectingError, so the stack was never stopped.
    stack = await start_stack(settings, services=())
    try:
        client = await DockyardClient.connect(stack.settings)
        assert stack.nats is not None
        stack.nats.stop()
        await until(lambda: client.nc.is_reconnecting or client.nc.is_closed)
        await client.close()
        assert client.nc.is_closed
        await client.close()  # twice is harmless
    finally:
        await stack.stop()

"""The nats-server restarted while a postdeploy runs: the command, finished while the bus was
down, is not run again; the deploy ends succeeded once the bus is back; and the services'
consumers resume without a restart of any service (the next deploy goes through)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from dockyard.bus.embedded import start_nats
from dockyard.client import DockyardClient, Followers
from dockyard.contract.events import DeploySucceeded
from dockyard.stack import identities
from tests.e2e.apps import make_app
from tests.e2e.conftest import start_running, stop_running
from tests.e2e.recovery_support import serves
from tests.runtime.process_support import reachable_tmp, remove

WAIT = 180


async def _until(check: object, what: str, within: float = 60.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        await asyncio.sleep(0.1)


async def test_a_postdeploy_finishing_while_nats_is_down_runs_once_and_the_deploy_ends(
        tmp_path: Path) -> None:
    running = await start_running(tmp_path, "process")
    shared = reachable_tmp("dockyard-natsrestart-")
    shared.chmod(0o1777)
    ledger, gate = shared / "ledger", shared / "gate"
    client: DockyardClient | None = None
    try:
        app = running.app_name("survivor")
        v1 = await running.client.deploy(app, make_app(tmp_path / "v1", "process", "v1"),
                                         Followers(), wait=WAIT)
        assert isinstance(v1, DeploySucceeded), v1
        postdeploy = (f"echo start >> {ledger}; while [ ! -e {gate} ]; do sleep 0.1; done; "
                      f"echo end >> {ledger}")
        cmd = await running.client.request_deploy(
            app, make_app(tmp_path / "v2", "process", "v2", postdeploy=postdeploy))

        async def lines(*want: str) -> bool:
            return ledger.exists() and ledger.read_text().split() == list(want)  # noqa: ASYNC240

        await _until(lambda: lines("start"), "the postdeploy started", WAIT)
        nats = running.stack.nats
        assert nats is not None
        nats.stop()
        gate.touch()  # noqa: ASYNC240 - the command ends while the bus is down
        await _until(lambda: lines("start", "end"), "the postdeploy ended")
        running.stack.nats = await asyncio.to_thread(
            start_nats, running.settings.data_dir, identities(), port=nats.port,
            keys_dir=running.settings.keys_dir)

        # The deploy ends: a new client (the test's own was cut off) follows it to its end.
        client = await DockyardClient.connect(running.settings)
        end = await client.follow(app, cmd.deployment_id, Followers(), wait=WAIT)
        assert isinstance(end, DeploySucceeded), end
        assert await serves(running.port, app, "v2")
        assert ledger.read_text().split() == ["start", "end"], "the postdeploy ran again"

        # No service was restarted: their consumers resumed on the restarted server.
        v3 = await client.deploy(app, make_app(tmp_path / "v3", "process", "v3"), Followers(),
                                 wait=WAIT)
        assert isinstance(v3, DeploySucceeded), v3
        await _until(lambda: serves(running.port, app, "v3"), "v3 serves")
    finally:
        if client is not None:
            await client.close()
        await stop_running(running)
        remove(shared)

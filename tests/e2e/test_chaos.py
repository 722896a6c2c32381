"""Chaos: each of the six services (its own OS process) and the nats-server is killed with
SIGKILL at a random point of a deploy, then started again. Checked from a hook ledger, the events
and router polls: every deploy ends, and succeeds; no release or postdeploy command runs twice or
overlaps another; traffic never reaches a release whose postdeploy had not passed, and no request
fails; the lock is free after each deploy.

In CI each target is killed once (DOCKYARD_CHAOS_TRIALS=1, a few minutes). The longer run whose
results the README records: `DOCKYARD_CHAOS_TRIALS=10 .venv/bin/pytest -s tests/e2e/test_chaos.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from dockyard.bus.embedded import start_nats
from dockyard.bus.service import SERVICES
from dockyard.client import DockyardClient, Followers
from dockyard.contract.events import DeploySucceeded
from dockyard.stack import identities
from tests.e2e.apps import make_app
from tests.e2e.conftest import Running, start_running, stop_running
from tests.e2e.phase_support import assert_lock_free
from tests.e2e.recovery_support import (
    DOCKYARD,
    Poller,
    check_ledger,
    end_left_running,
    ledger_hook,
)
from tests.runtime.process_support import reachable_tmp, remove

TARGETS = (*SERVICES, "nats-server")
TRIALS = int(os.environ.get("DOCKYARD_CHAOS_TRIALS", "1"))
SEED = int(os.environ.get("DOCKYARD_CHAOS_SEED", str(random.randrange(1 << 30))))
ACK_WAIT = "3"
WAIT = 240.0


class Services:
    """The six services as processes of their own, each restartable."""

    def __init__(self, running: Running, logs: Path) -> None:
        self.running = running
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def env(self) -> dict[str, str]:
        s = self.running.settings
        return {**os.environ, "DOCKYARD_NATS_URL": s.nats_url, "DOCKYARD_DATA_DIR": str(s.data_dir),
                "DOCKYARD_APPS_DIR": str(s.apps_root), "DOCKYARD_RUNTIME": self.running.runtime,
                "DOCKYARD_HTTP_PORT": str(s.http_port), "DOCKYARD_ACK_WAIT": ACK_WAIT,
                "DOCKYARD_KILL_GRACE": "2", "DOCKYARD_DRAIN": "0.5",
                "DOCKYARD_LOG_LEVEL": "WARNING"}

    def start(self, name: str) -> None:
        with (self.logs / f"{name}.log").open("ab") as out:
            self.procs[name] = subprocess.Popen([DOCKYARD, "service", name], env=self.env(),
                                                stdin=subprocess.DEVNULL, stdout=out,
                                                stderr=out)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


async def _kill_and_restart(target: str, running: Running, services: Services,
                            rng: random.Random) -> None:
    await asyncio.sleep(rng.uniform(0.0, 3.0))  # the random point of the deploy
    if target == "nats-server":
        nats = running.stack.nats
        assert nats is not None and nats.process is not None
        nats.process.send_signal(signal.SIGKILL)
        nats.process.wait(10)
        await asyncio.sleep(rng.uniform(0.0, 1.0))
        running.stack.nats = await asyncio.to_thread(
            start_nats, running.settings.data_dir, identities(), port=nats.port,
            keys_dir=running.settings.keys_dir)
    else:
        services.kill(target)
        await asyncio.sleep(rng.uniform(0.0, 1.0))
        services.start(target)


@pytest.mark.timeout(90 * TRIALS * len(TARGETS) + 120)  # the long run lasts longer than 300 s
async def test_killing_each_service_and_the_bus_mid_deploy_breaks_no_promise(
        tmp_path: Path) -> None:
    rng = random.Random(SEED)
    running = await start_running(tmp_path, "process", services=(), ack_wait=float(ACK_WAIT))
    services = Services(running, tmp_path)
    shared = reachable_tmp("dockyard-chaos-")
    shared.chmod(0o1777)
    ledger = shared / "ledger"
    ledger.touch()
    ledger.chmod(0o666)
    poller: Poller | None = None
    outcomes: Counter[str] = Counter()
    try:
        for name in SERVICES:
            services.start(name)
        app = running.app_name("chaos")
        client = await DockyardClient.connect(running.settings)
        try:
            first = await client.deploy(app, make_app(tmp_path / "v0", "process", "v0"),
                                        Followers(), wait=WAIT)
        finally:
            await client.close()
        assert isinstance(first, DeploySucceeded), first
        poller = Poller(running.port, app).start()
        await poller.polled(3)
        plan = [target for _ in range(TRIALS) for target in TARGETS]
        rng.shuffle(plan)
        for k, target in enumerate(plan, start=1):
            src = make_app(tmp_path / f"v{k}", "process", f"v{k}",
                           release=ledger_hook(ledger, f"release-{k}", 0.5),
                           postdeploy=ledger_hook(ledger, f"postdeploy-{k}", 1.0))
            client = await DockyardClient.connect(running.settings)
            try:
                cmd = await client.request_deploy(app, src)
            finally:
                await client.close(at_once=True)
            await _kill_and_restart(target, running, services, rng)
            client = await DockyardClient.connect(running.settings)
            try:
                end = await client.follow(app, cmd.deployment_id, Followers(), wait=WAIT)
            finally:
                await client.close()
            assert isinstance(end, DeploySucceeded), (target, k, SEED, end)
            outcomes[target] += 1
            await poller.polled(3)
            assert poller.answers[-1] == f"200 app v{k}", (target, k, poller.answers[-3:])
            await assert_lock_free(running, app)
            check_ledger(ledger.read_text().split("\n")[:-1])
        answers = await poller.stop()
        versions = [int(m.group(1)) for a in answers if (m := re.fullmatch(r"200 app v(\d+)", a))]
        print(f"chaos seed {SEED}: kills {dict(outcomes)}; {len(answers)} requests, "
              f"{len(answers) - len(versions)} failed; ledger: "
              f"{len(ledger.read_text().splitlines()) // 2} commands, each once")
        assert len(versions) == len(answers), [a for a in answers if not a.startswith("200")]
        assert versions == sorted(versions), "an older release answered after a newer one"
    finally:
        if poller is not None and poller.running:
            await poller.stop()
        services.stop_all()
        try:
            # The stack's own client may have given up while the bus was down: a fresh one.
            with contextlib.suppress(Exception):
                await running.client.close(at_once=True)
                running.client = await DockyardClient.connect(running.settings)
            await stop_running(running)
        finally:
            remove(shared)
            # Whatever a failure above left (a router killed last leaves its Caddy on purpose).
            left = end_left_running(running.settings.data_dir)
    assert left == {}

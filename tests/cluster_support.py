"""Provisioning a NATS cluster that has just started: JetStream answers only once the nodes
have elected a leader, so the first attempts are refused."""

from __future__ import annotations

import asyncio
import time

import nats

from dockyard.settings import Settings
from dockyard.stack import StackError, provision_as_admin


async def provision_when_ready(settings: Settings, replicas: int | None = None,
                               within: float = 60.0) -> None:
    """Provision as admin (with `replicas`, default the settings'), retrying until the cluster
    has a JetStream leader; the last refusal is raised after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            await provision_as_admin(settings, replicas)
            return
        except (StackError, nats.errors.Error):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)

"""Helpers of the manifest, config, logs, first-deploy and example e2e tests:
the CLI as a user runs it."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.client import Followers
from dockyard.contract.events import AnyEvent, DeployFailed, DeploySucceeded, LogLine
from dockyard.state.locks import open_locks
from tests.e2e.conftest import Running

DOCKYARD = str(Path(sys.executable).parent / "dockyard")
DEPLOYMENT = re.compile(r"\(deployment ([0-9a-z]+)\)")


def cli_env(running: Running) -> dict[str, str]:
    """The environment a user has: the stack's data dir, a wide terminal (no wrapped tables)."""
    return {**os.environ, "DOCKYARD_DATA_DIR": str(running.settings.data_dir),
            "DOCKYARD_HTTP_PORT": str(running.port), "COLUMNS": "400", "NO_COLOR": "1"}


async def cli(running: Running, *args: str,
              time_limit: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `dockyard ARGS...` as a subprocess against the running stack."""
    return await asyncio.to_thread(subprocess.run, [DOCKYARD, *args], env=cli_env(running),
                                   capture_output=True, text=True, timeout=time_limit)


def deployment_of(output: str) -> str:
    """The deployment id `dockyard deploy` printed at its end."""
    found: list[str] = DEPLOYMENT.findall(output)
    assert found, output
    return found[-1]


@dataclass
class Deployed:
    """A followed deploy: its end and everything printed on the way."""

    end: DeploySucceeded | DeployFailed
    lines: list[LogLine] = field(default_factory=list)

    @property
    def out(self) -> list[str]:
        """What the commands printed (stdout and stderr), in order."""
        return [line.text for line in self.lines if line.stream != "system"]

    @property
    def system(self) -> list[str]:
        """Dockyard's own lines (headings, plan notes, outcomes)."""
        return [line.text for line in self.lines if line.stream == "system"]

    @property
    def text(self) -> list[str]:
        """Every line."""
        return [line.text for line in self.lines]


async def deploy(running: Running, app: str, src: Path | None, *, kind: str = "source",
                 wait: float = 240) -> Deployed:
    """Deploy through the client library and keep every log line."""
    lines: list[LogLine] = []

    async def on_line(line: LogLine) -> None:
        lines.append(line)

    end = await running.client.deploy(app, src, Followers(on_line=on_line), kind=kind,
                                      wait=wait)
    await asyncio.sleep(0.3)  # the last lines of the log
    return Deployed(end=end, lines=lines)


async def events_of(running: Running, app: str, deployment_id: str | None = None) -> list[AnyEvent]:
    """The app's events so far (of one deployment if given)."""
    found = await running.client.events(app)
    return [e for e in found if deployment_id is None or e.deployment_id == deployment_id]


async def lock_holder(running: Running, app: str) -> str | None:
    """The deployment holding the app's lock (the dockyard_locks bucket), if any."""
    return await (await open_locks(await running.js_as("builder"), "test")).holder(app)


async def wait_lock_free(running: Running, app: str, within: float = 10.0) -> str | None:
    """Wait (bounded) for the app's lock to be gone; returns the holder if it never went."""
    deadline = time.monotonic() + within
    holder = await lock_holder(running, app)
    while holder is not None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        holder = await lock_holder(running, app)
    return holder


def index_of(lines: list[str], needle: str) -> int:
    """Index of the first line containing needle (fails the test when absent)."""
    for i, line in enumerate(lines):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in:\n" + "\n".join(lines))


def cells(row: str) -> list[str]:
    """The cells of one row of a table the CLI printed: tab-separated into a pipe (as tests
    read it), boxed on a terminal."""
    if "\t" in row:
        return row.split("\t")
    return [c.strip() for c in row.strip().strip("│┃").split("│")]

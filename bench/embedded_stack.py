"""The embedded stack a benchmark deploys one app to (process runtime, no drain), with a client;
the app's instances, files and user, and the stack, are removed when the block ends."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from dockyard.bus.embedded import free_port
from dockyard.client import DockyardClient
from dockyard.runtime.select import Runtimes
from dockyard.settings import Settings
from dockyard.stack import Stack, start_stack


@dataclass
class Bench:
    app: str  # a name of the bench's own: the process runtime's app user is named after it
    work: Path
    settings: Settings
    stack: Stack
    client: DockyardClient


@contextlib.asynccontextmanager
async def bench_stack(app: str) -> AsyncIterator[Bench]:
    work = Path(tempfile.mkdtemp(prefix=f"bench-{app}-"))
    os.chmod(work, 0o755)  # the apps' own users reach their apps dir under it
    try:
        settings = Settings.from_env(env={}, data_dir=work / "data", http_port=free_port(),
                                     runtime="process", drain=0.0, kill_grace=2.0)
        stack = await start_stack(settings)
        try:
            client = await DockyardClient.connect(stack.settings)
            try:
                yield Bench(app, work, settings, stack, client)
            finally:
                await client.close()
                runtimes = Runtimes(stack.settings)
                rt = await runtimes.get("process")
                for ref in await rt.list_instances(app):
                    await rt.stop_instance(ref, 2.0)
                await rt.remove_app(app)
                await runtimes.close()
        finally:
            await stack.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

"""Shipping the running instances' own output to the bus, where `dockyard logs APP` reads it.

Every live app's instances are looked at every few seconds; each one's output (the process
runtime's output file, a container's log) is followed by lines and published, redacted with
its release's config and cut, on dockyard.applog.<app>.<process>.<instance>. Each line carries
the runtime's cursor after it (a byte offset, a container log time), so after a restart the
shipping of an instance goes on from its last published line; a line published twice (two
schedulers, a restart within the window) has the same message id and is dropped once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import structlog
from nats.aio.client import Client

from dockyard.bus.logs import Redactor, cut
from dockyard.contract import codec, subjects
from dockyard.contract.events import AppLogLine, InstanceRef
from dockyard.runtime.base import OutputLine, Runtime
from dockyard.runtime.select import Runtimes
from dockyard.state.config import ConfigReader
from dockyard.state.routes import RouteReader

log = structlog.get_logger()

# Where each line's cursor travels (the header the next shipping of the instance reads).
CURSOR_HEADER = "Dockyard-Output-Cursor"
# A line of an instance's output is cut here once redacted.
APPLOG_LINE_BYTES = 16 * 1024
# How often the live apps' instances are listed.
LOOK_EVERY = 2.0


def applog_line(app: str, ref: InstanceRef, line: OutputLine, redact: Redactor) -> AppLogLine:
    """The bus line of one line of an instance's output: redacted, then cut."""
    return AppLogLine(app=app, process=ref.process, instance=ref.id, release=ref.release,
                      text=cut(redact(line.text), APPLOG_LINE_BYTES),
                      stream="err" if line.stream == "err" else "out")


def msg_id(ref: InstanceRef, line: OutputLine) -> str:
    """A line's message id: the same each time the same line is shipped."""
    return f"{ref.id}:{line.cursor}"


class AppLogShipper:
    """Follows every live app's instances' output into DOCKYARD_APPLOGS."""

    def __init__(self, nc: Client, routes: RouteReader, config: ConfigReader,
                 runtimes: Runtimes, every: float = LOOK_EVERY) -> None:
        self.nc = nc
        self.routes = routes
        self.config = config
        self.runtimes = runtimes
        self.every = every
        self.tails: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        """Look, then look again every `every` seconds, until cancelled."""
        try:
            while True:
                try:
                    await self.look()
                except Exception:  # a bus or runtime hiccup: look again next time
                    log.warning("instances' output not looked at", exc_info=True)
                await asyncio.sleep(self.every)
        finally:
            await self.close()

    async def look(self) -> None:
        """Start following each new instance; stop following those gone."""
        seen: set[str] = set()
        for app, live in (await self.routes.all_live()).items():
            runtime = await self.runtimes.get(live.spec.runtime)
            refs = await runtime.list_instances(app)
            if not refs:
                continue
            values: Mapping[str, str] | None = None
            for ref in refs:
                key = f"{app}/{ref.id}"
                seen.add(key)
                if key in self.tails and not self.tails[key].done():
                    continue
                if values is None:
                    values = await self.config.at_version(app, live.spec.config_version)
                self.tails[key] = asyncio.create_task(
                    self.ship(runtime, app, ref, Redactor(values)))
        for key in set(self.tails) - seen:
            self.tails.pop(key).cancel()

    async def ship(self, runtime: Runtime, app: str, ref: InstanceRef, redact: Redactor) -> None:
        """Publish one instance's output, from its last published line on."""
        subject = subjects.applog(app, ref.process, ref.id)
        try:
            async for line in runtime.follow_output(app, ref, await self._cursor(subject)):
                await self.nc.publish(subject, codec.encode(applog_line(app, ref, line, redact)),
                                      headers={CURSOR_HEADER: line.cursor,
                                               "Nats-Msg-Id": msg_id(ref, line)})
        except asyncio.CancelledError:
            raise
        except Exception:  # the next look starts it again, from its last line
            log.warning("instance output not followed", app=app, instance=ref.id,
                        exc_info=True)

    async def _cursor(self, subject: str) -> str | None:
        """Where the instance's shipping stopped: its last line's cursor (None: its start)."""
        try:
            last = await self.nc.jetstream().get_last_msg(subjects.STREAM_APPLOGS, subject)
        except Exception:  # none yet, or not readable: from its start
            return None
        return (last.headers or {}).get(CURSOR_HEADER)

    async def close(self) -> None:
        """Stop following every instance."""
        tails, self.tails = list(self.tails.values()), {}
        for task in tails:
            task.cancel()
        for task in tails:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

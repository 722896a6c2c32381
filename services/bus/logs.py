"""Deploy output: lines published live on dockyard.log.<deployment_id>, kept by JetStream, redacted."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from nats.aio.client import Client

from dockyard.schemas import codec, subjects
from dockyard.schemas.events import TAIL_LINES, LogLine

REDACTED = "[REDACTED]"
# Shorter values ("1", "on", "no") are not secrets and would shred every line they occur in.
MIN_SECRET_LENGTH = 3


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every config value (longest first) with [REDACTED]."""
    for value in sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def heading(phase: str) -> str:
    """The heading that opens a phase's section of the deploy log."""
    return f"===== {phase} ====="


def subheading(label: str, index: int, total: int) -> str:
    """The heading that opens one command's section."""
    return f"----- {label} ({index}/{total}) -----"


class DeployLog:
    """A LogSink publishing one deployment's lines; keeps the last 100 for failure events."""

    def __init__(self, nc: Client, app: str, deployment_id: str, source: str,
                 secrets: Iterable[str] = ()) -> None:
        self.nc = nc
        self.app = app
        self.deployment_id = deployment_id
        self.source = source
        self.secrets = [s for s in secrets if s]
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.subject = subjects.log(deployment_id)

    async def line(self, text: str, stream: str = "out") -> None:
        """Publish one line (core publish: the LOGS stream keeps it without a round trip per line)."""
        clean = redact(text.rstrip("\n"), self.secrets)
        self.tail.append(clean)
        msg = LogLine(deployment_id=self.deployment_id, app=self.app, text=clean,
                      stream=stream if stream in ("out", "err", "system") else "out",  # type: ignore[arg-type]
                      source=self.source)
        await self.nc.publish(self.subject, codec.encode(msg))

    async def system(self, text: str) -> None:
        """A line written by Dockyard itself (headings, outcomes)."""
        await self.line(text, "system")

    def take_tail(self) -> list[str]:
        """The last lines written, and start a fresh tail (one per command)."""
        lines = list(self.tail)
        self.tail.clear()
        return lines

    async def flush(self) -> None:
        """Make sure every line reached the server."""
        await self.nc.flush()

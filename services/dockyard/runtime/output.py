"""Reading an instance's output by lines, with a cursor to go on from: pure parts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from dockyard.runtime.base import OutputLine

# A line longer than this is cut into pieces of this size (the bus line is cut further).
MAX_LINE = 64 * 1024
# How much of an output file is read at once.
CHUNK = 256 * 1024


def file_cursor(cursor: str | None) -> int:
    """The byte offset a process instance's output goes on from (0: its start)."""
    return int(cursor) if cursor and cursor.isdigit() else 0


def complete_lines(pending: bytes, data: bytes, end: int,
                   max_line: int = MAX_LINE) -> tuple[list[OutputLine], bytes]:
    """The whole lines of `pending + data`, which ends at byte offset `end` of the output,
    each with the offset after it as its cursor; and what is left of an unfinished line."""
    buf = pending + data
    start = end - len(buf)
    lines: list[OutputLine] = []
    pos = 0
    while True:
        newline = buf.find(b"\n", pos)
        if newline < 0:
            if len(buf) - pos <= max_line:
                break
            newline = pos + max_line  # too long: its first piece is a line of its own
            lines.append(OutputLine(text=buf[pos:newline].decode(errors="replace"),
                                    cursor=str(start + newline)))
            pos = newline
            continue
        lines.append(OutputLine(text=buf[pos:newline].decode(errors="replace").rstrip("\r"),
                                cursor=str(start + newline + 1)))
        pos = newline + 1
    return lines, buf[pos:]


def read_from(path: Path, offset: int, size: int = CHUNK) -> bytes | None:
    """Up to `size` bytes of a file from `offset`; b"" when there is nothing new (or no file
    yet); None when the file is shorter than `offset` (it was truncated: start again)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            if fh.tell() < offset:
                return None
            fh.seek(offset)
            return fh.read(size)
    except FileNotFoundError:
        return b""


def docker_line(raw: str) -> tuple[int, str] | None:
    """(nanoseconds since the epoch, text) of a line docker gave with `timestamps`
    (`2026-01-02T03:04:05.123456789Z text`); None if it has no timestamp."""
    stamp, _, text = raw.partition(" ")
    if len(stamp) < 20 or not stamp.endswith("Z"):
        return None
    whole, _, fraction = stamp[:-1].partition(".")
    try:
        seconds = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    nanos = int((fraction + "000000000")[:9]) if fraction.isdigit() else 0
    return int(seconds.timestamp()) * 1_000_000_000 + nanos, text.rstrip("\r")


async def chunk_lines(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    """The whole lines of a stream of text chunks (an engine's log), the last one unended too."""
    pending = ""
    async for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split("\n")
        for line in lines:
            yield line
    if pending:
        yield pending


async def timed_lines(chunks: AsyncIterator[str], after: int) -> AsyncIterator[OutputLine]:
    """An engine log with timestamps, by lines written after `after` (ns since the epoch)."""
    async for raw in chunk_lines(chunks):
        found = docker_line(raw)
        if found is not None and found[0] > after:
            yield OutputLine(text=found[1], cursor=str(found[0]))

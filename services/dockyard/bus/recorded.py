"""A helper process recorded in the data dir (pid, start time, owner), so that a start after a
crash finds what survived it: adopt it, or stop exactly that process and no other.

A pid alone can be reused by an unrelated process; a pid with its start time (clock ticks since
boot, /proc/PID/stat field 22) names one process for the life of the machine. Signals go through
a pidfd opened after that check, so the process checked is the process signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
from pathlib import Path

import msgspec


class ProcessRecord(msgspec.Struct, frozen=True):
    """Which process runs (pid and start time) and which process started or adopted it."""

    pid: int
    start_time: int
    owner_pid: int
    owner_start_time: int


def start_time(pid: int) -> int | None:
    """The start time of a live (not zombie) process, None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: fields follow its last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    state, started = fields[0], fields[19]
    return None if state in ("Z", "X") else int(started)


def command_line(pid: int) -> list[str]:
    """A process's arguments ([] when it is gone or not readable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [os.fsdecode(arg) for arg in raw.split(b"\0") if arg]


def is_running(pid: int, started: int) -> bool:
    """Whether the process with this pid is still the one that started at `started`."""
    return pid > 0 and start_time(pid) == started


def record_for(pid: int) -> ProcessRecord:
    """A record of pid, owned by this process."""
    me = os.getpid()
    return ProcessRecord(pid=pid, start_time=start_time(pid) or 0, owner_pid=me,
                         owner_start_time=start_time(me) or 0)


def owner_alive(record: ProcessRecord) -> bool:
    """Whether the process that started or last adopted the recorded one still runs."""
    return is_running(record.owner_pid, record.owner_start_time)


def write_record(path: Path, record: ProcessRecord) -> None:
    """Write the record (0600), replacing any earlier one in one rename."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(msgspec.json.encode(record))
    os.replace(tmp, path)


def read_record(path: Path) -> ProcessRecord | None:
    """The record at path; None when missing or unreadable (a torn write counts as none)."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=ProcessRecord)
    except (FileNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def forget(path: Path, pid: int) -> None:
    """Remove the record if it still names pid (a newer one written by another start stays)."""
    record = read_record(path)
    if record is not None and record.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def survivor(path: Path, ours: str) -> ProcessRecord | None:
    """The recorded process if it still runs and its command line holds `ours` (a path of our
    data dir), else None."""
    record = read_record(path)
    if record is None or not is_running(record.pid, record.start_time):
        return None
    if not any(ours in arg for arg in command_line(record.pid)):
        return None
    return record


def _pidfd(record: ProcessRecord) -> int | None:
    """A pidfd of the recorded process, or None when it is gone (or the pid names another)."""
    try:
        fd = os.pidfd_open(record.pid)
    except ProcessLookupError:
        return None
    if not is_running(record.pid, record.start_time):  # checked after opening: no race
        os.close(fd)
        return None
    return fd


def _signal(fd: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(fd, sig)


def stop_sync(record: ProcessRecord, grace: float = 10.0) -> None:
    """SIGTERM the recorded process, SIGKILL it after grace; return once it is gone."""
    fd = _pidfd(record)
    if fd is None:
        return
    try:
        _signal(fd, signal.SIGTERM)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        # Readable once it has exited (a zombie until its parent, init or a subreaper, reaps it).
        if not poller.poll(int(grace * 1000)):
            _signal(fd, signal.SIGKILL)
            poller.poll()
    finally:
        os.close(fd)


async def stop(record: ProcessRecord, grace: float = 10.0) -> None:
    """SIGTERM the recorded process, SIGKILL it after grace; return once it is gone."""
    fd = _pidfd(record)
    if fd is None:
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, readable)
    try:
        _signal(fd, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), grace)
        except TimeoutError:
            _signal(fd, signal.SIGKILL)
            await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)


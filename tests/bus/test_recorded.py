"""Recorded helper processes: a pid with its start time names one process; stopping signals
exactly that process; a record is replaced whole and forgotten only by the process it names."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dockyard.bus import recorded
from dockyard.bus.recorded import ProcessRecord


def sleeper() -> subprocess.Popen[bytes]:
    """A process in its own session, as nats-server and Caddy run, once its arguments show.

    Popen returns when the child's exec has begun; its /proc cmdline is empty until the kernel
    has set the new program's arguments up, a moment later (on a busy machine, long enough
    for a check to read it empty)."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    deadline = time.monotonic() + 10
    while recorded.command_line(proc.pid) != ["sleep", "60"]:
        assert time.monotonic() < deadline, "sleep never showed its arguments"
        time.sleep(0.01)
    return proc


def test_a_pid_with_its_start_time_names_one_process() -> None:
    proc = sleeper()
    try:
        started = recorded.start_time(proc.pid)
        assert started is not None
        assert recorded.is_running(proc.pid, started)
        assert not recorded.is_running(proc.pid, started + 1)  # the pid, reused by another
        assert recorded.command_line(proc.pid) == ["sleep", "60"]
    finally:
        proc.kill()
        proc.wait()
    assert not recorded.is_running(proc.pid, started)
    assert recorded.start_time(proc.pid) is None
    assert recorded.command_line(proc.pid) == []


def test_a_zombie_counts_as_gone() -> None:
    proc = sleeper()
    started = recorded.start_time(proc.pid)
    assert started is not None
    proc.kill()
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    try:
        assert not recorded.is_running(proc.pid, started)
    finally:
        proc.wait()


def test_records_are_written_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    mine = recorded.record_for(os.getpid())
    recorded.write_record(path, mine)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert recorded.read_record(path) == mine
    assert recorded.owner_alive(mine)
    path.write_text('{"pid": 1')  # torn
    assert recorded.read_record(path) is None
    assert recorded.read_record(tmp_path / "missing.json") is None


def test_forget_leaves_a_newer_record(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    recorded.write_record(path, ProcessRecord(pid=2, start_time=1, owner_pid=1,
                                              owner_start_time=1))
    recorded.forget(path, 3)
    assert path.exists()
    recorded.forget(path, 2)
    assert not path.exists()


def test_survivor_is_only_a_live_process_whose_arguments_name_ours(tmp_path: Path) -> None:
    proc = sleeper()
    path = tmp_path / "x.json"
    try:
        recorded.write_record(path, recorded.record_for(proc.pid))
        assert recorded.survivor(path, "60") is not None
        assert recorded.survivor(path, str(tmp_path)) is None  # someone else's process
    finally:
        proc.kill()
        proc.wait()
    assert recorded.survivor(path, "60") is None


IGNORES_SIGTERM = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                   "print('ready', flush=True); time.sleep(60)")


@pytest.mark.parametrize("ignores_sigterm", [False, True])
def test_stop_sync_ends_the_process_sigkill_after_grace(ignores_sigterm: bool) -> None:
    proc = subprocess.Popen([sys.executable, "-c", IGNORES_SIGTERM] if ignores_sigterm
                            else ["sleep", "60"], start_new_session=True, stdout=subprocess.PIPE)
    if ignores_sigterm:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    record = recorded.record_for(proc.pid)
    try:
        recorded.stop_sync(record, grace=0.5)
        assert proc.wait(5) == (-9 if ignores_sigterm else -15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def test_stop_waits_for_the_exit_without_blocking_the_loop() -> None:
    proc = await asyncio.create_subprocess_exec("sleep", "60", start_new_session=True)
    record = recorded.record_for(proc.pid)
    await recorded.stop(record, grace=5)
    assert await asyncio.wait_for(proc.wait(), 5) == -15
    await recorded.stop(record)  # gone: nothing to signal, no error

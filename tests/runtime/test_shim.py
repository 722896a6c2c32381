"""The shim: a real supervisor process started as the runtime starts it, on real commands."""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from dockyard.runtime import base, runs
from dockyard.runtime.shim import (
    GRACE_FILE,
    PID_FILE,
    SPEC_FILE,
    STATUS_FILE,
    TIMEOUT_EXIT_CODE,
    ShimPid,
    ShimSpec,
    ShimStatus,
    descendants,
    proc_stat,
    write_atomic,
)
from dockyard.runtime.users import ensure_user, remove_user
from tests.runtime.process_support import (
    gone,
    marked_processes,
    reachable_tmp,
    remove,
    require_root,
    until,
)

MIB = 1024 * 1024
PY = sys.executable


@pytest.fixture
def mark() -> Iterator[str]:
    """A value every command's env carries; at the end no process may still carry it."""
    value = uuid.uuid4().hex
    yield value
    leftovers = marked_processes(value)
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert leftovers == [], "processes outlived the test"


def spec(run_dir: Path, command: str, mark: str, **kw: object) -> ShimSpec:
    fields: dict[str, object] = {
        "argv": ["/bin/sh", "-c", command], "cwd": str(run_dir),
        "env": {"PATH": os.defpath, "DOCKYARD_TEST_MARK": mark},
        "stdout": str(run_dir / runs.STDOUT), "stderr": str(run_dir / runs.STDERR),
        "timeout": 30.0, "kill_grace": 2.0}
    fields.update(kw)
    return ShimSpec(**fields)  # type: ignore[arg-type]


def start(run_dir: Path, shim_spec: ShimSpec) -> subprocess.Popen[bytes]:
    """The shim as the runtime starts it: its own session, the spec in the run dir."""
    runs.write_spec(run_dir, shim_spec)
    return subprocess.Popen(runs.shim_argv(run_dir, None), cwd=run_dir, env=runs.SHIM_ENV,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def start_and_die(run_dir: Path) -> int:
    """A parent that starts the shim and is killed at once: the shim goes on alone."""
    starter = subprocess.Popen(
        [PY, "-c", "import subprocess, sys, time; "
                   f"p = subprocess.Popen({runs.shim_argv(run_dir, None)!r}, "
                   "start_new_session=True, stdin=subprocess.DEVNULL); "
                   "print(p.pid, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE)
    assert starter.stdout is not None
    shim_pid = int(starter.stdout.readline())
    starter.kill()
    starter.wait()
    starter.stdout.close()
    return shim_pid


async def finished(run_dir: Path, shim: subprocess.Popen[bytes],
                   within: float = 30.0) -> ShimStatus:
    """Wait for the shim to end; its status."""
    assert await until(lambda: shim.poll() is not None, within), "the shim did not end"
    assert shim.returncode == 0
    status = runs.read_status(run_dir)
    assert status is not None, "no status written"
    return status


def out(run_dir: Path, name: str = runs.STDOUT) -> list[str]:
    return (run_dir / name).read_text().splitlines()


def value(run_dir: Path, key: str) -> int:
    return next(int(t.split("=", 1)[1]) for t in out(run_dir) if t.startswith(f"{key}="))


# ---------------------------------------------------------------- values


def test_values_and_the_shared_timeout_code(tmp_path: Path) -> None:
    assert TIMEOUT_EXIT_CODE == base.TIMEOUT_EXIT_CODE == -128
    status = ShimStatus(exit_code=3, duration=1.5, timed_out=False, cancelled=True)
    assert msgspec.json.decode(msgspec.json.encode(status), type=ShimStatus) == status
    write_atomic(tmp_path / "f", b"one")
    write_atomic(tmp_path / "f", b"two")
    assert (tmp_path / "f").read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # no temporary file left
    me = proc_stat(os.getpid())
    assert me is not None and me[0] in ("R", "S") and me[1] == os.getppid()
    assert proc_stat(2 ** 22 + 1) is None


def test_descendants_follow_children_of_children() -> None:
    sh = subprocess.Popen(["/bin/sh", "-c", "sleep 30 & sleep 30 & wait"])
    try:
        assert asyncio.run(until(lambda: len(descendants(sh.pid)) == 2))
        assert descendants(os.getpid()).count(sh.pid) == 1
    finally:
        for pid in descendants(sh.pid):
            os.kill(pid, signal.SIGKILL)
        sh.kill()
        sh.wait()


# ---------------------------------------------------------------- running a command


async def test_output_exit_code_duration_and_pid_file(tmp_path: Path, mark: str) -> None:
    shim = start(tmp_path, spec(tmp_path, "echo first; echo oops >&2; sleep 0.5; exit 7", mark))
    status = await finished(tmp_path, shim)
    assert status.exit_code == 7 and not status.timed_out and not status.cancelled
    assert 0.5 <= status.duration < 5
    assert out(tmp_path) == ["first"] and out(tmp_path, runs.STDERR) == ["oops"]
    pid = msgspec.json.decode((tmp_path / PID_FILE).read_bytes(), type=ShimPid)
    assert pid.pid == shim.pid and pid.child != shim.pid


async def test_it_runs_in_a_session_of_its_own(tmp_path: Path, mark: str) -> None:
    shim = start(tmp_path, spec(tmp_path, "sleep 0.2", mark))
    stat = proc_stat(shim.pid)
    assert stat is not None and stat[2] == shim.pid  # its own session: it outlives its parent
    await finished(tmp_path, shim)


async def test_what_the_command_leaves_behind_is_killed_even_a_new_session(
        tmp_path: Path, mark: str) -> None:
    # setsid: a new session and group; the double fork: reparented (to the shim, a subreaper).
    command = ("setsid sleep 1000 & echo setsid=$!; "
               "(sleep 1000 & echo orphan=$!) ; echo done")
    shim = start(tmp_path, spec(tmp_path, command, mark))
    status = await finished(tmp_path, shim)
    assert status.exit_code == 0
    assert gone(value(tmp_path, "setsid")) and gone(value(tmp_path, "orphan"))
    assert marked_processes(mark) == []


async def test_past_its_timeout_the_tree_gets_sigterm_then_sigkill(
        tmp_path: Path, mark: str) -> None:
    command = "trap '' TERM; sleep 1000 & echo child=$!; echo self=$$; while :; do sleep 0.1; done"
    began = time.monotonic()
    shim = start(tmp_path, spec(tmp_path, command, mark, timeout=0.5, kill_grace=1.0))
    status = await finished(tmp_path, shim)
    assert status.exit_code == TIMEOUT_EXIT_CODE and status.timed_out and not status.cancelled
    assert 1.5 <= time.monotonic() - began < 8
    assert gone(value(tmp_path, "self")) and gone(value(tmp_path, "child"))


async def test_sigterm_to_the_shim_is_a_cancel_and_sigusr1_kills_at_once(
        tmp_path: Path, mark: str) -> None:
    term = tmp_path / "term"
    term.mkdir()
    shim = start(term, spec(term, "echo self=$$; sleep 1000", mark))
    assert await until(lambda: (term / PID_FILE).exists())
    shim.send_signal(signal.SIGTERM)
    status = await finished(term, shim)
    assert status.cancelled and not status.timed_out and status.exit_code == TIMEOUT_EXIT_CODE
    assert status.duration < 2  # sleep dies of SIGTERM: no wait for the grace

    kill = tmp_path / "kill"
    kill.mkdir()
    shim = start(kill, spec(kill, "trap '' TERM; echo self=$$; while :; do sleep 0.1; done",
                            mark, kill_grace=60.0))
    assert await until(lambda: (kill / PID_FILE).exists())
    (kill / GRACE_FILE).write_text("30\n")
    shim.send_signal(signal.SIGTERM)  # ignored by the command: SIGKILL would come in 30 s
    await asyncio.sleep(0.3)
    assert shim.poll() is None
    shim.send_signal(signal.SIGUSR1)
    status = await finished(kill, shim, within=5)
    assert status.cancelled and status.exit_code == TIMEOUT_EXIT_CODE
    assert gone(value(kill, "self"))


async def test_the_stop_grace_comes_from_the_grace_file(tmp_path: Path, mark: str) -> None:
    shim = start(tmp_path, spec(tmp_path, "trap '' TERM; while :; do sleep 0.1; done", mark,
                                timeout=None, kill_grace=60.0))
    assert await until(lambda: (tmp_path / PID_FILE).exists())
    (tmp_path / GRACE_FILE).write_text("0.5\n")
    began = time.monotonic()
    shim.send_signal(signal.SIGTERM)
    status = await finished(tmp_path, shim)
    assert 0.5 <= time.monotonic() - began < 4
    assert status.cancelled


async def test_it_finishes_after_the_process_that_started_it_died(
        tmp_path: Path, mark: str) -> None:
    runs.write_spec(tmp_path, spec(tmp_path, "sleep 1; echo finished; exit 4", mark))
    shim_pid = start_and_die(tmp_path)
    assert await until(lambda: (tmp_path / STATUS_FILE).exists(), within=15)
    status = runs.read_status(tmp_path)
    assert status is not None and status.exit_code == 4
    assert out(tmp_path) == ["finished"]
    assert await until(lambda: gone(shim_pid))


async def test_a_command_that_cannot_start_is_exit_code_127_with_the_reason(
        tmp_path: Path, mark: str) -> None:
    shim = start(tmp_path, spec(tmp_path, "true", mark, cwd=str(tmp_path / "missing")))
    status = await finished(tmp_path, shim)
    assert status.exit_code == 127
    assert "could not start the command" in (tmp_path / runs.STDERR).read_text()


async def test_memory_limit(tmp_path: Path, mark: str) -> None:
    command = f"{PY} -c 'b = bytearray(600 * 1024 * 1024); print(len(b))'"
    small, big = tmp_path / "small", tmp_path / "big"
    small.mkdir()
    big.mkdir()
    limited = await finished(small, start(small, spec(small, command, mark, memory=256 * MIB)))
    assert limited.exit_code != 0 and "MemoryError" in (small / runs.STDERR).read_text()
    enough = await finished(big, start(big, spec(big, command, mark, memory=1024 * MIB)))
    assert enough.exit_code == 0 and out(big) == [str(600 * MIB)]


# ---------------------------------------------------------------- as the app's own user


@pytest.fixture
def app_user() -> Iterator[tuple[int, int, Path]]:
    """A fresh app user (root only), removed at the end; its uid, gid and a dir it can use."""
    require_root("the shim's user switch")
    app = f"shim-{uuid.uuid4().hex[:8]}"
    where = reachable_tmp("dockyard-shim-")
    user = ensure_user(app, where / "home", where / ".lock")
    os.chown(where, user.uid, user.gid)
    try:
        yield user.uid, user.gid, where
    finally:
        remove_user(app)
        remove(where)


async def test_as_the_app_user_without_groups_privileges_or_too_many_processes(
        app_user: tuple[int, int, Path], mark: str) -> None:
    uid, gid, where = app_user
    run_dir = reachable_tmp("dockyard-shim-run-")  # root's: the output files are root's
    try:
        command = ("id -u; id -g; id -G; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; "
                   "grep 'Max processes' /proc/self/limits; "
                   f"cat {run_dir / SPEC_FILE} 2>&1 || true")
        shim = start(run_dir, spec(run_dir, command, mark, cwd=str(where), uid=uid, gid=gid,
                                   nproc=77))
        status = await finished(run_dir, shim)
        assert status.exit_code == 0, (run_dir / runs.STDERR).read_text()
        lines = out(run_dir)
        assert lines[:3] == [str(uid), str(gid), str(gid)]  # setgroups([]): no root group
        assert lines[3].split() == ["CapEff:", "0000000000000000"]
        assert lines[4].split() == ["NoNewPrivs:", "1"]
        assert lines[5].split()[2:4] == ["77", "77"]
        assert "Permission denied" in lines[6]  # the spec (the app's config) is root's
        docker = [g.gr_gid for g in grp.getgrall() if g.gr_name == "docker"]
        assert not set(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid)) & set(docker)
    finally:
        remove(run_dir)

"""A supervised run on the process runtime: its run dir, its shim, and following it to the end.

A run dir (under the data dir, root's alone) holds: `spec.json` (what the shim runs, with the
app's env: removed once the result is taken), `lock` (flock'ed by the shim for its whole life:
held means alive), `shim.pid`, `stdout` and `stderr` (the command's output, written by the
shim), `status.json` (how the command ended, the shim's last act) and `result.json` (what the
runtime made of it, kept a while so a runner that dies before recording it can adopt it).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TypeVar

import msgspec
import structlog

from dockyard.runtime.base import LogSink, RuntimeError_
from dockyard.runtime.shim import (
    LOCK_FILE,
    PID_FILE,
    SPEC_FILE,
    STATUS_FILE,
    ShimPid,
    ShimSpec,
    ShimStatus,
    all_pids,
    proc_stat,
    signal_all,
    write_atomic,
)

logger = structlog.get_logger(__name__)
T = TypeVar("T")

RESULT_FILE = "result.json"
STDOUT = "stdout"
STDERR = "stderr"
SHIM_LOG = "shim.log"
SHIM_MODULE = "dockyard.runtime.shim"
MAX_LINE = 64 * 1024  # longer "lines" (binary output, progress bars) are cut, not buffered forever
POLL = 0.05
SWEEP_WAIT = 5.0
# The shim's own environment: nothing of the service's (its secrets stay out of reach).
SHIM_ENV = {"PATH": os.defpath, "LANG": "C.UTF-8"}


class SupervisorLost(RuntimeError_):
    """The shim of a run ended without writing how its command ended."""

    def __init__(self, run_dir: Path, detail: str) -> None:
        super().__init__(f"the supervisor of the command ended without a status: {detail}")
        self.run_dir = run_dir
        self.detail = detail


# ---------------------------------------------------------------- pure helpers


def split_lines(buf: bytes, max_len: int = MAX_LINE) -> tuple[list[bytes], bytes]:
    """Complete lines of a buffer (overlong ones cut at max_len) and the unfinished rest."""
    *lines, rest = buf.split(b"\n")
    out: list[bytes] = []
    for line in [*lines, rest] if len(rest) > max_len else lines:
        out.extend(line[i:i + max_len] for i in range(0, max(len(line), 1), max_len))
    return out, (b"" if len(rest) > max_len else rest)


def shim_argv(run_dir: Path, lock_fd: int | None) -> list[str]:
    """How the shim of a run is started (-I: no user site, no PYTHON* variables)."""
    argv = [sys.executable, "-I", "-m", SHIM_MODULE, str(run_dir)]
    return argv if lock_fd is None else [*argv, "--lock-fd", str(lock_fd)]


# ---------------------------------------------------------------- the run dir's files


def _decode(path: Path, type_: type[T]) -> T | None:
    try:
        return msgspec.json.decode(path.read_bytes(), type=type_)
    except (OSError, msgspec.DecodeError):
        return None


def read_spec(run_dir: Path) -> ShimSpec | None:
    """What the run's shim was told to run (None once the result was taken)."""
    return _decode(run_dir / SPEC_FILE, ShimSpec)


def read_pid(run_dir: Path) -> ShimPid | None:
    """Who the run's shim is, once it started its command."""
    return _decode(run_dir / PID_FILE, ShimPid)


def read_status(run_dir: Path) -> ShimStatus | None:
    """How the command ended, once it did."""
    return _decode(run_dir / STATUS_FILE, ShimStatus)


def read_result(run_dir: Path, type_: type[T]) -> T | None:
    """The result a runner already made of the status."""
    return _decode(run_dir / RESULT_FILE, type_)


def write_spec(run_dir: Path, spec: ShimSpec) -> None:
    """Give the shim its spec (root's alone: it carries the app's config)."""
    write_atomic(run_dir / SPEC_FILE, msgspec.json.encode(spec))


def write_result(run_dir: Path, result: object) -> None:
    """Keep the result; the spec (and the config in it) goes."""
    write_atomic(run_dir / RESULT_FILE, msgspec.json.encode(result))
    (run_dir / SPEC_FILE).unlink(missing_ok=True)


def clear(run_dir: Path) -> None:
    """Empty a run dir for a fresh run (the lock file stays: it may be held right now)."""
    for entry in run_dir.iterdir():
        if entry.name != LOCK_FILE:
            entry.unlink(missing_ok=True)


def shim_log(run_dir: Path) -> str:
    """What the shim itself said (a Python traceback if it failed), for an error message."""
    try:
        text = (run_dir / SHIM_LOG).read_text(errors="replace").strip()
    except OSError:
        return "(the shim wrote nothing)"
    return text[-2000:] or "(the shim wrote nothing)"


# ---------------------------------------------------------------- the lock: alive or not


def try_lock(run_dir: Path) -> int | None:
    """The run's lock, taken (an fd to close or hand to a shim), or None: a shim holds it."""
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def lock_free(run_dir: Path) -> bool:
    """Whether no shim of this run is alive."""
    fd = try_lock(run_dir)
    if fd is None:
        return False
    os.close(fd)
    return True


def shim_alive(pid: ShimPid) -> bool:
    """Whether the recorded shim still runs (not a zombie, not a reused pid)."""
    stat = proc_stat(pid.pid)
    return stat is not None and stat[0] not in ("Z", "X") and stat[3] == pid.start


def signal_shim(run_dir: Path, sig: signal.Signals) -> bool:
    """Signal the run's shim; False when it has not started its command or is gone."""
    pid = read_pid(run_dir)
    if pid is None or not shim_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid.pid, sig)
    return True


async def launch(run_dir: Path, lock_fd: int | None) -> asyncio.subprocess.Process:
    """Start the run's shim in a session of its own (it outlives us), handing it the lock."""
    fd = os.open(run_dir / SHIM_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        return await asyncio.create_subprocess_exec(
            *shim_argv(run_dir, lock_fd), cwd=run_dir, env=SHIM_ENV,
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            pass_fds=() if lock_fd is None else (lock_fd,))


# ---------------------------------------------------------------- following the output


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


class Tail:
    """Forwards a run's stdout and stderr files to a log sink, line by line, as they grow."""

    def __init__(self, run_dir: Path, sink: LogSink) -> None:
        self.run_dir = run_dir
        self.sink = sink
        self.offsets = {STDOUT: 0, STDERR: 0}
        self.rests = {STDOUT: b"", STDERR: b""}
        self.broken = False

    async def pump(self, final: bool = False) -> None:
        """Send every complete line written since the last pump (and the rest when final)."""
        for name, stream in ((STDOUT, "out"), (STDERR, "err")):
            data = _read_from(self.run_dir / name, self.offsets[name])
            self.offsets[name] += len(data)
            lines, rest = split_lines(self.rests[name] + data)
            if final and rest:
                lines, rest = [*lines, rest], b""
            self.rests[name] = rest
            for raw in lines:
                await self._send(raw, stream)

    async def _send(self, raw: bytes, stream: str) -> None:
        if self.broken:
            return
        try:
            await self.sink.line(raw.decode("utf-8", errors="replace").rstrip("\r"), stream)
        except Exception:
            self.broken = True
            logger.exception("log sink failed; dropping the rest of the output", stream=stream)


async def follow(run_dir: Path, tail: Tail, cancel: asyncio.Event | None = None) -> None:
    """Forward the output until no shim of the run is alive; a cancel stops the command."""
    stopped = False
    while True:
        await tail.pump()
        if lock_free(run_dir):
            await tail.pump(final=True)
            return
        if cancel is not None and cancel.is_set() and not stopped:
            # SIGTERM: the shim stops the whole tree (the grace, then SIGKILL) and says so.
            stopped = signal_shim(run_dir, signal.SIGTERM)
        await asyncio.sleep(POLL)


# ---------------------------------------------------------------- leftovers


def _uid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _is_shim(pid: int) -> bool:
    try:
        return SHIM_MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def leftovers(pid: ShimPid | None, uid: int | None) -> list[int]:
    """Processes a dead shim left: those of its session (started after it), and, with an app
    user, every process of that user that no live shim supervises."""
    stats = {p: s for p in all_pids() if (s := proc_stat(p)) is not None}
    shims = {p for p, s in stats.items() if s[0] not in ("Z", "X") and _is_shim(p)}

    def supervised(p: int) -> bool:
        seen = set()
        while p > 1 and p not in seen:
            seen.add(p)
            if p in shims:
                return True
            p = stats[p][1] if p in stats else 0
        return False

    found = []
    for p, (state, _ppid, session, start) in stats.items():
        if state in ("Z", "X") or p == os.getpid():
            continue
        if pid is not None and session == pid.pid and start >= pid.start and p not in shims:
            found.append(p)
        elif uid is not None and _uid(p) == uid and not supervised(p):
            found.append(p)
    return found


async def sweep(pid: ShimPid | None, uid: int | None) -> list[int]:
    """SIGKILL the leftovers of a run whose shim is gone and wait until they are gone."""
    victims = leftovers(pid, uid)
    if not victims:
        return []
    logger.warning("stopping what a dead supervisor left running", pids=victims)
    signal_all(victims, signal.SIGKILL)
    deadline = time.monotonic() + SWEEP_WAIT
    while time.monotonic() < deadline:
        if all((s := proc_stat(v)) is None or s[0] in ("Z", "X") for v in victims):
            break
        await asyncio.sleep(POLL)
    return victims


def remove_run(run_dir: Path) -> None:
    """Remove a run dir and everything in it; missing is fine."""
    shutil.rmtree(run_dir, ignore_errors=True)


def prune(runs: Path, keep: float) -> None:
    """Remove runs whose result was taken more than `keep` seconds ago (no shim alive)."""
    if not runs.is_dir():
        return
    now = time.time()
    for run_dir in runs.iterdir():
        result = run_dir / RESULT_FILE
        with contextlib.suppress(OSError):
            if now - result.stat().st_mtime > keep and lock_free(run_dir):
                remove_run(run_dir)

"""The supervisor of one command on the process runtime: `python -m dockyard.runtime.shim RUN_DIR`.

It runs in a session of its own, so it outlives the service that started it. It reads
RUN_DIR/spec.json, becomes a child subreaper (children that `setsid` or double-fork stay its
descendants), starts the command (as the app's own user when given one, without supplementary
groups, with no_new_privs, a memory and a process limit), writes its output to files, enforces
the command's timeout itself (SIGTERM to the whole tree, the grace, SIGKILL), and when the
command ends kills every descendant left and writes RUN_DIR/status.json atomically; then exits.

Signals: SIGTERM (or SIGINT, SIGHUP) stops the command as a cancel: SIGTERM to the tree, then
SIGKILL after the grace (RUN_DIR/grace when present, else the spec's); SIGUSR1 kills it at once.

It imports nothing of Dockyard's but this module (a fast start), only msgspec and the
standard library.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import msgspec

# The same value as dockyard.runtime.base.TIMEOUT_EXIT_CODE (not imported: the shim starts fast).
TIMEOUT_EXIT_CODE = -128
SPEC_FILE = "spec.json"
STATUS_FILE = "status.json"
PID_FILE = "shim.pid"
GRACE_FILE = "grace"
LOCK_FILE = "lock"
SPAWN_FAILED_EXIT_CODE = 127  # as a shell says "command not found"
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1
# A process stuck in the kernel (state D) ignores SIGKILL until it returns: wait, but bounded.
REAP_LIMIT = 30.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
KILL_NOW = signal.SIGUSR1
WATCHED = {signal.SIGCHLD, KILL_NOW, *STOP_SIGNALS}


class ShimSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the shim runs and how (written by the runtime, read once by the shim)."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    stdout: str  # opened for append by the shim (root's file when the command runs as a user)
    stderr: str
    timeout: float | None = None  # None: no deadline (an instance)
    kill_grace: float = 10.0
    memory: int = 0  # RLIMIT_AS in bytes; 0: none
    nproc: int = 0  # RLIMIT_NPROC of the command's user (only with uid); 0: none
    uid: int | None = None  # run as this user (the shim runs as root then)
    gid: int | None = None


class ShimStatus(msgspec.Struct, frozen=True, kw_only=True):
    """How the command ended, written once, atomically, as the shim's last act."""

    exit_code: int  # TIMEOUT_EXIT_CODE after a timeout or a cancel; -N when killed by signal N
    duration: float
    timed_out: bool = False
    cancelled: bool = False


class ShimPid(msgspec.Struct, frozen=True, kw_only=True):
    """Who the shim is (pid and /proc start time, against pid reuse) and its command's pid."""

    pid: int
    start: int
    child: int


# ---------------------------------------------------------------- /proc


def proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, session id, start time) of a process, None when there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces and parentheses.
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[3]), int(fields[19])


def all_pids() -> list[int]:
    """Every process id in /proc."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(root: int) -> list[int]:
    """Every process below root (children first found, then theirs)."""
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        stat = proc_stat(pid)
        if stat is not None:
            children.setdefault(stat[1], []).append(pid)
    found: list[int] = []
    frontier = [root]
    while frontier:
        below = [c for p in frontier for c in children.get(p, [])]
        found.extend(below)
        frontier = below
    return found


def signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    """Send a signal to each process; one already gone is fine."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


# ---------------------------------------------------------------- files


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that a reader sees all of it or nothing (and it survives a crash)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_grace(run_dir: Path, default: float) -> float:
    """The grace a stop asked for (RUN_DIR/grace), else the spec's."""
    try:
        return max(0.0, float((run_dir / GRACE_FILE).read_text()))
    except (OSError, ValueError):
        return default


# ---------------------------------------------------------------- the command


_LIBC = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    if _LIBC.prctl(option, value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}) failed: {os.strerror(errno)}")


def _child_setup(memory: int, nproc: int) -> None:
    """In the command's process, after the user change, before exec."""
    # The shim blocks the signals it waits for; the command must get them as usual.
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    # Set after the user change (which clears it): if the shim dies, the command goes too.
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    if nproc > 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def start(spec: ShimSpec, out: int, err: int) -> subprocess.Popen[bytes]:
    """Start the command in a process group of its own, as the spec's user if any."""
    as_user = spec.uid is not None
    return subprocess.Popen(
        spec.argv, cwd=spec.cwd, env=spec.env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
        close_fds=True, process_group=0,
        user=spec.uid if as_user else None, group=spec.gid if as_user else None,
        extra_groups=[] if as_user else None,  # setgroups([]): no group of root's
        preexec_fn=lambda: _child_setup(spec.memory, spec.nproc if as_user else 0))


def reap(child: int) -> int | None:
    """Collect every ended child (we are a subreaper); the command's wait status if it ended."""
    status = None
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == child:
            status = wait_status


def end_everything(me: int) -> None:
    """SIGKILL every descendant until none is left, reaping as they go (bounded)."""
    deadline = time.monotonic() + REAP_LIMIT
    while time.monotonic() < deadline:
        left = descendants(me)
        if not left:
            return
        signal_all(left, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] != 0:
                pass
        signal.sigtimedwait({signal.SIGCHLD}, 0.02)


def supervise(run_dir: Path, spec: ShimSpec) -> ShimStatus:
    """Run the command to its end, its deadline or a stop; leave nothing of it running."""
    me = os.getpid()
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
    out = os.open(spec.stdout, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    err = out if spec.stderr == spec.stdout else os.open(
        spec.stderr, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    started = time.monotonic()
    try:
        proc = start(spec, out, err)
    except (OSError, subprocess.SubprocessError) as exc:
        os.write(err, f"dockyard: could not start the command: {exc}\n".encode())
        return ShimStatus(exit_code=SPAWN_FAILED_EXIT_CODE, duration=0.0)
    finally:
        os.close(out)
        if err != out:
            os.close(err)
    stat = proc_stat(me)
    write_atomic(run_dir / PID_FILE, msgspec.json.encode(
        ShimPid(pid=me, start=stat[3] if stat else 0, child=proc.pid)))
    deadline = None if spec.timeout is None else started + spec.timeout
    kill_at: float | None = None
    timed_out = cancelled = False
    wait_status: int | None = None
    while wait_status is None:
        now = time.monotonic()
        due = kill_at if kill_at is not None else deadline  # once stopping, the deadline is past
        if due is not None and now >= due:
            if kill_at is None:  # the deadline: SIGTERM now, SIGKILL after the grace
                timed_out = True
                signal_all(descendants(me), signal.SIGTERM)
                kill_at = now + spec.kill_grace
            else:
                signal_all(descendants(me), signal.SIGKILL)
                kill_at = now + 1.0  # anything left (state D) is tried again
            continue
        info = (signal.sigwaitinfo(WATCHED) if due is None
                else signal.sigtimedwait(WATCHED, due - now))
        if info is None:
            continue
        if info.si_signo == signal.SIGCHLD:
            wait_status = reap(proc.pid)
        elif info.si_signo in STOP_SIGNALS and kill_at is None:
            cancelled = not timed_out
            signal_all(descendants(me), signal.SIGTERM)
            kill_at = time.monotonic() + read_grace(run_dir, spec.kill_grace)
        elif info.si_signo == KILL_NOW:
            cancelled = cancelled or not timed_out
            signal_all(descendants(me), signal.SIGKILL)
            kill_at = time.monotonic() + 1.0
    duration = time.monotonic() - started
    # -N when signal N ended it, as asyncio reports it. Reaped here, not by Popen.
    proc.returncode = os.waitstatus_to_exitcode(wait_status)
    # Like a container whose main process ended: whatever it left behind goes too.
    end_everything(me)
    code = TIMEOUT_EXIT_CODE if timed_out or cancelled else proc.returncode
    return ShimStatus(exit_code=code, duration=duration, timed_out=timed_out,
                      cancelled=cancelled)


def main(argv: list[str]) -> int:
    """`shim RUN_DIR [--lock-fd N]`: the lock fd (inherited, locked) is held until the end."""
    if len(argv) not in (1, 3) or (len(argv) == 3 and argv[1] != "--lock-fd"):
        print("usage: python -m dockyard.runtime.shim RUN_DIR [--lock-fd N]", file=sys.stderr)
        return 2
    run_dir = Path(argv[0])
    # The inherited lock fd (argv[2]) is left open, never passed on: held until the shim
    # exits, it tells a runner that this run is alive.
    spec = msgspec.json.decode((run_dir / SPEC_FILE).read_bytes(), type=ShimSpec)
    status = supervise(run_dir, spec)
    write_atomic(run_dir / STATUS_FILE, msgspec.json.encode(status))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The `process` runtime: apps as local subprocesses in immutable release dirs (like Piku)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import secrets
import shutil
import signal
import socket
import stat
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import structlog
from dockyard.runtime.base import (
    TIMEOUT_EXIT_CODE,
    BuildError,
    InstanceSpec,
    LogSink,
    OneOffResult,
    OneOffSpec,
    StartError,
)
from dockyard.schemas.events import InstanceRef

logger = structlog.get_logger(__name__)

SHELL = "/bin/sh"  # absolute: the app's own PATH must not decide which shell runs its commands
HOST_ENV_KEYS = ("PATH", "HOME", "LANG")
LOOPBACK = "127.0.0.1"
PREDEPLOY_MARK = "-predeploy-"
MAX_LINE = 64 * 1024  # longer "lines" (binary output, progress bars) are cut, not buffered forever
EARLY_EXIT = 0.3  # an instance that dies this fast never started
START_TAIL = 20
PUMP_DRAIN = 5.0  # how long to wait for output still in the pipes once the command ended
POLL = 0.05


class BuildCommandFailed(BuildError):
    """The build command exited non-zero or ran past its timeout."""

    def __init__(self, exit_code: int, reason: str) -> None:
        super().__init__(reason)
        self.exit_code = exit_code
        self.reason = reason


class InstanceRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What is kept on disk about a running instance, so a restarted scheduler finds it again."""

    id: str
    app: str
    process: str
    index: int
    release: int
    deployment_id: str
    artifact: str
    command: str
    pid: int
    pgid: int
    port: int
    started_at: datetime
    proc_start: int | None = None  # /proc start time: tells our pid from a reused one
    log: str = ""

    def ref(self) -> InstanceRef:
        """The InstanceRef the rest of Dockyard uses."""
        return InstanceRef(id=self.id, process=self.process, release=self.release,
                           host=LOOPBACK, port=self.port)


# ---------------------------------------------------------------- pure decisions


def host_env(host: Mapping[str, str]) -> dict[str, str]:
    """The only host variables a command inherits (no platform secrets)."""
    env = {k: host[k] for k in HOST_ENV_KEYS if host.get(k)}
    env.setdefault("PATH", os.defpath)
    return env


def oneoff_env(spec_env: Mapping[str, str], host: Mapping[str, str]) -> dict[str, str]:
    """spec.env plus PATH/HOME/LANG from the host; the app's own values win."""
    return {**host_env(host), **spec_env}


def instance_env(spec_env: Mapping[str, str], port: int, host: Mapping[str, str]) -> dict[str, str]:
    """An instance's env: its config, PATH/HOME/LANG, and the PORT we chose (which wins)."""
    return {**oneoff_env(spec_env, host), "PORT": str(port)}


def memory_limit(memory: int) -> tuple[int, int]:
    """The (soft, hard) RLIMIT_AS for a command given `memory` bytes; 0 or less means none."""
    if memory <= 0:
        return (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    return (memory, memory)


def shell_argv(command: str) -> list[str]:
    """How a command string is run."""
    return [SHELL, "-c", command]


def safe_name(value: str) -> str:
    """A path component taken from outside; refuses anything that could leave its directory."""
    if not value or value in (".", "..") or "/" in value or "\0" in value:
        raise ValueError(f"not a usable name: {value!r}")
    return value


def build_dir(root: Path, app: str, build_id: str) -> Path:
    """Where a build's release directory lives."""
    return root / "builds" / safe_name(app) / safe_name(build_id)


def predeploy_dir(artifact: str, deployment_id: str) -> Path:
    """The new artifact a committed predeploy makes, beside the one it started from."""
    base = Path(artifact)
    # A config deploy reruns predeploy on an artifact that already has one committed:
    # keep one suffix, not a growing chain.
    stem = base.name.split(PREDEPLOY_MARK, 1)[0]
    return base.parent / f"{stem}{PREDEPLOY_MARK}{safe_name(deployment_id)[:8]}"


def instance_id(app: str, release: int, process: str, index: int, suffix: str) -> str:
    """An instance's id: `<app>-<release>-<process>-<index>-<suffix>`."""
    return f"{app}-{release}-{process}-{index}-{suffix}"


def instances_dir(root: Path, app: str) -> Path:
    """Where an app's instance records and logs live."""
    return root / "instances" / safe_name(app)


def record_path(root: Path, app: str, id_: str) -> Path:
    """An instance's JSON record."""
    return instances_dir(root, app) / f"{safe_name(id_)}.json"


def log_path(root: Path, app: str, id_: str) -> Path:
    """An instance's stdout+stderr file."""
    return instances_dir(root, app) / f"{safe_name(id_)}.log"


def split_lines(buf: bytes, max_len: int = MAX_LINE) -> tuple[list[bytes], bytes]:
    """Complete lines of a buffer (overlong ones cut at max_len) and the unfinished rest."""
    *lines, rest = buf.split(b"\n")
    out: list[bytes] = []
    for line in [*lines, rest] if len(rest) > max_len else lines:
        out.extend(line[i:i + max_len] for i in range(0, max(len(line), 1), max_len))
    return out, (b"" if len(rest) > max_len else rest)


def parse_proc_stat(text: str) -> tuple[str, int]:
    """(state, start time in clock ticks) from the text of /proc/<pid>/stat."""
    # The command name is in parentheses and may itself contain spaces and parentheses.
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


def tail(text: str, n: int = START_TAIL) -> list[str]:
    """The last n non-empty lines of a text."""
    return [line for line in text.splitlines() if line.strip()][-n:]


# ---------------------------------------------------------------- small I/O helpers


def proc_state(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a live process, None when it does not exist or is a zombie."""
    try:
        state = parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        # No /proc (not Linux): fall back to signal 0, which cannot tell a zombie.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ("R", 0)
    return None if state[0] in ("Z", "X") else state


def record_alive(rec: InstanceRecord) -> bool:
    """Whether the record's process still runs (and is the one we started, not a reused pid)."""
    state = proc_state(rec.pid)
    if state is None:
        return False
    return rec.proc_start is None or state[1] == 0 or state[1] == rec.proc_start


def group_alive(pgid: int) -> bool:
    """Whether any process of a process group is left."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) also succeeds for zombies; a group made only of zombies is as good as gone.
    return any(_pgid_of(pid) == pgid for pid in _live_pids())


def _live_pids() -> list[int]:
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    return [int(n) for n in names if n.isdigit()]


def _pgid_of(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else int(fields[2])


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send a signal to a whole process group; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def free_port(host: str = LOOPBACK) -> int:
    """A port nobody listens on right now (the app binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _chmod_tree(path: Path, writable: bool) -> None:
    """Add or remove write permission on a tree (symlinks left alone: chmod would follow them)."""
    def change(p: str) -> None:
        mode = os.lstat(p).st_mode
        if stat.S_ISLNK(mode):
            return
        no_write = mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
        new = (mode | stat.S_IWUSR) if writable else no_write
        os.chmod(p, stat.S_IMODE(new))

    if writable:
        change(str(path))  # top-down: a directory must be writable before its entries can change
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            change(os.path.join(dirpath, name))
    if not writable:
        change(str(path))  # bottom-up for the top itself: walk needs nothing writable, but be last


def make_read_only(path: Path) -> None:
    """chmod a-w on a whole tree: the release directory is immutable."""
    _chmod_tree(path, writable=False)


def remove_tree(path: Path) -> None:
    """chmod u+w then remove a tree (artifacts are read-only); missing is fine."""
    if not path.exists() and not path.is_symlink():
        return
    _chmod_tree(path, writable=True)
    shutil.rmtree(path, ignore_errors=False)


def copy_tree(source: Path, dest: Path) -> None:
    """Copy a tree (without .git), writable by us, symlinks kept as symlinks."""
    shutil.copytree(source, dest, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    _chmod_tree(dest, writable=True)


def _limit_preexec(memory: int) -> Callable[[], None]:
    soft, hard = memory_limit(memory)

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))

    return apply


# ---------------------------------------------------------------- running a command to its end


async def _pump(stream: asyncio.StreamReader, sink: LogSink, name: str) -> None:
    """Forward a pipe to the sink line by line, as the lines come."""
    buf = b""
    broken = False
    while True:
        chunk = await stream.read(65536)
        lines, buf = split_lines(buf + chunk) if chunk else ([buf] if buf else [], b"")
        for raw in lines:
            if broken:
                continue  # keep draining, or the command would block on a full pipe
            try:
                await sink.line(raw.decode("utf-8", errors="replace").rstrip("\r"), name)
            except Exception:
                broken = True
                logger.exception("log sink failed; dropping the rest of the output", stream=name)
        if not chunk:
            return


async def _wait_gone(pgid: int, proc: asyncio.subprocess.Process, timeout: float) -> bool:
    """Wait until the leader exited and no process of its group is left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), max(timeout, 0))
    while group_alive(pgid):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(POLL)
    return proc.returncode is not None


async def _stop(pgid: int, proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM to the group, up to grace for it to end, then SIGKILL and wait."""
    signal_group(pgid, signal.SIGTERM)
    if not await _wait_gone(pgid, proc, grace):
        signal_group(pgid, signal.SIGKILL)
        await proc.wait()


def _mark(marker: Path, pgid: int) -> None:
    """Record a running one-off's process group (and its start time, against pid reuse)."""
    state = proc_state(pgid)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{pgid} {state[1] if state else 0}\n")


async def run_command(
    command: str,
    *,
    cwd: Path,
    env: dict[str, str],
    sink: LogSink,
    timeout: float,
    kill_grace: float,
    memory: int = 0,
    cancel: asyncio.Event | None = None,
    on_start: Callable[[int], None] | None = None,
) -> tuple[int, bool, bool]:
    """Run `sh -c command` in its own process group; (exit code, timed out, cancelled)."""
    proc = await asyncio.create_subprocess_exec(
        *shell_argv(command), cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True, preexec_fn=_limit_preexec(memory) if memory > 0 else None,
    )
    pgid = proc.pid  # start_new_session: the leader's pid is the group's id
    if on_start is not None:
        on_start(pgid)
    assert proc.stdout is not None and proc.stderr is not None
    pumps = [asyncio.create_task(_pump(proc.stdout, sink, "out")),
             asyncio.create_task(_pump(proc.stderr, sink, "err"))]
    waiter = asyncio.create_task(proc.wait())
    cancelled_waiter = asyncio.create_task(cancel.wait()) if cancel is not None else None
    timed_out = cancelled = False
    try:
        waits: set[asyncio.Task[object]] = {waiter}
        if cancelled_waiter is not None:
            waits.add(cancelled_waiter)
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            cancelled = cancelled_waiter is not None and cancelled_waiter in done
            timed_out = not cancelled
            await _stop(pgid, proc, kill_grace)
    except BaseException:
        # Our own task was cancelled (service shutdown): the command must not outlive it.
        signal_group(pgid, signal.SIGKILL)
        raise
    finally:
        if cancelled_waiter is not None:
            cancelled_waiter.cancel()
        # Like a container ending with its main process: whatever it left behind goes too.
        signal_group(pgid, signal.SIGKILL)
        await asyncio.shield(proc.wait())
        _done_pumps, pending = await asyncio.wait(pumps, timeout=PUMP_DRAIN)
        for task in pending:
            task.cancel()  # a process that escaped the group still holds the pipe
        waiter.cancel()
    code = proc.returncode if proc.returncode is not None else TIMEOUT_EXIT_CODE
    if timed_out or cancelled:
        code = TIMEOUT_EXIT_CODE
    return code, timed_out, cancelled


# ---------------------------------------------------------------- the runtime


class ProcessRuntime:
    """Builds are copied release directories; one-offs and instances are local process groups."""

    name = "process"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self._procs: dict[str, asyncio.subprocess.Process] = {}

    # ------------------------------------------------------------ build

    async def build(
        self, app: str, build_id: str, source: Path, log: LogSink, *,
        command: str | None = None, timeout: float = 1800, env: Mapping[str, str] | None = None,
        dockerfile: str = "Dockerfile",
    ) -> str:
        """Copy the source (no .git) to builds/<app>/<build_id>, run the command, lock it."""
        del dockerfile  # a release directory is built without one
        dest = build_dir(self.root, app, build_id)
        if not Path(source).is_dir():
            raise BuildCommandFailed(1, f"source {source} is not a directory")
        logger.info("building", app=app, build_id=build_id, runtime=self.name)
        # A redelivered build request rebuilds from scratch rather than trust a half-made tree.
        await asyncio.to_thread(remove_tree, dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(copy_tree, Path(source), dest)
        if command:
            # Built in place, not moved afterwards: build tools write absolute paths (venvs).
            code, timed_out, _ = await run_command(
                command, cwd=dest, env=oneoff_env(env or {}, os.environ), sink=log,
                timeout=timeout, kill_grace=10.0)
            if code != 0:
                await asyncio.to_thread(remove_tree, dest)
                reason = (f"build command timed out after {timeout:g}s: {command}" if timed_out
                          else f"build command exited with code {code}: {command}")
                logger.warning("build failed", app=app, build_id=build_id, exit_code=code)
                raise BuildCommandFailed(code, reason)
        await asyncio.to_thread(make_read_only, dest)
        logger.info("built", app=app, build_id=build_id, runtime=self.name, artifact=str(dest))
        return str(dest)

    async def remove_artifact(self, artifact: str) -> None:
        """Delete an artifact (a failed deploy's); only ever one under our builds directory."""
        path = Path(artifact).absolute()
        if not path.is_relative_to(self.root / "builds") or path == self.root / "builds":
            raise ValueError(f"{artifact} is not an artifact of this runtime")
        await asyncio.to_thread(remove_tree, path)

    # ------------------------------------------------------------ one-off

    async def run_oneoff(
        self, spec: OneOffSpec, log: LogSink, cancel: asyncio.Event | None = None
    ) -> OneOffResult:
        """Run a command in a writable copy of the artifact; changes kept only when spec.commit."""
        started = time.monotonic()
        if cancel is not None and cancel.is_set():
            return OneOffResult(exit_code=TIMEOUT_EXIT_CODE, duration=0.0, cancelled=True)
        artifact = Path(spec.artifact)
        if not artifact.is_dir():
            raise StartError(f"artifact {spec.artifact} does not exist")
        if spec.commit:
            work = predeploy_dir(spec.artifact, spec.deployment_id)
        else:
            work = (self.root / "tmp"
                    / f"{safe_name(spec.app)}-{safe_name(spec.container)}-{secrets.token_hex(4)}")
        keep = False
        fields = {"app": spec.app, "deployment_id": spec.deployment_id, "release": spec.release,
                      "phase": spec.phase, "container": spec.container}
        marker = self.root / "oneoffs" / f"{safe_name(spec.deployment_id)}-{safe_name(spec.container)}"
        await self._stop_interrupted(marker, log, fields)
        try:
            await asyncio.to_thread(remove_tree, work)
            work.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(copy_tree, artifact, work)
            logger.info("oneoff starting", **fields)
            code, timed_out, cancelled = await run_command(
                spec.command, cwd=work, env=oneoff_env(spec.env, os.environ), sink=log,
                timeout=spec.timeout, kill_grace=spec.kill_grace, memory=spec.memory,
                cancel=cancel, on_start=lambda pgid: _mark(marker, pgid))
            duration = time.monotonic() - started
            logger.info("oneoff finished", exit_code=code, duration=round(duration, 3),
                     timed_out=timed_out, cancelled=cancelled, **fields)
            new_artifact = None
            if spec.commit and code == 0:
                await asyncio.to_thread(make_read_only, work)
                keep = True
                new_artifact = str(work)
            return OneOffResult(exit_code=code, duration=duration, timed_out=timed_out,
                                cancelled=cancelled, artifact=new_artifact)
        finally:
            marker.unlink(missing_ok=True)
            if not keep:
                await asyncio.shield(asyncio.to_thread(remove_tree, work))

    async def _stop_interrupted(self, marker: Path, log: LogSink, fields: dict[str, object]) -> None:
        """A run of this command by a killed hook-runner may still go on: stop it first."""
        if not marker.exists():
            return
        try:
            pgid, start = (int(x) for x in marker.read_text().split())
        except ValueError:
            marker.unlink(missing_ok=True)
            return
        state = proc_state(pgid)
        if state is not None and state[1] == start:
            # A local process cannot be re-attached (its output pipes died with the runner):
            # never let two runs of one command overlap.
            logger.warning("stopping an interrupted earlier run", pgid=pgid, **fields)
            await log.line("an earlier run of this command was interrupted (the hook-runner "
                           "stopped); it was stopped and the command runs again", "err")
            signal_group(pgid, signal.SIGKILL)
        marker.unlink(missing_ok=True)

    # ------------------------------------------------------------ instances

    async def start_instance(self, spec: InstanceSpec) -> InstanceRef:
        """Start one instance in its artifact dir with $PORT; record it on disk."""
        artifact = Path(spec.artifact)
        if not artifact.is_dir():
            raise StartError(f"artifact {spec.artifact} does not exist")
        for rec in self._records(spec.app):
            # A restarted scheduler asking again for the same slot re-attaches, never doubles it.
            if (rec.deployment_id, rec.process, rec.index) == (
                    spec.deployment_id, spec.process, spec.index) and record_alive(rec):
                logger.info("instance re-attached", app=spec.app, instance=rec.id)
                return rec.ref()
        id_ = instance_id(spec.app, spec.release, spec.process, spec.index, secrets.token_hex(3))
        taken = self._ports_taken()
        port = next(p for p in iter(free_port, None) if p not in taken)
        folder = instances_dir(self.root, spec.app)
        folder.mkdir(parents=True, exist_ok=True)
        logfile = log_path(self.root, spec.app, id_)
        fields = {"app": spec.app, "deployment_id": spec.deployment_id, "release": spec.release,
                      "instance": id_, "port": port}
        logger.info("instance starting", **fields)
        with open(logfile, "ab") as out:  # noqa: ASYNC230 (local append-open, no wait)
            proc = await asyncio.create_subprocess_exec(
                *shell_argv(spec.command), cwd=artifact,
                env=instance_env(spec.env, port, os.environ), stdin=asyncio.subprocess.DEVNULL,
                stdout=out, stderr=out, start_new_session=True)
        state = proc_state(proc.pid)
        record = InstanceRecord(
            id=id_, app=spec.app, process=spec.process, index=spec.index, release=spec.release,
            deployment_id=spec.deployment_id, artifact=str(artifact), command=spec.command,
            pid=proc.pid, pgid=proc.pid, port=port, started_at=datetime.now(UTC),
            proc_start=state[1] if state else None, log=str(logfile))
        self._write(record)  # before anything can fail: a crash here must not lose the process
        self._procs[id_] = proc
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), EARLY_EXIT)
        except TimeoutError:
            logger.info("instance started", pid=proc.pid, **fields)
            return record.ref()
        signal_group(proc.pid, signal.SIGKILL)  # children it left behind
        self._forget(record)
        lines = tail(logfile.read_text(errors="replace"))
        shown = "\n".join(lines) if lines else "(no output)"
        logger.warning("instance exited at once", exit_code=proc.returncode, **fields)
        raise StartError(f"{spec.process} instance {id_} exited at once with code "
                         f"{proc.returncode}; last lines of its log:\n{shown}")

    async def is_alive(self, ref: InstanceRef) -> bool:
        """Whether an instance's process still runs (for wait_healthy's alive)."""
        rec = self._find(ref.id)
        return rec is not None and record_alive(rec)

    async def stop_instance(self, ref: InstanceRef, grace: float) -> None:
        """SIGTERM to its group, up to grace, SIGKILL; drop the record. Gone already is fine."""
        rec = self._find(ref.id)
        if rec is None:
            return
        fields = {"app": rec.app, "deployment_id": rec.deployment_id, "release": rec.release,
                      "instance": rec.id}
        if record_alive(rec):
            logger.info("instance stopping", grace=grace, **fields)
            signal_group(rec.pgid, signal.SIGTERM)
            if not await self._wait_exit(rec, grace):
                logger.info("instance killed after grace", grace=grace, **fields)
                signal_group(rec.pgid, signal.SIGKILL)
                await self._wait_exit(rec, None)
        signal_group(rec.pgid, signal.SIGKILL)  # children left behind by the leader
        self._forget(rec)
        logger.info("instance stopped", **fields)

    async def list_instances(self, app: str) -> list[InstanceRef]:
        """Live instances of an app from their records; records of dead ones are removed."""
        refs = []
        for rec in self._records(app):
            if record_alive(rec):
                refs.append(rec.ref())
            else:
                logger.info("instance record of a dead process removed", app=app, instance=rec.id)
                self._forget(rec)
        return sorted(refs, key=lambda r: r.id)

    async def close(self) -> None:
        """Nothing to release: instances keep running, their records stay for the next start."""
        self._procs.clear()

    # ------------------------------------------------------------ records

    def _records(self, app: str) -> list[InstanceRecord]:
        folder = instances_dir(self.root, app)
        out = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                out.append(msgspec.json.decode(path.read_bytes(), type=InstanceRecord))
            except (OSError, msgspec.DecodeError):
                logger.warning("unreadable instance record skipped", path=str(path))
        return out

    def _ports_taken(self) -> set[int]:
        """Ports recorded for any instance: one may not have bound its port yet."""
        apps = (self.root / "instances").glob("*/")
        return {r.port for folder in apps for r in self._records(folder.name)}

    def _find(self, id_: str) -> InstanceRecord | None:
        for path in (self.root / "instances").glob(f"*/{safe_name(id_)}.json"):
            with contextlib.suppress(OSError, msgspec.DecodeError):
                return msgspec.json.decode(path.read_bytes(), type=InstanceRecord)
        return None

    def _write(self, rec: InstanceRecord) -> None:
        path = record_path(self.root, rec.app, rec.id)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_bytes(msgspec.json.encode(rec))
        os.replace(tmp, path)  # a reader never sees half a record

    def _forget(self, rec: InstanceRecord) -> None:
        record_path(self.root, rec.app, rec.id).unlink(missing_ok=True)
        self._procs.pop(rec.id, None)

    async def _wait_exit(self, rec: InstanceRecord, timeout: float | None) -> bool:
        """Wait for the instance's leader to exit (polled: after a restart it is not our child)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        proc = self._procs.get(rec.id)
        while record_alive(rec):
            if deadline is not None and loop.time() >= deadline:
                return False
            if proc is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(proc.wait()), POLL)
            else:
                await asyncio.sleep(POLL)
        return True

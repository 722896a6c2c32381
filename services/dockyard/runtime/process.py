"""The `process` runtime: apps as local processes in immutable release dirs (like Piku).

Every command (build, one-off, instance) runs under a shim (`dockyard.runtime.shim`) in a
session of its own: it keeps the whole process tree, enforces the timeout, and writes how the
command ended to the run dir, so a runner that dies meanwhile loses nothing: the next one adopts
the result or follows the run to its end. As root, each app's commands run as its own user.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import structlog

from dockyard.contract.events import InstanceRef
from dockyard.contract.plan import Buildpack, BuildStep
from dockyard.plan import node, python
from dockyard.runtime import buildpacks, depcache, output, runs
from dockyard.runtime.apptree import (
    AppTree,
    copy_tree,
    own_tree,
    prepare_apps_dir,
    prepare_tree,
    remove_tree,
    safe_name,
    seal_tree,
)
from dockyard.runtime.base import (
    TIMEOUT_EXIT_CODE,
    BuildError,
    InstanceSpec,
    LogSink,
    OneOffResult,
    OneOffSpec,
    OutputLine,
    StartError,
)
from dockyard.runtime.health import listening
from dockyard.runtime.shim import (
    GRACE_FILE,
    KILL_NOW,
    PID_FILE,
    SPEC_FILE,
    ShimSpec,
    ShimStatus,
    write_atomic,
)
from dockyard.runtime.users import remove_user, uid_of, user_name

logger = structlog.get_logger(__name__)

__all__ = ["ProcessRuntime", "safe_name"]

SHELL = "/bin/sh"  # absolute: the app's own PATH must not decide which shell runs its commands
HOST_ENV_KEYS = ("PATH", "HOME", "LANG", "TMPDIR")
LOOPBACK = "127.0.0.1"
PREDEPLOY_MARK = "-predeploy-"
# An instance that dies this fast (once its command started) never started; one that listens
# on its port sooner has started (the health check goes on from there).
EARLY_EXIT = 0.3
START_WAIT = 15.0  # how long a shim may take to start its command
START_TAIL = 20
INTENT_FILE = "intent.json"  # an instance launched but not yet recorded
STOP_SLACK = 5.0  # past the grace, how long a shim may take to end its tree before SIGKILL
BUILD_GRACE = 10.0
OUTPUT_POLL = 0.25  # how often a followed instance output file is looked at for more
INSTANCE_GRACE = 10.0  # a stop names its own grace; this is the shim's if a stop names none
RUN_KEEP = 3600.0  # a taken result stays this long, for a runner that died before recording it
POLL = 0.05
FIRST_POLL = 0.005  # a shim's pid file is looked for this soon, then twice as late up to POLL


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
    pid: int  # the instance's shim
    pgid: int
    port: int
    started_at: datetime
    proc_start: int | None = None  # /proc start time: tells our pid from a reused one
    log: str = ""
    run_dir: str = ""  # the shim's run dir ("" in records made before shims)

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
    """spec.env plus PATH/HOME/LANG/TMPDIR from the host; the app's own values win."""
    return {**host_env(host), **spec_env}


def instance_env(spec_env: Mapping[str, str], port: int, host: Mapping[str, str]) -> dict[str, str]:
    """An instance's env: its config, PATH/HOME/LANG/TMPDIR, and the PORT we chose (which
    wins)."""
    return {**oneoff_env(spec_env, host), "PORT": str(port)}


def shell_argv(command: str) -> list[str]:
    """How a command string is run."""
    return [SHELL, "-c", command]


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


def oneoff_run_dir(root: Path, spec: OneOffSpec) -> Path:
    """The run dir of one command of one deployment: the same for every runner of it."""
    return root / "runs" / f"{safe_name(spec.deployment_id)}-{safe_name(spec.container)}"


def build_run_dir(root: Path, app: str, build_id: str) -> Path:
    """The run dir of a build's command."""
    return root / "runs" / f"build-{safe_name(app)}-{safe_name(build_id)}"


def _tree_contents(tree: Path) -> list[str]:
    """What removing an app's tree removes, one short line each."""
    if not tree.exists():
        return []
    builds = tree / "builds"
    found = [f"release dir {p.name}" for p in sorted(builds.iterdir())] if builds.is_dir() else []
    return [*found, f"app tree {tree}"]


def build_run_dirs(root: Path, app: str) -> list[Path]:
    """The run dirs of an app's builds (`build-<app>-v<N>-<8 hex>`: not another app's whose
    name starts with this one's)."""
    runs = root / "runs"
    if not runs.is_dir():
        return []
    own = re.compile(rf"build-{re.escape(safe_name(app))}-v\d+-[0-9a-z]{{8}}")
    return sorted(p for p in runs.iterdir() if own.fullmatch(p.name))


def parse_proc_stat(text: str) -> tuple[str, int]:
    """(state, start time in clock ticks) from the text of /proc/<pid>/stat."""
    # The command name is in parentheses and may itself contain spaces and parentheses.
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


def _last_lines(path: Path, n: int = 40) -> list[str]:
    """The last lines of an output file (empty when there is none)."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - 16384))
            return fh.read().decode(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def tail(text: str, n: int = START_TAIL) -> list[str]:
    """The last n non-empty lines of a text."""
    return [line for line in text.splitlines() if line.strip()][-n:]


def oneoff_result(status: ShimStatus, artifact: str | None) -> OneOffResult:
    """The result of a one-off from its shim's status."""
    return OneOffResult(exit_code=status.exit_code, duration=status.duration,
                        timed_out=status.timed_out, cancelled=status.cancelled,
                        artifact=artifact)


# ---------------------------------------------------------------- small I/O helpers


def proc_state(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a live process, None when it does not exist or is a zombie."""
    try:
        state = parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return None
    return None if state[0] in ("Z", "X") else state


def record_alive(rec: InstanceRecord) -> bool:
    """Whether the record's process still runs (and is the one we started, not a reused pid)."""
    state = proc_state(rec.pid)
    if state is None:
        return False
    return rec.proc_start is None or state[1] == 0 or state[1] == rec.proc_start


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send a signal to a whole process group; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def free_port(host: str = LOOPBACK) -> int:
    """A port nobody listens on right now (the app binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- the runtime


class ProcessRuntime:
    """Release dirs are copied trees; every command runs under a shim, as the app's user."""

    name = "process"
    tcp_settle = 0.0  # an instance listens on its loopback port itself: nothing forwards it

    def __init__(self, root: Path, apps_dir: Path, *, pids_limit: int = 256,
                 data_dir: Path | None = None,
                 python_dirs: Sequence[str] = buildpacks.DEFAULT_PYTHON_DIRS) -> None:
        self.root = Path(root).absolute()  # runs and instance records: root's alone
        self.apps_dir = Path(apps_dir).absolute()
        self.data_dir = None if data_dir is None else Path(data_dir).absolute()
        self.pids_limit = pids_limit
        self.python_dirs = tuple(python_dirs)
        # As root, each app runs as a user of its own; otherwise as Dockyard's own user.
        self.isolated = os.geteuid() == 0
        self._procs: dict[str, asyncio.subprocess.Process] = {}

    # ------------------------------------------------------------ the app's tree and user

    def _prepare(self, app: str) -> AppTree:
        """Our own dirs (0700), the apps dir (0711) and the app's tree and user."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        if self.isolated and self.data_dir is not None and self.data_dir.is_dir():
            # nats.url, caddy.admin, the JetStream files: none of the apps' business.
            os.chmod(self.data_dir, 0o700)
        prepare_apps_dir(self.apps_dir, self.isolated)
        return prepare_tree(self.apps_dir, app, self.isolated)

    async def _tree(self, app: str) -> AppTree:
        return await asyncio.to_thread(self._prepare, app)

    def _host(self, tree: AppTree) -> dict[str, str]:
        """The host env a command's PATH/HOME/LANG/TMPDIR come from (HOME and TMPDIR: the app's
        own, so what it writes to its temp dir stays in its tree and goes with it)."""
        env = dict(os.environ)
        if tree.user is not None:
            env["HOME"] = str(tree.home)
        env["TMPDIR"] = str(tree.tmp)
        return env

    def _shim_spec(self, tree: AppTree, command: str, cwd: Path, env: dict[str, str],
                   out: Path, err: Path, *, timeout: float | None, kill_grace: float,
                   memory: int = 0) -> ShimSpec:
        user = tree.user
        return ShimSpec(argv=shell_argv(command), cwd=str(cwd), env=env, stdout=str(out),
                        stderr=str(err), timeout=timeout, kill_grace=kill_grace, memory=memory,
                        nproc=self.pids_limit if user is not None else 0,
                        uid=None if user is None else user.uid,
                        gid=None if user is None else user.gid)

    async def remove_app(self, app: str) -> list[str]:
        """Remove an app's tree, its release env files, instance records and logs, its builds'
        run dirs, and its user (its instances must be stopped first); what was removed."""
        tree = self.apps_dir / safe_name(app)
        removed = await asyncio.to_thread(_tree_contents, tree)
        await asyncio.to_thread(remove_tree, tree)
        await asyncio.to_thread(remove_tree, self.root / "releases" / safe_name(app))
        await asyncio.to_thread(remove_tree, instances_dir(self.root, app))
        for run_dir in build_run_dirs(self.root, app):
            await asyncio.to_thread(remove_tree, run_dir)
        if self.isolated:
            uid = uid_of(app)
            if uid is not None:
                await runs.sweep(None, uid)
            if await asyncio.to_thread(remove_user, app):
                removed.append(f"user {user_name(app)}")
        return removed

    # ------------------------------------------------------------ build

    async def build(
        self, app: str, build_id: str, source: Path, log: LogSink, *,
        command: str | None = None, time_limit: float = 1800,
        env: Mapping[str, str] | None = None,
        dockerfile: str = "Dockerfile",
        buildpack: Buildpack | None = None,
    ) -> str:
        """Copy the source (no .git) to the app's builds/<build_id>, install its detected
        dependencies, run the command, seal it."""
        del dockerfile  # a release directory is built without one
        buildpack = buildpack or Buildpack()
        if not Path(source).is_dir():  # noqa: ASYNC240 (one local stat)
            raise BuildCommandFailed(1, f"source {source} is not a directory")
        tree = await self._tree(app)
        dest = tree.builds / safe_name(build_id)
        run_dir = build_run_dir(self.root, app, build_id)
        logger.info("building", app=app, build_id=build_id, runtime=self.name)
        # A redelivered build request rebuilds from scratch rather than trust a half-made tree.
        await self._abandon(run_dir, tree)
        await asyncio.to_thread(remove_tree, dest)
        await asyncio.to_thread(copy_tree, Path(source), dest)
        await asyncio.to_thread(own_tree, dest, tree.user)
        started = time.monotonic()
        release = buildpacks.ReleaseEnv(env=buildpack.env, path=buildpack.path)
        try:
            if buildpack.steps:
                await self._install(tree, app, build_id, dest, buildpack, log, env or {},
                                    time_limit)
            if command:
                # Built in place, not moved afterwards: build tools write absolute paths (venvs).
                spec = self._shim_spec(
                    tree, command, dest, buildpacks.release_env(
                        oneoff_env(env or {}, self._host(tree)), release, dest),
                    run_dir / runs.STDOUT, run_dir / runs.STDERR,
                    timeout=max(1.0, time_limit - (time.monotonic() - started)),
                    kill_grace=BUILD_GRACE)
                status = await self._run_to_end(run_dir, spec, log)
                if status is None:
                    raise BuildCommandFailed(1, "the build command's supervisor ended without "
                                                f"a status: {runs.shim_log(run_dir)}")
                if status.exit_code != 0:
                    reason = (f"build command timed out after {time_limit:g}s: {command}"
                              if status.timed_out else
                              f"build command exited with code {status.exit_code}: {command}")
                    logger.warning("build failed", app=app, build_id=build_id,
                                   exit_code=status.exit_code)
                    raise BuildCommandFailed(status.exit_code, reason)
            await asyncio.to_thread(self._keep_release_env, app, build_id, release)
            await asyncio.to_thread(seal_tree, dest, tree.user)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(remove_tree, dest))
            raise
        finally:
            await asyncio.shield(asyncio.to_thread(runs.remove_run, run_dir))
        logger.info("built", app=app, build_id=build_id, runtime=self.name, artifact=str(dest))
        return str(dest)

    async def _install(self, tree: AppTree, app: str, build_id: str, dest: Path,
                       build: Buildpack, log: LogSink, env: Mapping[str, str],
                       time_limit: float) -> None:
        """Install a detected app's dependencies into the release dir as the app's user, or
        copy them from the cache when its lock files are unchanged (nothing installed)."""
        started = time.monotonic()
        host = self._host(tree)
        host_path = host.get("PATH") or os.defpath
        cache = await asyncio.to_thread(depcache.prepare, tree.root, tree.user)
        render: Callable[[BuildStep], list[list[str]]]
        if build.language == "python":
            interpreter = await asyncio.to_thread(buildpacks.choose_python, build,
                                                  self.python_dirs)
            version = await asyncio.to_thread(buildpacks.python_version, interpreter)
            uv = buildpacks.find_uv(host_path)
            tools = python.Tools(python=interpreter, uv=uv)
            tool = f"python {version} {interpreter} {'uv' if uv else 'pip'}"
            await log.line(f"python {version} ({interpreter}); installer: "
                           f"{'uv (' + uv + ')' if uv else 'pip (no uv reachable)'}")

            def render(step: BuildStep) -> list[list[str]]:
                return python.render(step, tools)
        elif build.language == "node":
            _, node_v = await asyncio.to_thread(buildpacks.node_version, host_path)
            buildpacks.check_node(build, node_v)
            npm = shutil.which("npm", path=host_path) or "npm"
            tool = f"node {node_v}"
            await log.line(f"node {node_v}; installer: npm ({npm})")

            def render(step: BuildStep) -> list[list[str]]:
                return node.render(step, npm)
        else:
            raise BuildCommandFailed(1, f"no build steps for {build.language}")
        key = await asyncio.to_thread(buildpacks.cache_key, build, dest, tool)
        deps = build.deps_dir or ""
        hit = bool(deps) and await asyncio.to_thread(depcache.restore, cache, key, deps, dest,
                                                     tree.user)
        if hit:
            await log.line(f"cache hit: {deps} reused ({', '.join(build.lock_files)} unchanged):"
                           " nothing installed")
        else:
            await log.line(f"cache miss: installing {deps} ({', '.join(build.lock_files)})")
            if deps:
                await asyncio.to_thread(remove_tree, dest / deps)  # never a committed one
        step_env = {**buildpacks.installer_env(host), **oneoff_env(env, host),
                    "UV_CACHE_DIR": str(cache / "uv"),
                    "npm_config_cache": str(cache / "npm"), "PIP_CACHE_DIR": str(cache / "pip"),
                    "PIP_DISABLE_PIP_VERSION_CHECK": "1", "UV_NO_PROGRESS": "1",
                    "npm_config_update_notifier": "false", "npm_config_fund": "false"}
        step_env = buildpacks.release_env(step_env, buildpacks.ReleaseEnv(path=build.path), dest)
        for number, step in enumerate(build.steps, start=1):
            if hit and step.installs:
                continue
            await log.line(f"----- {step.label} ({number}/{len(build.steps)}) -----")
            for argv in render(step):
                left = time_limit - (time.monotonic() - started)
                await self._build_step(tree, app, build_id, dest, step, argv, step_env, log,
                                       max(1.0, left))
        if not hit and deps:
            if build.language == "python":
                await asyncio.to_thread(buildpacks.relocate_scripts, dest / deps / "bin")
            await asyncio.to_thread(depcache.store, cache, key, deps, dest, tree.user)

    async def _build_step(self, tree: AppTree, app: str, build_id: str, dest: Path,
                          step: BuildStep, argv: list[str], env: dict[str, str], log: LogSink,
                          limit: float) -> None:
        """One command of a build step, under a shim as the app's user; BuildStepFailed."""
        run_dir = build_run_dir(self.root, app, build_id)
        spec = self._shim_spec(tree, shlex.join(argv), dest, env, run_dir / runs.STDOUT,
                               run_dir / runs.STDERR, timeout=limit, kill_grace=BUILD_GRACE)
        try:
            status = await self._run_to_end(run_dir, spec, log)
            if status is None:
                raise BuildCommandFailed(1, "a build step's supervisor ended without a status: "
                                            f"{runs.shim_log(run_dir)}")
            if status.exit_code != 0:
                if status.timed_out:
                    raise buildpacks.BuildStepFailed(step, status.exit_code,
                                                     f"timed out after {limit:g}s")
                lines = [line for name in (runs.STDERR, runs.STDOUT)
                         for line in _last_lines(run_dir / name)]
                raise buildpacks.BuildStepFailed(step, status.exit_code,
                                                 buildpacks.first_error(lines))
        finally:
            await asyncio.shield(asyncio.to_thread(runs.remove_run, run_dir))

    def _release_env_path(self, app: str, build_id: str) -> Path:
        """Where a build's ReleaseEnv is kept: our own dir, not the app's tree."""
        stem = build_id.split(PREDEPLOY_MARK, 1)[0]
        return self.root / "releases" / safe_name(app) / f"{safe_name(stem)}.json"

    def _keep_release_env(self, app: str, build_id: str, release: buildpacks.ReleaseEnv) -> None:
        path = self._release_env_path(app, build_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.encode(release))
        os.replace(tmp, path)

    def _release_env(self, app: str, artifact: str) -> buildpacks.ReleaseEnv:
        """The ReleaseEnv of the build an artifact comes from (none for older builds)."""
        path = self._release_env_path(app, Path(artifact).name)
        try:
            return msgspec.json.decode(path.read_bytes(), type=buildpacks.ReleaseEnv)
        except (OSError, msgspec.DecodeError):
            return buildpacks.ReleaseEnv()

    async def _run_to_end(self, run_dir: Path, spec: ShimSpec,
                          log: LogSink) -> ShimStatus | None:
        """Run a command that is never adopted (a build): on our cancellation it is killed."""
        run_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (a local mkdir)
        fd = runs.try_lock(run_dir)
        if fd is None:
            raise BuildCommandFailed(1, f"another build runs in {run_dir}")
        try:
            runs.write_spec(run_dir, spec)
            await runs.launch(run_dir, fd)
        finally:
            os.close(fd)
        try:
            await runs.follow(run_dir, runs.Tail(run_dir, log))
        except BaseException:
            # A build is redone from scratch when asked again: this one must not go on.
            await asyncio.shield(self._abandon(run_dir, None))
            raise
        return runs.read_status(run_dir)

    async def _abandon(self, run_dir: Path, tree: AppTree | None) -> None:
        """Stop whatever an earlier run in this run dir still runs; then empty it."""
        if not run_dir.is_dir():  # noqa: ASYNC240 (one local stat)
            return
        deadline = time.monotonic() + STOP_SLACK + BUILD_GRACE
        while not runs.lock_free(run_dir) and time.monotonic() < deadline:
            runs.signal_shim(run_dir, KILL_NOW)
            await asyncio.sleep(POLL)
        uid = None if tree is None or tree.user is None else tree.user.uid
        await runs.sweep(runs.read_pid(run_dir), uid)
        await asyncio.to_thread(runs.remove_run, run_dir)

    async def remove_artifact(self, artifact: str) -> None:
        """Delete an artifact (a failed deploy's); only ever a release dir of an app's tree."""
        path = Path(artifact).absolute()  # noqa: ASYNC240 (no I/O but a getcwd)
        if path.parent.name != "builds" or path.parent.parent.parent != self.apps_dir:
            raise ValueError(f"{artifact} is not an artifact of this runtime")
        await asyncio.to_thread(remove_tree, path)

    # ------------------------------------------------------------ one-off

    async def run_oneoff(
        self, spec: OneOffSpec, log: LogSink, cancel: asyncio.Event | None = None
    ) -> OneOffResult:
        """Run a command in a writable copy of the artifact, exactly once per deployment and
        container: a runner that comes back adopts the result or follows the run to its end."""
        run_dir = oneoff_run_dir(self.root, spec)
        fields = {"app": spec.app, "deployment_id": spec.deployment_id, "release": spec.release,
                  "phase": spec.phase, "container": spec.container}
        tree = await self._tree(spec.app)
        await asyncio.to_thread(runs.prune, self.root / "runs", RUN_KEEP)
        run_dir.mkdir(parents=True, exist_ok=True)
        tail_ = runs.Tail(run_dir, log)
        launched = False
        while True:
            fd = runs.try_lock(run_dir)
            if fd is None:
                if not launched:
                    logger.info("oneoff re-attached: following the run under way", **fields)
                await runs.follow(run_dir, tail_, cancel)
                continue
            try:
                taken = runs.read_result(run_dir, OneOffResult)
                if taken is not None:
                    await tail_.pump(final=True)
                    logger.info("oneoff result adopted", exit_code=taken.exit_code, **fields)
                    return taken
                status = runs.read_status(run_dir)
                if status is not None:
                    await tail_.pump(final=True)
                    result = await asyncio.to_thread(self._take, run_dir, spec, tree, status)
                    logger.info("oneoff finished", exit_code=result.exit_code,
                                duration=round(result.duration, 3), timed_out=result.timed_out,
                                cancelled=result.cancelled, **fields)
                    return result
                if launched:
                    detail = runs.shim_log(run_dir)
                    await self._clean_interrupted(run_dir, spec, tree)
                    raise runs.SupervisorLost(run_dir, detail)
                if (run_dir / SPEC_FILE).exists() or (run_dir / PID_FILE).exists():
                    logger.warning("oneoff interrupted earlier: running it again", **fields)
                    await log.line("an earlier run of this command was interrupted (its "
                                   "supervisor is gone): what was left of it was stopped and "
                                   "the command runs again", "err")
                    await self._clean_interrupted(run_dir, spec, tree)
                await asyncio.to_thread(runs.clear, run_dir)
                tail_ = runs.Tail(run_dir, log)
                if cancel is not None and cancel.is_set():
                    return OneOffResult(exit_code=TIMEOUT_EXIT_CODE, duration=0.0,
                                        cancelled=True)
                await self._start_oneoff(run_dir, spec, tree, fd)
                launched = True
                logger.info("oneoff started", **fields)
            finally:
                os.close(fd)

    async def _start_oneoff(self, run_dir: Path, spec: OneOffSpec, tree: AppTree,
                            lock_fd: int) -> None:
        """Make the work copy, write the shim's spec, start the shim (it takes the lock)."""
        artifact = Path(spec.artifact)
        if not artifact.is_dir():  # noqa: ASYNC240 (one local stat)
            raise StartError(f"artifact {spec.artifact} does not exist")
        work = self._work_dir(spec, tree)
        await asyncio.to_thread(remove_tree, work)
        await asyncio.to_thread(copy_tree, artifact, work)
        await asyncio.to_thread(own_tree, work, tree.user)
        shim_spec = self._shim_spec(
            tree, spec.command, work, buildpacks.release_env(
                oneoff_env(spec.env, self._host(tree)),
                self._release_env(spec.app, spec.artifact), work),
            run_dir / runs.STDOUT, run_dir / runs.STDERR, timeout=spec.timeout,
            kill_grace=spec.kill_grace, memory=spec.memory)
        await asyncio.to_thread(runs.write_spec, run_dir, shim_spec)
        try:
            await runs.launch(run_dir, lock_fd)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(remove_tree, work))
            raise

    def _work_dir(self, spec: OneOffSpec, tree: AppTree) -> Path:
        if spec.commit:
            return predeploy_dir(spec.artifact, spec.deployment_id)
        return tree.work / f"{safe_name(spec.container)}-{secrets.token_hex(4)}"

    def _is_work_dir(self, path: Path, spec: OneOffSpec, tree: AppTree) -> bool:
        """Whether a recorded cwd is a work copy of this command (never an artifact)."""
        return path.parent == tree.work or (
            spec.commit and path == predeploy_dir(spec.artifact, spec.deployment_id))

    def _take(self, run_dir: Path, spec: OneOffSpec, tree: AppTree,
              status: ShimStatus) -> OneOffResult:
        """Turn an ended run into its result, once: keep or drop the work copy, record it."""
        shim_spec = runs.read_spec(run_dir)
        artifact = None
        if shim_spec is not None and self._is_work_dir(Path(shim_spec.cwd), spec, tree):
            work = Path(shim_spec.cwd)
            ended_well = status.exit_code == 0 and not (status.timed_out or status.cancelled)
            if spec.commit and ended_well:
                seal_tree(work, tree.user)
                artifact = str(work)
            else:
                remove_tree(work)
        result = oneoff_result(status, artifact)
        runs.write_result(run_dir, result)
        return result

    async def _clean_interrupted(self, run_dir: Path, spec: OneOffSpec, tree: AppTree) -> None:
        """Nothing of a run whose shim is gone may remain: its processes, its work copy."""
        uid = None if tree.user is None else tree.user.uid
        await runs.sweep(runs.read_pid(run_dir), uid)
        shim_spec = runs.read_spec(run_dir)
        if shim_spec is not None and self._is_work_dir(Path(shim_spec.cwd), spec, tree):
            await asyncio.to_thread(remove_tree, Path(shim_spec.cwd))
        await asyncio.to_thread(runs.clear, run_dir)

    # ------------------------------------------------------------ instances

    async def start_instance(self, spec: InstanceSpec) -> InstanceRef:
        """Start one instance under a shim in its artifact dir with $PORT; record it on disk."""
        artifact = Path(spec.artifact)
        if not artifact.is_dir():  # noqa: ASYNC240 (one local stat)
            raise StartError(f"artifact {spec.artifact} does not exist")
        for rec in self._records(spec.app):
            # A restarted scheduler asking again for the same slot re-attaches, never doubles it.
            if (rec.deployment_id, rec.process, rec.index) == (
                    spec.deployment_id, spec.process, spec.index) and record_alive(rec):
                logger.info("instance re-attached", app=spec.app, instance=rec.id)
                return rec.ref()
        tree = await self._tree(spec.app)
        id_ = instance_id(spec.app, spec.release, spec.process, spec.index, secrets.token_hex(3))
        taken = self._ports_taken()
        port = next(p for p in iter(free_port, None) if p not in taken)
        folder = instances_dir(self.root, spec.app)
        run_dir = folder / f"{safe_name(id_)}.run"
        run_dir.mkdir(parents=True, exist_ok=True)
        logfile = log_path(self.root, spec.app, id_)
        fields = {"app": spec.app, "deployment_id": spec.deployment_id, "release": spec.release,
                  "instance": id_, "port": port}
        logger.info("instance starting", **fields)
        runs.write_spec(run_dir, self._shim_spec(
            tree, spec.command, artifact, buildpacks.release_env(
                instance_env(spec.env, port, self._host(tree)),
                self._release_env(spec.app, spec.artifact), artifact),
            logfile, logfile, timeout=None, kill_grace=INSTANCE_GRACE))
        intent = InstanceRecord(
            id=id_, app=spec.app, process=spec.process, index=spec.index, release=spec.release,
            deployment_id=spec.deployment_id, artifact=str(artifact), command=spec.command,
            pid=0, pgid=0, port=port, started_at=datetime.now(UTC), log=str(logfile),
            run_dir=str(run_dir))
        # Written before the launch: a scheduler killed between the launch and the record
        # leaves the shim findable (and adopted by the next look), never untracked.
        write_atomic(run_dir / INTENT_FILE, msgspec.json.encode(intent))
        proc = await runs.launch(run_dir, None)
        state = proc_state(proc.pid)
        record = msgspec.structs.replace(intent, pid=proc.pid, pgid=proc.pid,
                                         proc_start=state[1] if state else None)
        self._write(record)  # before anything can fail: a crash here must not lose the process
        (run_dir / INTENT_FILE).unlink(missing_ok=True)  # noqa: ASYNC240 (the record took over)
        self._procs[id_] = proc
        try:
            await self._until_started(run_dir, proc)
            exited = await _exits_early(proc, record.ref())
        finally:
            (run_dir / SPEC_FILE).unlink(missing_ok=True)  # noqa: ASYNC240 (the config goes)
        if not exited:
            logger.info("instance started", pid=proc.pid, **fields)
            return record.ref()
        status = runs.read_status(run_dir)
        code = status.exit_code if status is not None else proc.returncode
        lines = tail(logfile.read_text(errors="replace")) if logfile.exists() else []
        self._forget(record)
        shown = "\n".join(lines) if lines else runs.shim_log(run_dir)
        logger.warning("instance exited at once", exit_code=code, **fields)
        raise StartError(f"{spec.process} instance {id_} exited at once with code "
                         f"{code}; last lines of its log:\n{shown}")

    async def _until_started(self, run_dir: Path, proc: asyncio.subprocess.Process) -> None:
        """Wait until the shim started the command (its pid file) or ended; bounded."""
        deadline = time.monotonic() + START_WAIT
        pause = FIRST_POLL
        while not (run_dir / PID_FILE).exists() and proc.returncode is None:  # noqa: ASYNC240
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), pause)
            pause = min(pause * 2, POLL)

    async def is_alive(self, ref: InstanceRef) -> bool:
        """Whether an instance's process still runs (for wait_healthy's alive)."""
        rec = self._find(ref.id)
        return rec is not None and record_alive(rec)

    async def stop_instance(self, ref: InstanceRef, grace: float) -> None:
        """SIGTERM to its whole tree, up to grace, SIGKILL; drop the record. Gone is fine."""
        rec = self._find(ref.id)
        if rec is None:
            return
        fields = {"app": rec.app, "deployment_id": rec.deployment_id, "release": rec.release,
                  "instance": rec.id}
        run_dir = Path(rec.run_dir) if rec.run_dir else None
        if record_alive(rec):
            logger.info("instance stopping", grace=grace, **fields)
            if run_dir is None:  # a record from before shims: its process group
                signal_group(rec.pgid, signal.SIGTERM)
                if not await self._wait_exit(rec, grace):
                    signal_group(rec.pgid, signal.SIGKILL)
            else:
                # The shim stops its tree: SIGTERM, this grace, SIGKILL; then it ends.
                (run_dir / GRACE_FILE).write_text(f"{grace}\n")  # noqa: ASYNC240 (a few bytes)
                self._signal(rec, signal.SIGTERM)
                if not await self._wait_exit(rec, grace + STOP_SLACK):
                    logger.info("instance killed after grace", grace=grace, **fields)
                    self._signal(rec, KILL_NOW)
                    if not await self._wait_exit(rec, STOP_SLACK):
                        self._signal(rec, signal.SIGKILL)
            await self._wait_exit(rec, None)
        if run_dir is None:
            signal_group(rec.pgid, signal.SIGKILL)
        else:
            # Only a shim that died abnormally leaves anything: whatever it did goes now.
            await runs.sweep(runs.read_pid(run_dir), uid_of(rec.app) if self.isolated else None)
        self._forget(rec)
        logger.info("instance stopped", **fields)

    def _signal(self, rec: InstanceRecord, sig: signal.Signals) -> None:
        if record_alive(rec):
            with contextlib.suppress(ProcessLookupError):
                os.kill(rec.pid, sig)

    async def list_instances(self, app: str) -> list[InstanceRef]:
        """Live instances of an app from their records; records of dead ones are removed
        (with whatever their dead shim left running)."""
        refs = []
        for rec in self._records(app):
            if record_alive(rec):
                refs.append(rec.ref())
            else:
                logger.info("instance record of a dead process removed", app=app, instance=rec.id)
                if rec.run_dir:
                    await runs.sweep(runs.read_pid(Path(rec.run_dir)),
                                     uid_of(app) if self.isolated else None)
                self._forget(rec)
        return sorted(refs, key=lambda r: r.id)

    async def follow_output(self, app: str, ref: InstanceRef,
                            cursor: str | None = None) -> AsyncIterator[OutputLine]:
        """The instance's output file (stdout and stderr together) by lines, from the byte
        offset `cursor` names, then as it grows (looked at every OUTPUT_POLL seconds)."""
        path = log_path(self.root, app, ref.id)
        read_at = output.file_cursor(cursor)
        pending = b""
        while True:
            data = await asyncio.to_thread(output.read_from, path, read_at)
            if data is None:  # truncated: from its start again
                read_at, pending = 0, b""
                continue
            if not data:
                await asyncio.sleep(OUTPUT_POLL)
                continue
            read_at += len(data)
            lines, pending = output.complete_lines(pending, data, read_at)
            for line in lines:
                yield line

    async def close(self) -> None:
        """Nothing to release: instances keep running, their records stay for the next start."""
        self._procs.clear()

    # ------------------------------------------------------------ records

    def _records(self, app: str) -> list[InstanceRecord]:
        folder = instances_dir(self.root, app)
        self._adopt(folder)
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

    def _adopt(self, folder: Path) -> None:
        """Give a record to each instance whose scheduler died between launching its shim and
        recording it (its run dir holds the intent, no record names it): the live shim is
        adopted as it is; a run whose shim never started, or is gone, is removed."""
        for intent_path in folder.glob(f"*.run/{INTENT_FILE}") if folder.is_dir() else []:
            run_dir = intent_path.parent
            try:
                intent = msgspec.json.decode(intent_path.read_bytes(), type=InstanceRecord)
            except (OSError, msgspec.DecodeError):
                continue
            if record_path(self.root, intent.app, intent.id).exists():
                continue  # recorded (or being recorded by a live launcher)
            shim = runs.read_pid(run_dir)
            if shim is None:
                age = time.time() - intent.started_at.timestamp()
                if age > START_WAIT + STOP_SLACK:  # a launch in progress is younger than that
                    runs.remove_run(run_dir)
                continue
            adopted = msgspec.structs.replace(intent, pid=shim.pid, pgid=shim.pid,
                                              proc_start=shim.start)
            if record_alive(adopted):
                logger.warning("untracked instance adopted", app=intent.app, instance=intent.id,
                               pid=shim.pid)
                self._write(adopted)
            else:
                runs.remove_run(run_dir)

    def _write(self, rec: InstanceRecord) -> None:
        path = record_path(self.root, rec.app, rec.id)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_bytes(msgspec.json.encode(rec))
        os.replace(tmp, path)  # a reader never sees half a record

    def _forget(self, rec: InstanceRecord) -> None:
        record_path(self.root, rec.app, rec.id).unlink(missing_ok=True)
        if rec.run_dir:
            runs.remove_run(Path(rec.run_dir))
        self._procs.pop(rec.id, None)

    async def _wait_exit(self, rec: InstanceRecord, within: float | None) -> bool:
        """Wait for the instance's shim to exit (polled: after a restart it is not our child)."""
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
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


async def _exits_early(proc: asyncio.subprocess.Process, ref: InstanceRef) -> bool:
    """Whether an instance's shim ends within EARLY_EXIT, unless its port accepts before."""
    ended = asyncio.ensure_future(proc.wait())
    up = asyncio.ensure_future(listening(ref.host, ref.port or 0))
    try:
        await asyncio.wait({ended, up}, timeout=EARLY_EXIT,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (ended, up):
            task.cancel()
    return proc.returncode is not None

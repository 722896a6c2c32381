"""The process runtime against real shims, real subprocesses, real users and loopback ports."""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import signal
import stat
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from dockyard.contract.plan import Buildpack, Health
from dockyard.plan.detect import read_build_files
from dockyard.plan.merge import build_plan, read_manifest_files
from dockyard.runtime import runs
from dockyard.runtime.base import (
    TIMEOUT_EXIT_CODE,
    BuildError,
    ContainmentError,
    InstanceSpec,
    OneOffSpec,
    StartError,
)
from dockyard.runtime.health import wait_healthy
from dockyard.runtime.process import (
    InstanceRecord,
    ProcessRuntime,
    instance_env,
    instance_id,
    instances_dir,
    oneoff_env,
    oneoff_run_dir,
    parse_proc_stat,
    predeploy_dir,
    record_path,
    safe_name,
    shell_argv,
)
from dockyard.runtime.runs import split_lines
from dockyard.runtime.shim import PID_FILE, STATUS_FILE
from dockyard.runtime.users import user_name
from tests.runtime.process_support import (
    IS_ROOT,
    gone,
    marked_processes,
    reachable_tmp,
    remove,
    require_root,
    until,
)

# Found on PATH: the app's user may not reach the test's own interpreter (e.g. under /root).
PY = "python3"
MIB = 1024 * 1024
APP = "shop"
OTHER = "other-shop"


class Lines:
    """A LogSink keeping every line with its stream and when it arrived."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, float]] = []

    async def line(self, text: str, stream: str = "out") -> None:
        self.lines.append((text, stream, time.monotonic()))

    def texts(self, stream: str | None = None) -> list[str]:
        return [t for t, s, _ in self.lines if stream is None or s == stream]

    def value(self, key: str) -> int:
        """The number printed as `key=N`."""
        return next(int(t.split("=", 1)[1]) for t in self.texts() if t.startswith(f"{key}="))


@pytest.fixture
def mark() -> Iterator[str]:
    """A value every command's env carries; at the end no process may still carry it."""
    value = uuid.uuid4().hex
    yield value
    leftovers = marked_processes(value)
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert leftovers == [], "processes outlived the test"


@pytest.fixture
def apps_dir() -> Iterator[Path]:
    """The apps' trees, where their users can reach them (pytest's tmp dirs are 0700)."""
    path = reachable_tmp("dockyard-apps-")
    yield path
    remove(path)


@pytest.fixture
async def rt(tmp_path: Path, apps_dir: Path) -> AsyncIterator[ProcessRuntime]:
    runtime = ProcessRuntime(tmp_path / "process", apps_dir, data_dir=tmp_path)
    yield runtime
    for app in (APP, OTHER):
        await runtime.remove_app(app)
    await runtime.close()


def again(rt: ProcessRuntime) -> ProcessRuntime:
    """A runtime as a restarted service makes it: same dirs, nothing in memory."""
    return ProcessRuntime(rt.root, rt.apps_dir, data_dir=rt.data_dir)


@pytest.fixture
async def artifact(rt: ProcessRuntime, tmp_path: Path) -> str:
    src = tmp_path / "src"
    src.mkdir()
    (src / "index.html").write_text("hello\n")
    return await rt.build(APP, "b1", src, Lines())


def oneoff(artifact: str, command: str, mark: str, **kw: object) -> OneOffSpec:
    env = {"DOCKYARD_TEST_MARK": mark, **kw.pop("env", {})}  # type: ignore[dict-item]
    fields: dict[str, object] = {
        "app": APP, "deployment_id": "d" * 32, "release": 3, "phase": "release",
        "container": "release-1", "artifact": artifact, "command": command,
        "env": env, "timeout": 30.0, "memory": 512 * MIB, "kill_grace": 2.0}
    fields.update(kw)
    return OneOffSpec(**fields)  # type: ignore[arg-type]


def instance(artifact: str, command: str, mark: str, process: str = "web",
             app: str = APP, env: dict[str, str] | None = None) -> InstanceSpec:
    return InstanceSpec(app=app, deployment_id="d" * 32, release=3, process=process, index=1,
                        artifact=artifact, command=command,
                        env={"DOCKYARD_TEST_MARK": mark, **(env or {})})


def writable_entries(root: Path) -> list[Path]:
    paths = [root, *root.rglob("*")]
    return [p for p in paths if not p.is_symlink() and p.lstat().st_mode & 0o222]


def host(rt: ProcessRuntime, app: str = APP) -> dict[str, str]:
    """The host env commands see: TMPDIR is the app's own, and so is HOME when it has a user
    of its own."""
    env = {**os.environ, "TMPDIR": str(rt.apps_dir / app / "tmp")}
    return {**env, "HOME": str(rt.apps_dir / app / "home")} if IS_ROOT else env


def record(rt: ProcessRuntime, app: str, id_: str) -> InstanceRecord:
    return msgspec.json.decode(record_path(rt.root, app, id_).read_bytes(), type=InstanceRecord)


def counted(rt: ProcessRuntime) -> Path:
    """A file the commands append to (in the app's home: the app's user may write there)."""
    return rt.apps_dir / APP / "home" / "count"


# ---------------------------------------------------------------- pure decisions


def test_env_is_the_spec_plus_path_home_lang() -> None:
    host_env = {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "AWS_SECRET": "x"}
    assert oneoff_env({"A": "1"}, host_env) == {"PATH": "/usr/bin", "HOME": "/root",
                                                "LANG": "C.UTF-8", "A": "1"}
    assert oneoff_env({"PATH": "/app/bin"}, host_env)["PATH"] == "/app/bin"
    assert oneoff_env({}, {})["PATH"] == os.defpath
    assert instance_env({"PORT": "1", "B": "2"}, 5000, host_env) == {
        "PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "B": "2", "PORT": "5000"}


def test_values() -> None:
    assert shell_argv("echo hi") == ["/bin/sh", "-c", "echo hi"]
    assert predeploy_dir("/d/shop/builds/b1", "0123456789abcdef") == Path(
        "/d/shop/builds/b1-predeploy-01234567")
    assert predeploy_dir("/d/shop/builds/b1-predeploy-01234567", "fedcba9876") == Path(
        "/d/shop/builds/b1-predeploy-fedcba98")
    assert instance_id("my-shop", 3, "web", 1, "ab12cd") == "my-shop-3-web-1-ab12cd"
    assert record_path(Path("/r"), "shop", "i1") == Path("/r/instances/shop/i1.json")
    spec = oneoff("/a", "true", "m")
    assert oneoff_run_dir(Path("/r"), spec) == Path(f"/r/runs/{'d' * 32}-release-1")
    for bad in ("", "..", "a/b"):
        with pytest.raises(ValueError):
            safe_name(bad)
    assert split_lines(b"a\nb\r\nrest") == ([b"a", b"b\r"], b"rest")
    assert split_lines(b"\n") == ([b""], b"")
    assert split_lines(b"abcdefg", max_len=3) == ([b"abc", b"def", b"g"], b"")
    assert parse_proc_stat("12 (a b) c) S 1 12 12 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 777 0") == (
        "S", 777)
    assert user_name("shop") == user_name("shop") != user_name("shop2")
    assert user_name("x" * 63).startswith("dy-") and len(user_name("x" * 63)) == 15


# ---------------------------------------------------------------- build


async def test_build_copies_without_git_and_is_read_only(
        rt: ProcessRuntime, tmp_path: Path, apps_dir: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / ".git").mkdir()
    (src / "app.py").write_text("print('hi')\n")
    (src / "sub" / "data.txt").write_text("data\n")
    (src / ".git" / "HEAD").write_text("ref: main\n")
    (src / "link").symlink_to("app.py")
    (src / "setuid-tool").write_text("#!/bin/sh\n")
    (src / "setuid-tool").chmod(0o4755)
    artifact = Path(await rt.build(APP, "b1", src, Lines()))
    assert artifact == apps_dir / APP / "builds" / "b1"
    assert (artifact / "app.py").read_text() == "print('hi')\n"
    assert (artifact / "sub" / "data.txt").read_text() == "data\n"
    assert (artifact / "link").is_symlink()
    assert not (artifact / ".git").exists()
    assert writable_entries(artifact) == []
    assert not (artifact / "setuid-tool").stat().st_mode & (stat.S_ISUID | stat.S_ISGID)
    assert stat.S_IMODE((src / "app.py").stat().st_mode) & 0o200  # the source is left alone


async def test_build_command_runs_in_the_build_dir(
        rt: ProcessRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_FAKE_SECRET", "hunter2-platform-secret")
    src = tmp_path / "src"
    src.mkdir()
    (src / "in.txt").write_text("x\n")
    log = Lines()
    artifact = Path(await rt.build(
        APP, "b2", src, log, env={"NODE_ENV": "production"},
        command="cat in.txt > out.txt; echo built; echo warn >&2; env > env.txt"))
    assert (artifact / "out.txt").read_text() == "x\n"
    seen = dict(line.split("=", 1) for line in (artifact / "env.txt").read_text().splitlines())
    seen.pop("PWD")  # the shell adds it
    assert seen == oneoff_env({"NODE_ENV": "production"}, host(rt))
    assert ("built", "out") in [(t, s) for t, s, _ in log.lines]
    assert ("warn", "err") in [(t, s) for t, s, _ in log.lines]
    assert writable_entries(artifact) == []
    assert list((rt.root / "runs").iterdir()) == []  # the build's run dir is gone


async def test_build_command_failure_raises_build_error(rt: ProcessRuntime, tmp_path: Path,
                                                        apps_dir: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    log = Lines()
    with pytest.raises(BuildError) as err:
        await rt.build(APP, "b3", src, log, command="echo compiling; exit 3")
    assert err.value.exit_code == 3  # type: ignore[attr-defined]
    assert "exited with code 3" in str(err.value)
    assert "compiling" in log.texts("out")
    assert not (apps_dir / APP / "builds" / "b3").exists()


async def test_build_command_timeout(rt: ProcessRuntime, tmp_path: Path, mark: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    log = Lines()
    with pytest.raises(BuildError) as err:
        await rt.build(APP, "b4", src, log, env={"DOCKYARD_TEST_MARK": mark},
                       command="echo self=$$; sleep 60", time_limit=0.5)
    assert err.value.exit_code == TIMEOUT_EXIT_CODE  # type: ignore[attr-defined]
    assert "timed out after 0.5s" in str(err.value)
    assert gone(log.value("self"))


# ---------------------------------------------------------------- one-off


async def test_oneoff_streams_output_live_and_returns_exit_code(
        rt: ProcessRuntime, artifact: str, mark: str) -> None:
    log = Lines()
    result = await rt.run_oneoff(
        oneoff(artifact, "echo first; sleep 1; echo second >&2; exit 7", mark), log,
        asyncio.Event())
    finished = time.monotonic()
    assert result.exit_code == 7
    assert not result.timed_out and not result.cancelled and result.artifact is None
    assert log.texts("out") == ["first"]
    assert log.texts("err") == ["second"]
    first_at = log.lines[0][2]
    assert finished - first_at >= 0.8  # it arrived while the command still ran
    assert result.duration >= 1


async def test_oneoff_env_is_exactly_the_spec(
        rt: ProcessRuntime, artifact: str, mark: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_FAKE_SECRET", "hunter2-platform-secret")
    log = Lines()
    spec = oneoff(artifact, "env", mark, env={"APP": "shop", "DATABASE_URL": "postgres://x"})
    result = await rt.run_oneoff(spec, log)
    assert result.exit_code == 0
    seen = dict(t.split("=", 1) for t in log.texts("out"))
    seen.pop("PWD")  # the shell adds it
    assert seen == oneoff_env(spec.env, host(rt))
    assert "DOCKYARD_FAKE_SECRET" not in seen
    assert not any("hunter2" in t for t in log.texts())
    # The run's files keep no config once the result is taken.
    assert not (oneoff_run_dir(rt.root, spec) / "spec.json").exists()


async def test_an_apps_temp_files_stay_in_its_tree_and_go_with_it(
        rt: ProcessRuntime, artifact: str, mark: str) -> None:
    # Seen by the suite's leftovers check: an app's `mktemp -d` wrote into the host's /tmp,
    # where nothing removed it (and every app shared it).
    log = Lines()
    spec = oneoff(artifact, "d=$(mktemp -d) && touch $d/made && echo $d", mark)
    assert (await rt.run_oneoff(spec, log)).exit_code == 0
    [made] = log.texts("out")
    assert Path(made).parent == rt.apps_dir / APP / "tmp"
    assert (Path(made) / "made").exists()
    await rt.remove_app(APP)
    assert not Path(made).exists()  # noqa: ASYNC240 (one stat, in a test)


async def test_oneoff_timeout_kills_the_whole_tree(
        rt: ProcessRuntime, artifact: str, mark: str) -> None:
    log = Lines()
    spec = oneoff(artifact, "sleep 60 & echo child=$!; echo self=$$; wait", mark,
                  timeout=1.0, kill_grace=2.0)
    result = await rt.run_oneoff(spec, log)
    assert result.exit_code == TIMEOUT_EXIT_CODE
    assert result.timed_out and not result.cancelled
    assert 1 <= result.duration < 2.5  # SIGTERM was enough: no wait for the grace
    assert gone(log.value("self")) and gone(log.value("child"))


async def test_oneoff_ignoring_sigterm_is_killed_after_grace(
        rt: ProcessRuntime, artifact: str, mark: str) -> None:
    log = Lines()
    spec = oneoff(artifact, "trap '' TERM; sleep 60 & echo child=$!; echo self=$$; wait", mark,
                  timeout=0.5, kill_grace=1.0)
    result = await rt.run_oneoff(spec, log)
    assert result.exit_code == TIMEOUT_EXIT_CODE and result.timed_out
    assert 1.5 <= result.duration < 4
    assert gone(log.value("self")) and gone(log.value("child"))


async def test_oneoff_memory_limit(rt: ProcessRuntime, artifact: str, mark: str) -> None:
    command = f"{PY} -c 'b = bytearray(600 * 1024 * 1024); print(len(b))'"
    small, big = Lines(), Lines()
    limited = await rt.run_oneoff(oneoff(artifact, command, mark, memory=256 * MIB,
                                         container="release-1"), small)
    assert limited.exit_code != 0
    assert any("MemoryError" in t for t in small.texts("err"))
    enough = await rt.run_oneoff(oneoff(artifact, command, mark, memory=1024 * MIB,
                                        container="release-2"), big)
    assert enough.exit_code == 0
    assert big.texts("out") == [str(600 * MIB)]


async def test_oneoff_changes_are_discarded(
        rt: ProcessRuntime, artifact: str, mark: str, apps_dir: Path) -> None:
    log = Lines()
    result = await rt.run_oneoff(
        oneoff(artifact, "echo changed > index.html; echo new > made.txt; cat index.html", mark),
        log)
    assert result.exit_code == 0 and result.artifact is None
    assert log.texts("out") == ["changed"]  # the copy was writable
    assert (Path(artifact) / "index.html").read_text() == "hello\n"
    assert not (Path(artifact) / "made.txt").exists()
    assert list((apps_dir / APP / "work").iterdir()) == []
    assert sorted(p.name for p in (apps_dir / APP / "builds").iterdir()) == ["b1"]


async def test_oneoff_commit_makes_a_new_immutable_artifact(
        rt: ProcessRuntime, artifact: str, mark: str) -> None:
    spec = oneoff(artifact, "echo compiled > assets.txt", mark, commit=True, phase="predeploy",
                  deployment_id="0123456789abcdef")
    result = await rt.run_oneoff(spec, Lines())
    assert result.exit_code == 0
    assert result.artifact == str(Path(artifact).parent / "b1-predeploy-01234567")
    new = Path(result.artifact)
    assert (new / "assets.txt").read_text() == "compiled\n"
    assert (new / "index.html").read_text() == "hello\n"
    assert writable_entries(new) == []
    assert not (Path(artifact) / "assets.txt").exists()
    await rt.remove_artifact(result.artifact)
    assert not new.exists()  # noqa: ASYNC240 (one local stat)


async def test_oneoff_commit_failure_leaves_no_artifact(
        rt: ProcessRuntime, artifact: str, mark: str) -> None:
    spec = oneoff(artifact, "echo half > assets.txt; exit 2", mark, commit=True,
                  deployment_id="0123456789abcdef")
    result = await rt.run_oneoff(spec, Lines())
    assert result.exit_code == 2 and result.artifact is None
    assert sorted(p.name for p in Path(artifact).parent.iterdir()) == ["b1"]


async def test_oneoff_cancel_stops_it(rt: ProcessRuntime, artifact: str, mark: str) -> None:
    log = Lines()
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, cancel.set)
    result = await rt.run_oneoff(oneoff(artifact, "echo self=$$; sleep 60", mark), log, cancel)
    assert result.cancelled and not result.timed_out
    assert result.exit_code == TIMEOUT_EXIT_CODE
    assert result.duration < 3
    assert gone(log.value("self"))


async def test_remove_artifact_refuses_paths_outside_builds(
        rt: ProcessRuntime, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        await rt.remove_artifact(str(tmp_path))
    assert tmp_path.exists()  # noqa: ASYNC240 (one local stat)


# ---------------------------------------------------------------- a runner that goes away


async def _started(rt: ProcessRuntime, spec: OneOffSpec) -> asyncio.Task[object]:
    """A runner's task, once its command printed `started`."""
    task: asyncio.Task[object] = asyncio.create_task(rt.run_oneoff(spec, Lines()))
    out = oneoff_run_dir(rt.root, spec) / runs.STDOUT
    assert await until(lambda: out.exists() and "started" in out.read_text(), within=15)
    return task


async def _killed(task: asyncio.Task[object]) -> None:
    """The runner goes away (its task cancelled, as when its service is killed)."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_runner_that_comes_back_reattaches_and_the_command_runs_once(
        rt: ProcessRuntime, artifact: str, mark: str) -> None:
    count = counted(rt)
    spec = oneoff(artifact, f"echo run >> {count}; echo started; sleep 1.5; echo done; exit 5",
                  mark)
    await _killed(await _started(rt, spec))
    run_dir = oneoff_run_dir(rt.root, spec)
    assert not runs.lock_free(run_dir)  # its shim goes on without a runner

    log = Lines()
    result = await again(rt).run_oneoff(spec, log)
    assert result.exit_code == 5 and not result.timed_out and not result.cancelled
    assert count.read_text() == "run\n"  # ran once
    assert log.texts("out") == ["started", "done"]  # the whole output, from its start


async def test_a_runner_that_comes_back_after_the_end_adopts_the_exit_status(
        rt: ProcessRuntime, artifact: str, mark: str) -> None:
    count = counted(rt)
    spec = oneoff(artifact, f"echo run >> {count}; echo started; sleep 0.5; echo done; exit 3",
                  mark)
    await _killed(await _started(rt, spec))
    run_dir = oneoff_run_dir(rt.root, spec)
    assert await until(lambda: (run_dir / STATUS_FILE).exists(), within=15)
    assert await until(lambda: runs.lock_free(run_dir))

    log = Lines()
    result = await again(rt).run_oneoff(spec, log)
    assert result.exit_code == 3
    assert count.read_text() == "run\n"
    assert log.texts("out") == ["started", "done"]
    # And once more, as a runner that died after the result was taken, before recording it.
    assert (await again(rt).run_oneoff(spec, Lines())).exit_code == 3
    assert count.read_text() == "run\n"


async def test_a_runner_that_comes_back_cancelled_stops_the_running_command(
        rt: ProcessRuntime, artifact: str, mark: str) -> None:
    count = counted(rt)
    spec = oneoff(artifact, f"echo run >> {count}; echo started; echo self=$$; sleep 60", mark)
    await _killed(await _started(rt, spec))
    cancel = asyncio.Event()
    cancel.set()
    log = Lines()
    result = await again(rt).run_oneoff(spec, log, cancel)
    assert result.cancelled and result.exit_code == TIMEOUT_EXIT_CODE
    assert count.read_text() == "run\n"
    assert gone(log.value("self"))


async def test_a_run_whose_supervisor_died_is_cleaned_up_and_run_again(
        rt: ProcessRuntime, artifact: str, mark: str) -> None:
    count = counted(rt)
    # The first run leaves a process in a session of its own, then waits; the second ends.
    command = (f"echo run >> {count}; [ $(wc -l < {count}) -ge 2 ] && exit 6; "
               "setsid sleep 1000 & echo started; wait")
    spec = oneoff(artifact, command, mark)
    await _killed(await _started(rt, spec))
    run_dir = oneoff_run_dir(rt.root, spec)
    shim = runs.read_pid(run_dir)
    assert shim is not None
    os.kill(shim.pid, signal.SIGKILL)  # the supervisor itself dies (an operator, the OOM killer)
    assert await until(lambda: runs.lock_free(run_dir))
    assert marked_processes(mark) != []  # what it supervised is still there

    log = Lines()
    result = await again(rt).run_oneoff(spec, log)
    assert result.exit_code == 6
    assert count.read_text() == "run\nrun\n"
    assert any("was interrupted" in t for t in log.texts("err"))
    leftovers = marked_processes(mark)
    if IS_ROOT:  # every process of the app's user that no live supervisor keeps is ended
        assert leftovers == []
    else:
        # Without an app user, a process that left the dead supervisor's session cannot be
        # told from Dockyard's own and is not found (documented): the test ends it itself.
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)


async def test_a_runner_whose_supervisor_is_killed_fails_the_command_once(
        rt: ProcessRuntime, artifact: str, mark: str) -> None:
    spec = oneoff(artifact, "echo started; sleep 60", mark)
    task = await _started(rt, spec)
    run_dir = oneoff_run_dir(rt.root, spec)
    shim = runs.read_pid(run_dir)
    assert shim is not None
    os.kill(shim.pid, signal.SIGKILL)
    with pytest.raises(runs.SupervisorLost):
        await task
    assert await until(lambda: marked_processes(mark) == [])


# ---------------------------------------------------------------- instances


async def test_instance_serves_survives_a_runtime_restart_and_stops_its_whole_tree(
        rt: ProcessRuntime, artifact: str, mark: str) -> None:
    # No `exec`: sh stays with python as its child; and a process in a session of its own.
    spec = instance(artifact, f"setsid sleep 1000 & {PY} -m http.server --bind 127.0.0.1 $PORT",
                    mark)
    ref = await rt.start_instance(spec)
    assert ref.host == "127.0.0.1" and ref.port is not None
    assert ref.id.startswith("shop-3-web-1-") and ref.process == "web" and ref.release == 3
    await wait_healthy(ref.host, ref.port, Health(path="/index.html", timeout=20),
                       lambda: rt.is_alive(ref))

    rec = record(rt, APP, ref.id)
    assert (rec.port, rec.artifact, rec.deployment_id) == (ref.port, artifact, "d" * 32)
    assert await until(lambda: len(marked_processes(mark)) == 3)  # sh, python, setsid sleep
    assert not (Path(rec.run_dir) / "spec.json").exists()  # its config is not kept on disk

    restarted = again(rt)
    assert await restarted.list_instances(APP) == [ref]
    assert await restarted.list_instances("other") == []

    await restarted.stop_instance(ref, grace=5)
    assert await until(lambda: marked_processes(mark) == [], within=3)
    assert gone(rec.pid)
    assert not record_path(rt.root, APP, ref.id).exists()
    assert await restarted.list_instances(APP) == []
    await restarted.stop_instance(ref, grace=5)  # idempotent
    await rt.stop_instance(ref, grace=5)


class _KilledHere(BaseException):
    """The scheduler dying at one line (a SIGKILL): nothing after it runs."""


async def test_an_instance_launched_by_a_scheduler_killed_before_recording_it_is_adopted(
        rt: ProcessRuntime, artifact: str, mark: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Seen in the long chaos run: the scheduler died between the shim's launch and the record;
    # the redelivered start made a second instance and the first ran on, untracked.
    spec = instance(artifact, f"exec {PY} -m http.server --bind 127.0.0.1 $PORT", mark)
    real_write = ProcessRuntime._write

    def die(self: ProcessRuntime, rec: object) -> None:
        raise _KilledHere

    monkeypatch.setattr(ProcessRuntime, "_write", die)
    with pytest.raises(_KilledHere):
        await rt.start_instance(spec)
    monkeypatch.setattr(ProcessRuntime, "_write", real_write)
    assert await until(lambda: len(marked_processes(mark)) == 1)
    folder = instances_dir(rt.root, APP)
    assert await until(lambda: any(folder.glob(f"*.run/{PID_FILE}")))  # the shim runs it

    restarted = again(rt)  # the restarted scheduler, asked for the same slot again
    [listed] = await restarted.list_instances(APP)
    ref = await restarted.start_instance(spec)
    assert ref == listed, "the launched instance was not adopted: a second one was started"
    assert len(marked_processes(mark)) == 1
    await wait_healthy(ref.host, ref.port or 0, Health(path="/", timeout=20),
                       lambda: restarted.is_alive(ref))
    await restarted.stop_instance(ref, grace=5)
    assert await until(lambda: marked_processes(mark) == [], within=5)
    assert await restarted.list_instances(APP) == []


async def test_instance_ignoring_sigterm_is_killed_after_grace(
        rt: ProcessRuntime, artifact: str, mark: str) -> None:
    ref = await rt.start_instance(
        instance(artifact, "trap '' TERM; while :; do sleep 0.1; done", mark, process="worker"))
    assert ref.port is not None  # every process type gets a PORT
    assert await rt.is_alive(ref)
    started = time.monotonic()
    await rt.stop_instance(ref, grace=0.5)
    assert 0.5 <= time.monotonic() - started < 3
    assert not await rt.is_alive(ref)


async def test_dead_instances_are_dropped_from_the_list(
        rt: ProcessRuntime, artifact: str, mark: str) -> None:
    ref = await rt.start_instance(instance(artifact, "sleep 60", mark, process="worker"))
    rec = record(rt, APP, ref.id)
    os.kill(rec.pid, signal.SIGKILL)  # its supervisor: the command goes with it
    assert await until(lambda: gone(rec.pid))
    assert await rt.list_instances(APP) == []
    assert not record_path(rt.root, APP, ref.id).exists()
    assert await until(lambda: marked_processes(mark) == [])


async def test_instance_that_exits_at_once_raises_start_error(
        rt: ProcessRuntime, artifact: str, mark: str) -> None:
    with pytest.raises(StartError) as err:
        await rt.start_instance(instance(artifact, "echo cannot bind >&2; exit 4", mark))
    assert "exited at once with code 4" in str(err.value)
    assert "cannot bind" in str(err.value)
    assert await rt.list_instances(APP) == []
    assert list((rt.root / "instances" / APP).glob("*.json")) == []


# ---------------------------------------------------------------- contained (as root)


async def test_each_app_runs_as_its_own_user_and_cannot_read_what_is_not_its_own(
        rt: ProcessRuntime, tmp_path: Path, apps_dir: Path, mark: str) -> None:
    require_root("apps as their own users")
    data = tmp_path  # the data dir: nats.url, caddy.admin and the JetStream files live there
    (data / "nats.url").write_text("nats://127.0.0.1:4222\n")
    (data / "caddy.admin").write_text("http://127.0.0.1:2019\n")
    (data / "jetstream" / "DOCKYARD_CONFIG").mkdir(parents=True)
    (data / "jetstream" / "DOCKYARD_CONFIG" / "msgs").write_text("SECRET=other-apps-secret\n")
    src = tmp_path / "src"
    src.mkdir()
    (src / "index.html").write_text("hello\n")
    theirs = await rt.build(OTHER, "o1", src, Lines())
    other = await rt.start_instance(instance(theirs, "exec sleep 1000", mark, process="worker",
                                             app=OTHER, env={"OTHER_SECRET": "s3cr3t-value"}))
    other_run = Path(record(rt, OTHER, other.id).run_dir)
    assert await until(lambda: runs.read_pid(other_run) is not None)
    other_pid = runs.read_pid(other_run)
    assert other_pid is not None
    ours = await rt.build(APP, "b1", src, Lines())

    probes = {
        "nats.url": f"cat {data}/nats.url",
        "caddy.admin": f"cat {data}/caddy.admin",
        "jetstream": f"ls {data}/jetstream",
        "other-tree": f"ls {apps_dir / OTHER}",
        "other-environ": f"cat /proc/{other_pid.child}/environ",
        "docker.sock": f"{PY} -c \"import socket; s = socket.socket(socket.AF_UNIX); "
                       "s.connect('/var/run/docker.sock')\"",
        "release-dir": f"touch {ours}/index.html",
    }
    command = "; ".join(f"if {cmd} >/dev/null 2>&1; then echo GOT {name}; "
                        f"else echo REFUSED {name}; fi" for name, cmd in probes.items())
    log = Lines()
    result = await rt.run_oneoff(oneoff(ours, command + "; setsid sleep 1000 & exit 0", mark),
                                 log)
    assert result.exit_code == 0
    assert log.texts("out") == [f"REFUSED {name}" for name in probes]
    await rt.stop_instance(other, grace=1)
    assert await until(lambda: marked_processes(mark) == [])  # the setsid sleep too

    ours_user = pwd.getpwnam(user_name(APP))
    theirs_user = pwd.getpwnam(user_name(OTHER))
    assert ours_user.pw_uid != theirs_user.pw_uid and 0 not in (ours_user.pw_uid,
                                                                 theirs_user.pw_uid)
    assert ours_user.pw_shell.endswith(("nologin", "false"))
    docker = {g.gr_gid for g in grp.getgrall() if g.gr_name == "docker"}
    assert not set(os.getgrouplist(ours_user.pw_name, ours_user.pw_gid)) & docker
    modes = {p: (stat.S_IMODE(p.stat().st_mode), p.stat().st_uid, p.stat().st_gid)
             for p in (data, apps_dir, apps_dir / APP, Path(ours))}
    assert modes == {data: (0o700, 0, 0), apps_dir: (0o711, 0, 0),
                     apps_dir / APP: (0o750, 0, ours_user.pw_gid),
                     Path(ours): (0o550, 0, ours_user.pw_gid)}


async def test_a_fork_bomb_stops_at_the_apps_process_limit(
        tmp_path: Path, apps_dir: Path, mark: str) -> None:
    require_root("the process limit of an app's own user")
    rt = ProcessRuntime(tmp_path / "process", apps_dir, data_dir=tmp_path, pids_limit=64)
    try:
        src = tmp_path / "src"
        src.mkdir()
        artifact = await rt.build(APP, "b1", src, Lines())
        # The limit is checked first: without it the bomb is never lit.
        command = ("grep -q 'Max processes *64 *64' /proc/self/limits || exit 9; "
                   "bomb() { bomb | bomb & }; bomb; sleep 2; echo still-here")
        log = Lines()
        result = await rt.run_oneoff(oneoff(artifact, command, mark, timeout=20.0), log)
        assert result.exit_code != 9, "no process limit"
        assert not result.timed_out
        assert await until(lambda: marked_processes(mark) == [], within=10)
    finally:
        await rt.remove_app(APP)


async def test_an_apps_dir_its_users_cannot_reach_is_refused_naming_why(
        tmp_path: Path) -> None:
    require_root("apps as their own users")
    rt = ProcessRuntime(tmp_path / "process", tmp_path / "apps", data_dir=tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    blocked = next(p for p in reversed(tmp_path.parents) if not p.stat().st_mode & 0o001)
    with pytest.raises(ContainmentError, match="DOCKYARD_APPS_DIR") as err:
        await rt.build(APP, "b1", src, Lines())
    assert str(blocked) in str(err.value) and isinstance(err.value, BuildError)
    with pytest.raises(KeyError):
        pwd.getpwnam(user_name(APP))


# ---------------------------------------------------------------- detected builds


def detected(src: Path) -> Buildpack:
    """The buildpack the plan detects in a source tree."""
    return build_plan({**read_manifest_files(src), **read_build_files(src),
                       "Procfile": "web: x\n"}).buildpack


@pytest.mark.timeout(600)
async def test_a_python_build_makes_a_venv_as_the_app_user_and_reuses_it(
        rt: ProcessRuntime, tmp_path: Path, mark: str) -> None:
    require_root("detected builds run as the app's user")
    src = tmp_path / "src"
    src.mkdir()
    (src / "requirements.txt").write_text("itsdangerous==2.2.0\n")
    (src / ".venv").mkdir()  # a venv that came with the source is never used
    (src / ".venv" / "stale").write_text("x")
    build = detected(src)
    first = Lines()
    artifact = Path(await rt.build(APP, "b1", src, first, buildpack=build))
    assert "cache miss: installing .venv (requirements.txt)" in first.texts()
    assert not (artifact / ".venv" / "stale").exists()
    assert (artifact / ".venv" / "bin" / "python").exists() and writable_entries(artifact) == []
    cache = rt.apps_dir / APP / "cache"
    app_uid = pwd.getpwnam(user_name(APP)).pw_uid
    # The installer ran as the app's user: its cache and the kept venv are that user's.
    assert cache.stat().st_uid == app_uid and (cache / "deps").stat().st_uid == app_uid
    assert {p.stat().st_uid for p in (cache / "deps").iterdir()} == {app_uid}
    second = Lines()
    again_artifact = Path(await rt.build(APP, "b2", src, second, buildpack=build))
    assert ("cache hit: .venv reused (requirements.txt unchanged): nothing installed"
            in second.texts())
    assert not any("Installed" in t or "Installing" in t for t in second.texts())

    # Every one-off (a throwaway copy at another path) and every instance finds the release's
    # own venv first on PATH, and its Python imports the release's packages.
    probe = "command -v python; python -c 'import itsdangerous, sys; print(sys.prefix)'"
    log = Lines()
    result = await rt.run_oneoff(oneoff(str(again_artifact), probe, mark), log)
    assert result.exit_code == 0, log.texts()
    work, prefix = log.texts("out")
    assert work.startswith(str(rt.apps_dir / APP / "work")) and work.endswith("/.venv/bin/python")
    assert prefix == work.removesuffix("/bin/python")
    out = rt.apps_dir / APP / "home" / "instance.txt"
    ref = await rt.start_instance(instance(
        str(again_artifact), f"({probe}; echo $WEB_CONCURRENCY) > {out}; exec sleep 30", mark))
    try:
        assert await until(lambda: out.exists() and len(out.read_text().split()) == 3, 10)
        assert out.read_text().split() == [f"{again_artifact}/.venv/bin/python",
                                           f"{again_artifact}/.venv", "2"]
    finally:
        await rt.stop_instance(ref, 1.0)


async def test_a_missing_interpreter_is_a_build_error(rt: ProcessRuntime, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "requirements.txt").write_text("itsdangerous==2.2.0\n")
    (src / ".python-version").write_text("3.99\n")
    with pytest.raises(BuildError, match=r"^\.python-version: asks for Python 3\.99, which is "
                                         r"not installed here \(found: 3\."):
        await rt.build(APP, "b1", src, Lines(), buildpack=detected(src))
    assert not (rt.apps_dir / APP / "builds" / "b1").exists()

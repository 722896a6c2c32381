"""The process runtime against real subprocesses and real loopback ports."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import stat
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
from dockyard.runtime.base import (
    TIMEOUT_EXIT_CODE,
    BuildError,
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
    memory_limit,
    oneoff_env,
    parse_proc_stat,
    predeploy_dir,
    record_path,
    safe_name,
    shell_argv,
    split_lines,
)
from dockyard.schemas.plan import Health

PY = sys.executable
MIB = 1024 * 1024


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


def gone(pid: int) -> bool:
    """No such process, or only a zombie left of it."""
    try:
        state, _ = parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            text = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(name))
    return members


def marked_processes(mark: str) -> list[int]:
    """Live processes whose environment carries this test's mark."""
    needle = f"DOCKYARD_TEST_MARK={mark}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or gone(int(name)):
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(name))
    return found


async def until(check: object, timeout: float = 5.0) -> bool:
    """Poll a no-argument callable until it is true."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


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
async def rt(tmp_path: Path) -> AsyncIterator[ProcessRuntime]:
    runtime = ProcessRuntime(tmp_path / "process")
    yield runtime
    await runtime.close()


@pytest.fixture
async def artifact(rt: ProcessRuntime, tmp_path: Path) -> str:
    src = tmp_path / "src"
    src.mkdir()
    (src / "index.html").write_text("hello\n")
    return await rt.build("shop", "b1", src, Lines())


def oneoff(artifact: str, command: str, mark: str, **kw: object) -> OneOffSpec:
    fields: dict[str, object] = {
        "app": "shop", "deployment_id": "d" * 32, "release": 3, "phase": "release",
        "container": "release-1", "artifact": artifact, "command": command,
        "env": {"DOCKYARD_TEST_MARK": mark}, "timeout": 30.0, "memory": 512 * MIB,
        "kill_grace": 2.0}
    fields.update(kw)
    return OneOffSpec(**fields)  # type: ignore[arg-type]


def instance(artifact: str, command: str, mark: str, process: str = "web") -> InstanceSpec:
    return InstanceSpec(app="shop", deployment_id="d" * 32, release=3, process=process, index=1,
                        artifact=artifact, command=command, env={"DOCKYARD_TEST_MARK": mark})


def writable_entries(root: Path) -> list[Path]:
    paths = [root, *root.rglob("*")]
    return [p for p in paths if not p.is_symlink() and p.lstat().st_mode & 0o222]


# ---------------------------------------------------------------- pure decisions


def test_env_is_the_spec_plus_path_home_lang() -> None:
    host = {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "AWS_SECRET": "x"}
    assert oneoff_env({"A": "1"}, host) == {"PATH": "/usr/bin", "HOME": "/root",
                                            "LANG": "C.UTF-8", "A": "1"}
    assert oneoff_env({"PATH": "/app/bin"}, host)["PATH"] == "/app/bin"
    assert oneoff_env({}, {})["PATH"] == os.defpath
    assert instance_env({"PORT": "1", "B": "2"}, 5000, host) == {
        "PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "B": "2", "PORT": "5000"}


def test_values() -> None:
    assert memory_limit(256 * MIB) == (256 * MIB, 256 * MIB)
    assert memory_limit(0) == (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    assert shell_argv("echo hi") == ["/bin/sh", "-c", "echo hi"]
    assert predeploy_dir("/d/builds/shop/b1", "0123456789abcdef") == Path(
        "/d/builds/shop/b1-predeploy-01234567")
    assert predeploy_dir("/d/builds/shop/b1-predeploy-01234567", "fedcba9876") == Path(
        "/d/builds/shop/b1-predeploy-fedcba98")
    assert instance_id("my-shop", 3, "web", 1, "ab12cd") == "my-shop-3-web-1-ab12cd"
    assert record_path(Path("/r"), "shop", "i1") == Path("/r/instances/shop/i1.json")
    for bad in ("", "..", "a/b"):
        with pytest.raises(ValueError):
            safe_name(bad)
    assert split_lines(b"a\nb\r\nrest") == ([b"a", b"b\r"], b"rest")
    assert split_lines(b"\n") == ([b""], b"")
    assert split_lines(b"abcdefg", max_len=3) == ([b"abc", b"def", b"g"], b"")
    assert parse_proc_stat("12 (a b) c) S 1 12 12 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 777 0") == (
        "S", 777)


# ---------------------------------------------------------------- build


async def test_build_copies_without_git_and_is_read_only(
        rt: ProcessRuntime, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / ".git").mkdir()
    (src / "app.py").write_text("print('hi')\n")
    (src / "sub" / "data.txt").write_text("data\n")
    (src / ".git" / "HEAD").write_text("ref: main\n")
    (src / "link").symlink_to("app.py")
    artifact = Path(await rt.build("shop", "b1", src, Lines()))
    assert artifact == tmp_path / "process" / "builds" / "shop" / "b1"
    assert (artifact / "app.py").read_text() == "print('hi')\n"
    assert (artifact / "sub" / "data.txt").read_text() == "data\n"
    assert (artifact / "link").is_symlink()
    assert not (artifact / ".git").exists()
    assert writable_entries(artifact) == []
    assert stat.S_IMODE((src / "app.py").stat().st_mode) & 0o200  # the source is left alone


async def test_build_command_runs_in_the_build_dir(
        rt: ProcessRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_FAKE_SECRET", "hunter2-platform-secret")
    src = tmp_path / "src"
    src.mkdir()
    (src / "in.txt").write_text("x\n")
    log = Lines()
    artifact = Path(await rt.build(
        "shop", "b2", src, log, env={"NODE_ENV": "production"},
        command="cat in.txt > out.txt; echo built; echo warn >&2; env > env.txt"))
    assert (artifact / "out.txt").read_text() == "x\n"
    seen = dict(line.split("=", 1) for line in (artifact / "env.txt").read_text().splitlines())
    seen.pop("PWD")  # the shell adds it
    assert seen == oneoff_env({"NODE_ENV": "production"}, os.environ)
    assert ("built", "out") in [(t, s) for t, s, _ in log.lines]
    assert ("warn", "err") in [(t, s) for t, s, _ in log.lines]
    assert writable_entries(artifact) == []


async def test_build_command_failure_raises_build_error(rt: ProcessRuntime, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    log = Lines()
    with pytest.raises(BuildError) as err:
        await rt.build("shop", "b3", src, log, command="echo compiling; exit 3")
    assert err.value.exit_code == 3  # type: ignore[attr-defined]
    assert "exited with code 3" in str(err.value)
    assert "compiling" in log.texts("out")
    assert not (tmp_path / "process" / "builds" / "shop" / "b3").exists()


async def test_build_command_timeout(rt: ProcessRuntime, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    log = Lines()
    with pytest.raises(BuildError) as err:
        await rt.build("shop", "b4", src, log, command="echo self=$$; sleep 60", timeout=0.5)
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
    spec = oneoff(artifact, "env", mark, env={"DOCKYARD_TEST_MARK": mark, "APP": "shop",
                                              "DATABASE_URL": "postgres://x"})
    result = await rt.run_oneoff(spec, log)
    assert result.exit_code == 0
    seen = dict(t.split("=", 1) for t in log.texts("out"))
    seen.pop("PWD")  # the shell adds it
    assert seen == oneoff_env(spec.env, os.environ)
    assert "DOCKYARD_FAKE_SECRET" not in seen
    assert not any("hunter2" in t for t in log.texts())


async def test_oneoff_timeout_kills_the_whole_group(
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
    limited = await rt.run_oneoff(oneoff(artifact, command, mark, memory=256 * MIB), small)
    assert limited.exit_code != 0
    assert any("MemoryError" in t for t in small.texts("err"))
    enough = await rt.run_oneoff(oneoff(artifact, command, mark, memory=1024 * MIB), big)
    assert enough.exit_code == 0
    assert big.texts("out") == [str(600 * MIB)]


async def test_oneoff_changes_are_discarded(
        rt: ProcessRuntime, artifact: str, mark: str, tmp_path: Path) -> None:
    log = Lines()
    result = await rt.run_oneoff(
        oneoff(artifact, "echo changed > index.html; echo new > made.txt; cat index.html", mark),
        log)
    assert result.exit_code == 0 and result.artifact is None
    assert log.texts("out") == ["changed"]  # the copy was writable
    assert (Path(artifact) / "index.html").read_text() == "hello\n"
    assert not (Path(artifact) / "made.txt").exists()
    assert list((tmp_path / "process" / "tmp").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "process" / "builds" / "shop").iterdir()) == ["b1"]


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
    assert not new.exists()


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
    assert tmp_path.exists()


# ---------------------------------------------------------------- instances


async def test_instance_serves_survives_a_runtime_restart_and_stops(
        rt: ProcessRuntime, artifact: str, mark: str, tmp_path: Path) -> None:
    # No `exec`: sh stays the leader with python as its child, so the group matters.
    spec = instance(artifact, f"{PY} -m http.server --bind 127.0.0.1 $PORT", mark)
    ref = await rt.start_instance(spec)
    assert ref.host == "127.0.0.1" and ref.port is not None
    assert ref.id.startswith("shop-3-web-1-") and ref.process == "web" and ref.release == 3
    await wait_healthy(ref.host, ref.port, Health(path="/index.html", timeout=20),
                       lambda: rt.is_alive(ref))

    path = record_path(tmp_path / "process", "shop", ref.id)
    rec = msgspec.json.decode(path.read_bytes(), type=InstanceRecord)
    assert (rec.port, rec.artifact, rec.deployment_id, rec.pgid) == (
        ref.port, artifact, "d" * 32, rec.pid)
    members = group_members(rec.pgid)
    assert len(members) == 2  # sh and python

    restarted = ProcessRuntime(tmp_path / "process")
    assert await restarted.list_instances("shop") == [ref]
    assert await restarted.list_instances("other") == []

    await restarted.stop_instance(ref, grace=5)
    # SIGKILL is delivered asynchronously: give the kernel a moment to end the group.
    deadline = time.monotonic() + 3
    while not all(gone(pid) for pid in members) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert all(gone(pid) for pid in members)
    assert group_members(rec.pgid) == []
    assert not path.exists()
    assert await restarted.list_instances("shop") == []
    await restarted.stop_instance(ref, grace=5)  # idempotent
    await rt.stop_instance(ref, grace=5)


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
        rt: ProcessRuntime, artifact: str, mark: str, tmp_path: Path) -> None:
    ref = await rt.start_instance(instance(artifact, "sleep 60", mark, process="worker"))
    rec = msgspec.json.decode(
        record_path(tmp_path / "process", "shop", ref.id).read_bytes(), type=InstanceRecord)
    os.killpg(rec.pgid, signal.SIGKILL)
    assert await until(lambda: gone(rec.pid))
    assert await rt.list_instances("shop") == []
    assert not record_path(tmp_path / "process", "shop", ref.id).exists()


async def test_instance_that_exits_at_once_raises_start_error(
        rt: ProcessRuntime, artifact: str, mark: str, tmp_path: Path) -> None:
    with pytest.raises(StartError) as err:
        await rt.start_instance(instance(artifact, "echo cannot bind >&2; exit 4", mark))
    assert "exited at once with code 4" in str(err.value)
    assert "cannot bind" in str(err.value)
    assert await rt.list_instances("shop") == []
    assert list((tmp_path / "process" / "instances" / "shop").glob("*.json")) == []

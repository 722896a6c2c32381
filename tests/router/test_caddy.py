"""Starting, driving and stopping a real Caddy through its admin API (on a unix socket)."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from dockyard.bus.embedded import free_port
from dockyard.bus.recorded import ProcessRecord, is_running, start_time, write_record
from dockyard.router.caddy import (
    ADMIN_DIR,
    ADMIN_FILE,
    RECORD_FILE,
    CaddyAdmin,
    CaddyInUse,
    CaddyProcess,
    CaddyRefused,
    CaddyStartError,
    CaddyUnreachable,
    HttpPortTaken,
    UnsafeAdminDir,
    admin_listen,
    ensure_caddy,
    port_taken,
    read_admin_url,
    read_record,
    start_caddy,
)
from dockyard.router.config import build_config
from dockyard.router.routes import AppRoute

from .conftest import Upstream, get
from .listening import admin_config_at, listening_of, processes_of

# A router reduced to what matters here: it starts the data dir's Caddy, says its pid, and waits
# to be killed.
ROUTER_STAND_IN = """
import asyncio, sys
from pathlib import Path
from dockyard.router.caddy import start_caddy

async def main():
    caddy = await start_caddy(Path(sys.argv[1]))
    print(caddy.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def load_table(caddy: CaddyProcess, table: dict[str, AppRoute], http_port: int) -> dict:  # type: ignore[type-arg]
    return build_config(table, domain="localhost", listen=f"127.0.0.1:{http_port}",
                        admin_listen=admin_listen(caddy.admin_url))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


async def test_admin_listens_on_a_socket_in_a_private_dir_and_nothing_on_tcp(
        caddy: CaddyProcess, http_port: int) -> None:
    data_dir = caddy.home.parent
    sock = data_dir / ADMIN_DIR / "admin.sock"
    assert caddy.admin_url == str(sock)
    assert stat.S_ISSOCK(sock.lstat().st_mode)
    assert mode(sock.parent) == 0o700
    assert read_admin_url(data_dir) == str(sock)
    assert mode(data_dir / ADMIN_FILE) == 0o600
    assert (await caddy.admin.config())["admin"]["listen"] == f"unix/{sock}"
    # Not a single TCP port before any site is loaded, then only the one the config asks for.
    assert listening_of(caddy.pid) == set()
    await caddy.admin.load(load_table(caddy, {}, http_port))
    assert {port for _, port in listening_of(caddy.pid)} == {http_port}
    assert await admin_config_at(http_port) is None
    assert (await caddy.admin.config())["admin"]["listen"] == f"unix/{sock}"


def test_admin_addresses() -> None:
    assert admin_listen("/run/x/admin.sock") == "unix//run/x/admin.sock"
    assert admin_listen("unix//run/x/admin.sock") == "unix//run/x/admin.sock"
    assert admin_listen("http://127.0.0.1:2999") == "127.0.0.1:2999"


async def test_a_leftover_socket_is_replaced_a_live_one_refused(tmp_path: Path) -> None:
    first = await start_caddy(tmp_path)
    try:
        with pytest.raises(CaddyStartError, match="another Caddy already answers"):
            await start_caddy(tmp_path)
        assert (await first.admin.config())["admin"]
    finally:
        assert first.child is not None
        first.child.kill()  # a crash: no chance to remove its socket
        await first.child.wait()
    sock = first.admin_url
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)  # left behind
    again = await start_caddy(tmp_path)
    try:
        assert (await again.admin.config())["admin"]["listen"] == f"unix/{sock}"
    finally:
        await again.stop()


async def test_an_admin_dir_that_is_not_ours_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.symlink(elsewhere, data_dir / ADMIN_DIR)
    with pytest.raises(UnsafeAdminDir, match="not a directory of this user's"):
        await start_caddy(data_dir)
    assert list(elsewhere.iterdir()) == []


async def test_a_loose_admin_dir_is_made_private_again(tmp_path: Path) -> None:
    (tmp_path / ADMIN_DIR).mkdir(mode=0o777)
    (tmp_path / ADMIN_DIR).chmod(0o777)
    (tmp_path / ADMIN_FILE).write_text("old\n")
    (tmp_path / ADMIN_FILE).chmod(0o644)
    caddy = await start_caddy(tmp_path)
    try:
        assert mode(tmp_path / ADMIN_DIR) == 0o700
        assert mode(tmp_path / ADMIN_FILE) == 0o600
    finally:
        await caddy.stop()


async def test_a_data_dir_too_deep_for_a_socket_is_a_clear_error(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100)
    with pytest.raises(CaddyStartError, match="use a shorter data dir"):
        await start_caddy(deep)


async def test_an_admin_api_at_an_http_url_is_driven_too(tcp_admin_caddy: str) -> None:
    admin = CaddyAdmin(tcp_admin_caddy)
    assert (await admin.config())["admin"]["listen"] == admin_listen(tcp_admin_caddy)


async def test_routes_hosts_pending_and_unknown(
        caddy: CaddyProcess, http_port: int,
        upstreams: Callable[[str], Awaitable[Upstream]]) -> None:
    up = await upstreams("v1")
    table = {"app": AppRoute(app="app", upstreams=(f"127.0.0.1:{up.port}",)),
             "soon": AppRoute(app="soon", pending=True)}
    await caddy.admin.load(load_table(caddy, table, http_port))

    reached = await get(http_port, "app.localhost")
    assert (reached.status_code, reached.text) == (200, "v1")
    assert (await get(http_port, "APP.localhost:80")).text == "v1"

    unknown = await get(http_port, "nobody.localhost")
    assert (unknown.status_code, unknown.text) == (404, "no app at this host\n")

    pending = await get(http_port, "soon.localhost")
    assert pending.status_code == 503
    assert pending.headers["Retry-After"] == "5"
    assert pending.text

    loaded = await caddy.admin.config()
    assert loaded["apps"]["http"]["servers"]["dockyard"]["routes"][0]["match"] == [
        {"host": ["app.localhost"]}]
    assert caddy.admin.loads == 1


async def test_refused_config_keeps_the_old_one(
        caddy: CaddyProcess, http_port: int,
        upstreams: Callable[[str], Awaitable[Upstream]]) -> None:
    up = await upstreams("v1")
    good = load_table(caddy, {"app": AppRoute(app="app", upstreams=(f"127.0.0.1:{up.port}",))},
                      http_port)
    await caddy.admin.load(good)
    bad = {**good, "apps": {"http": {"servers": {"dockyard": {"listen": ["nonsense"]}}}}}
    with pytest.raises(CaddyRefused) as refused:
        await caddy.admin.load(bad)
    assert refused.value.status >= 400
    assert (await get(http_port, "app.localhost")).text == "v1"


async def test_unreachable_admin(tmp_path: Path) -> None:
    for address in (f"http://127.0.0.1:{free_port()}", str(tmp_path / "nobody.sock")):
        with pytest.raises(CaddyUnreachable):
            await CaddyAdmin(address, timeout=2).config()


async def test_stop_ends_the_process(tmp_path: Path) -> None:
    process = await start_caddy(tmp_path)
    assert processes_of("caddy", tmp_path) == [process.pid]
    assert read_record(tmp_path) is not None
    await process.stop()
    assert process.child is not None and process.child.returncode is not None
    assert processes_of("caddy", tmp_path) == []
    assert read_record(tmp_path) is None
    with pytest.raises(CaddyUnreachable):
        await process.admin.config()
    # Nothing of Caddy's outside the data dir: its HOME and XDG dirs point inside it.
    assert process.home == tmp_path / "caddy"


async def router_stand_in(data_dir: Path) -> asyncio.subprocess.Process:
    """A process that started data_dir's Caddy (in Caddy's own session) and still runs."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", ROUTER_STAND_IN,
                                                str(data_dir), stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.strip().isdigit(), line
    return proc


async def kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL, as a crash: nothing of its own cleanup runs."""
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


def app_config(data_dir: Path, http_port: int, upstream: int) -> dict:  # type: ignore[type-arg]
    table = {"app": AppRoute(app="app", upstreams=(f"127.0.0.1:{upstream}",))}
    return build_config(table, domain="localhost", listen=f"127.0.0.1:{http_port}",
                        admin_listen=admin_listen(str(data_dir / ADMIN_DIR / "admin.sock")))


async def test_the_caddy_of_a_killed_router_is_adopted_serving_all_along(
        tmp_path: Path, http_port: int,
        upstreams: Callable[[str], Awaitable[Upstream]]) -> None:
    router = await router_stand_in(tmp_path)
    up = await upstreams("v1")
    url = read_admin_url(tmp_path)
    assert url is not None
    await CaddyAdmin(url).load(app_config(tmp_path, http_port, up.port))
    (pid,) = processes_of("caddy", tmp_path)
    await kill(router)
    # Its own session: the router's death left it serving.
    assert (await get(http_port, "app.localhost")).text == "v1"

    adopted = await ensure_caddy(tmp_path)
    try:
        assert (adopted.pid, adopted.adopted) == (pid, True)
        assert processes_of("caddy", tmp_path) == [pid]  # one proxy, never a second
        assert (await get(http_port, "app.localhost")).text == "v1"
        record = read_record(tmp_path)
        assert record is not None and record.owner_pid == os.getpid()
    finally:
        await adopted.stop()
    assert processes_of("caddy", tmp_path) == []
    assert read_record(tmp_path) is None


async def test_a_caddy_whose_router_still_runs_is_refused_not_shared(tmp_path: Path) -> None:
    router = await router_stand_in(tmp_path)
    try:
        with pytest.raises(CaddyInUse, match=f"another router \\(pid {router.pid}\\)"):
            await ensure_caddy(tmp_path)
        assert len(processes_of("caddy", tmp_path)) == 1
    finally:
        await kill(router)
    await (await ensure_caddy(tmp_path)).stop()
    assert processes_of("caddy", tmp_path) == []


async def test_a_survivor_whose_admin_api_is_gone_is_stopped_and_replaced(tmp_path: Path) -> None:
    router = await router_stand_in(tmp_path)
    (old,) = processes_of("caddy", tmp_path)
    await kill(router)
    (tmp_path / ADMIN_DIR / "admin.sock").unlink()  # nothing can drive it any more
    caddy = await ensure_caddy(tmp_path)
    try:
        assert not caddy.adopted
        assert processes_of("caddy", tmp_path) == [caddy.pid]
        assert caddy.pid != old
    finally:
        await caddy.stop()


async def test_a_record_naming_another_process_leaves_it_alone(tmp_path: Path) -> None:
    # The recorded pid was reused by an unrelated process: never adopted, never signalled.
    other = await asyncio.create_subprocess_exec("sleep", "60", start_new_session=True)
    try:
        started = start_time(other.pid)
        assert started is not None
        dead = await asyncio.create_subprocess_exec("true")
        await dead.wait()
        write_record(tmp_path / RECORD_FILE, ProcessRecord(
            pid=other.pid, start_time=started, owner_pid=dead.pid, owner_start_time=1))
        caddy = await ensure_caddy(tmp_path)
        try:
            assert not caddy.adopted
            assert is_running(other.pid, started)
        finally:
            await caddy.stop()
        assert other.returncode is None
    finally:
        other.kill()
        await other.wait()


async def test_a_second_proxy_on_a_port_that_already_serves_is_refused(
        tmp_path: Path, http_port: int,
        upstreams: Callable[[str], Awaitable[Upstream]]) -> None:
    # Caddy binds with SO_REUSEPORT: a second one (another data dir, another stack) on the same
    # port would load fine and answer 404 for every other request to the first one's apps.
    first = await ensure_caddy(tmp_path / "a", http=("127.0.0.1", http_port))
    try:
        assert not port_taken("127.0.0.1", http_port)  # nothing loaded yet: no listener
        up = await upstreams("v1")
        await first.admin.load(app_config(tmp_path / "a", http_port, up.port))
        assert port_taken("127.0.0.1", http_port)
        with pytest.raises(HttpPortTaken, match=f"127.0.0.1:{http_port} already has a listener"):
            await ensure_caddy(tmp_path / "b", http=("127.0.0.1", http_port))
        assert processes_of("caddy", tmp_path / "b") == []
        answers = [(await get(http_port, "app.localhost")).text for _ in range(20)]
        assert answers == ["v1"] * 20
    finally:
        await first.stop()

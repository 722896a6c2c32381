"""Starting, driving and stopping a real Caddy through its admin API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from dockyard.bus.embedded import free_port
from dockyard.router.caddy import (
    CaddyAdmin,
    CaddyProcess,
    CaddyRefused,
    CaddyUnreachable,
    admin_listen,
    read_admin_url,
    start_caddy,
)
from dockyard.router.config import build_config
from dockyard.router.routes import AppRoute

from .conftest import Upstream, get


def load_table(caddy: CaddyProcess, table: dict[str, AppRoute], http_port: int) -> dict:  # type: ignore[type-arg]
    return build_config(table, domain="localhost", listen=f"127.0.0.1:{http_port}",
                        admin_listen=admin_listen(caddy.admin_url))


async def test_start_writes_admin_file_and_keeps_files_in_data_dir(caddy: CaddyProcess) -> None:
    data_dir = caddy.home.parent
    assert read_admin_url(data_dir) == caddy.admin_url
    assert caddy.admin_url.startswith("http://127.0.0.1:")
    assert (await caddy.admin.config())["admin"]["listen"] == admin_listen(caddy.admin_url)


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


async def test_unreachable_admin() -> None:
    admin = CaddyAdmin(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(CaddyUnreachable):
        await admin.config()


async def test_stop_ends_the_process(tmp_path: Path) -> None:
    process = await start_caddy(tmp_path)
    await process.stop()
    assert process.process.returncode is not None
    with pytest.raises(CaddyUnreachable):
        await process.admin.config()
    # Nothing of Caddy's outside the data dir: its HOME and XDG dirs point inside it.
    assert process.home == tmp_path / "caddy"

"""The upstream files: switched by one rename, and never written outside their directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.router import upstream_files
from dockyard.router.errors import UnsafePath
from dockyard.router.upstream_files import (
    CURRENT,
    current_addresses,
    current_generation,
    point,
    prune,
    restore,
    switch,
)


def tree(root: Path) -> set[str]:
    """Every path under root, relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_switch_restore_prune(tmp_path: Path) -> None:
    routes = tmp_path / "routes"
    assert upstream_files.current_addresses(routes, "shop") is None
    first = upstream_files.switch(routes, "shop", ["127.0.0.1:1", "127.0.0.1:2"])
    assert first is None
    assert upstream_files.current_addresses(routes, "shop") == ["127.0.0.1:1", "127.0.0.1:2"]
    gen1 = upstream_files.current_generation(routes, "shop")
    assert upstream_files.switch(routes, "shop", ["127.0.0.1:3"]) == gen1
    assert upstream_files.current_addresses(routes, "shop") == ["127.0.0.1:3"]
    upstream_files.restore(routes, "shop", gen1)
    assert upstream_files.current_addresses(routes, "shop") == ["127.0.0.1:1", "127.0.0.1:2"]
    upstream_files.prune(routes, "shop", keep=set())
    assert {p.name for p in (routes / "shop").glob("gen-*")} == {gen1}
    upstream_files.restore(routes, "shop", None)
    assert upstream_files.current_addresses(routes, "shop") is None


@pytest.mark.parametrize("app", ["../../../../tmp/x", "..", ".", "a/b", "/etc", "Shop", "",
                                 "x" * 64, "-x", "a\x00b"])
def test_a_name_that_is_no_dns_label_writes_nothing_anywhere(tmp_path: Path, app: str) -> None:
    routes = tmp_path / "data" / "caddy-routes"
    routes.mkdir(parents=True)
    with pytest.raises(UnsafePath) as refused:
        upstream_files.switch(routes, app, ["127.0.0.1:1"])
    assert refused.value.app == app
    assert str(refused.value).startswith(f"refusing to write routes of app {app!r}")
    assert tree(tmp_path) == {"data", "data/caddy-routes"}
    with pytest.raises(UnsafePath):
        upstream_files.current_addresses(routes, app)
    with pytest.raises(UnsafePath):
        upstream_files.restore(routes, app, None)
    with pytest.raises(UnsafePath):
        upstream_files.prune(routes, app, set())
    with pytest.raises(UnsafePath):
        upstream_files.point(routes, app, "gen-x")
    assert tree(tmp_path) == {"data", "data/caddy-routes"}


def test_a_symlink_planted_in_the_directory_is_not_followed(tmp_path: Path) -> None:
    routes = tmp_path / "routes"
    routes.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, routes / "shop")
    with pytest.raises(UnsafePath) as refused:
        upstream_files.switch(routes, "shop", ["127.0.0.1:1"])
    assert str(outside) in str(refused.value)
    assert list(outside.iterdir()) == []


def test_a_routes_dir_reached_through_a_symlink_works(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "link")
    upstream_files.switch(tmp_path / "link", "shop", ["127.0.0.1:1"])
    assert upstream_files.current_addresses(real, "shop") == ["127.0.0.1:1"]


def generations(routes: Path, app: str) -> list[str]:
    return sorted(p.name for p in (routes / app).glob("gen-*"))


def test_an_app_without_files_has_no_addresses(tmp_path: Path) -> None:
    assert current_addresses(tmp_path, "shop") is None
    assert current_generation(tmp_path, "shop") is None


def test_a_switch_points_current_at_a_new_generation(tmp_path: Path) -> None:
    assert switch(tmp_path, "shop", ["127.0.0.1:5001", "127.0.0.1:5002"]) is None
    first = current_generation(tmp_path, "shop")
    assert first is not None and first.startswith("gen-")
    assert current_addresses(tmp_path, "shop") == ["127.0.0.1:5001", "127.0.0.1:5002"]
    assert (tmp_path / "shop" / CURRENT).is_symlink()

    assert switch(tmp_path, "shop", ["127.0.0.1:6001"]) == first
    assert current_addresses(tmp_path, "shop") == ["127.0.0.1:6001"]
    assert current_generation(tmp_path, "shop") != first
    # No temporary link is left behind by the rename.
    assert [p.name for p in (tmp_path / "shop").iterdir() if p.name.startswith(".")] == []


def test_addresses_keep_their_order_past_ten(tmp_path: Path) -> None:
    addresses = [f"127.0.0.1:{5000 + n}" for n in range(12)]
    switch(tmp_path, "shop", addresses)
    assert current_addresses(tmp_path, "shop") == addresses


def test_restore_goes_back_to_the_previous_generation_or_to_nothing(tmp_path: Path) -> None:
    first_previous = switch(tmp_path, "shop", ["a:1"])
    previous = switch(tmp_path, "shop", ["b:2"])
    restore(tmp_path, "shop", previous)
    assert current_addresses(tmp_path, "shop") == ["a:1"]
    restore(tmp_path, "shop", first_previous)
    assert current_addresses(tmp_path, "shop") is None
    restore(tmp_path, "shop", None)  # nothing to undo: no error


def test_prune_keeps_the_current_generation_and_the_ones_asked_for(tmp_path: Path) -> None:
    switch(tmp_path, "shop", ["a:1"])
    kept = switch(tmp_path, "shop", ["b:2"])
    switch(tmp_path, "shop", ["c:3"])
    assert len(generations(tmp_path, "shop")) == 3
    current = current_generation(tmp_path, "shop")
    assert kept is not None and current is not None
    prune(tmp_path, "shop", keep={kept})
    assert generations(tmp_path, "shop") == sorted([kept, current])
    prune(tmp_path, "shop", keep=set())
    assert generations(tmp_path, "shop") == [current]
    assert current_addresses(tmp_path, "shop") == ["c:3"]


def test_point_replaces_current_atomically(tmp_path: Path) -> None:
    switch(tmp_path, "shop", ["a:1"])
    other = tmp_path / "shop" / "gen-manual"
    other.mkdir()
    (other / "0").write_text("z:9")
    point(tmp_path, "shop", "gen-manual")
    assert os.readlink(tmp_path / "shop" / CURRENT) == "gen-manual"
    assert current_addresses(tmp_path, "shop") == ["z:9"]


def test_apps_do_not_share_files(tmp_path: Path) -> None:
    switch(tmp_path, "shop", ["a:1"])
    switch(tmp_path, "blog", ["b:2"])
    assert current_addresses(tmp_path, "shop") == ["a:1"]
    assert current_addresses(tmp_path, "blog") == ["b:2"]

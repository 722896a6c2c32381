"""The apps' trees: modes as values, and the reach check on real directories."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dockyard.runtime.apptree import (
    copy_tree,
    own_tree,
    remove_tree,
    seal_tree,
    sealed_mode,
    unreachable_ancestor,
)
from tests.runtime.process_support import reachable_tmp, remove

FILE, DIR = stat.S_IFREG, stat.S_IFDIR


@pytest.mark.parametrize(("mode", "to_group", "sealed"), [
    (FILE | 0o644, True, 0o440),
    (FILE | 0o755, True, 0o550),
    (FILE | 0o4755, True, 0o550),  # setuid goes
    (DIR | 0o700, True, 0o550),
    (FILE | 0o600, True, 0o440),
    (FILE | 0o644, False, 0o444),
    (FILE | 0o2755, False, 0o555),  # setgid goes
    (DIR | 0o777, False, 0o555),
])
def test_sealed_modes(mode: int, to_group: bool, sealed: int) -> None:
    assert sealed_mode(mode, to_group) == sealed


def test_an_unreachable_ancestor_is_named() -> None:
    base = reachable_tmp("dockyard-tree-")  # /tmp and base: others may pass through
    try:
        closed = base / "closed"
        (closed / "apps").mkdir(parents=True)
        closed.chmod(0o700)
        assert unreachable_ancestor(closed / "apps") == closed
        closed.chmod(0o711)
        assert unreachable_ancestor(closed / "apps") is None
    finally:
        remove(base)


def test_seal_own_and_remove_a_tree_without_an_app_user(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("x")
    (src / "link").symlink_to("sub/f")
    copy_tree(src, tmp_path / "copy")
    seal_tree(tmp_path / "copy", None)
    assert not any(p.lstat().st_mode & 0o222 for p in (tmp_path / "copy").rglob("*")
                   if not p.is_symlink())
    own_tree(tmp_path / "copy", None)
    (tmp_path / "copy" / "sub" / "f").write_text("y")  # writable again
    seal_tree(tmp_path / "copy", None)
    remove_tree(tmp_path / "copy")
    assert not (tmp_path / "copy").exists()
    remove_tree(tmp_path / "copy")  # missing is fine
